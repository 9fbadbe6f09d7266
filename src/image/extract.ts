/**
 * Copies an entry of an ext image (a file, a symlink, or a directory tree) out to DESTDIR/NAME:
 * built under a hidden temporary name and renamed only when complete, never replacing anything.
 * Every directory it writes into is one it created itself, so no link in the image can redirect a
 * write; symlinks are recreated as links and never followed. Holes in files stay holes. Modes and
 * mtimes are kept, without setuid and setgid (an extracted file is data, not a program to trust).
 */
import { randomBytes } from "node:crypto";
import { constants as fsConstants } from "node:fs";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { isAllZero } from "../codec/tar/index.js";
import { QbackupError, destinationError, systemErrorCode } from "../errors.js";
import type { ExtEntry, ExtImage } from "./ext-image.js";

/** Permission bits and the sticky bit; never setuid/setgid. */
const KEPT_MODE_BITS = 0o1777;
/** While a directory is being filled it is the extractor's alone. */
const WORKING_DIR_MODE = 0o700;
const WORKING_FILE_MODE = 0o600;

export interface ExtractCounts {
  files: number;
  directories: number;
  symlinks: number;
  bytes: number;
  /** Entries not extracted (devices, FIFOs, sockets), with why. */
  skipped: string[];
}

/** Writes `entry` as `destDir/name`; returns what was written. */
export async function extractEntry(
  image: ExtImage,
  entry: ExtEntry,
  destDir: string,
  name: string,
): Promise<ExtractCounts> {
  const final = path.join(destDir, name);
  await refuseExisting(final);
  const temp = path.join(destDir, `.${name}.qbackup-partial-${randomBytes(6).toString("hex")}`);
  const counts: ExtractCounts = { files: 0, directories: 0, symlinks: 0, bytes: 0, skipped: [] };
  try {
    await write(image, entry, temp, counts);
    await publish(temp, final, entry.type);
    return counts;
  } catch (err) {
    await fs.rm(temp, { recursive: true, force: true });
    throw err;
  }
}

/** Refuses (ERR_DEST_EXISTS) if anything is at `final`; links are not followed. */
export async function refuseExisting(final: string): Promise<void> {
  const there = await fs.lstat(final).then(
    () => true,
    (err: unknown) => {
      if (systemErrorCode(err) === "ENOENT") return false;
      throw destinationError(err, final);
    },
  );
  if (there) {
    throw new QbackupError("ERR_DEST_EXISTS", `${final} already exists; refusing to overwrite it`, {
      hint: "extract into another directory with -C",
    });
  }
}

async function write(image: ExtImage, entry: ExtEntry, to: string, counts: ExtractCounts): Promise<void> {
  switch (entry.type) {
    case "file":
      await writeFile(image, entry, to);
      counts.files += 1;
      counts.bytes += entry.size;
      return;
    case "symlink":
      await fs.symlink(entry.target!, to).catch((err: unknown) => {
        throw destinationError(err, to);
      });
      await fs.lutimes(to, entry.mtime, entry.mtime).catch(() => undefined);
      counts.symlinks += 1;
      return;
    case "directory": {
      await fs.mkdir(to, { mode: WORKING_DIR_MODE }).catch((err: unknown) => {
        throw destinationError(err, to);
      });
      for (const child of await image.list(entry.path)) {
        await write(image, child, path.join(to, path.posix.basename(child.path)), counts);
      }
      // after the children: their writes would change the directory's mtime, a mode may forbid them
      await fs.chmod(to, entry.mode & KEPT_MODE_BITS);
      await fs.utimes(to, entry.mtime, entry.mtime);
      counts.directories += 1;
      return;
    }
    default:
      counts.skipped.push(`/${entry.path} (${entry.type})`);
  }
}

async function writeFile(image: ExtImage, entry: ExtEntry, to: string): Promise<void> {
  const flags = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW;
  const handle = await fs.open(to, flags, WORKING_FILE_MODE).catch((err: unknown) => {
    throw destinationError(err, to);
  });
  try {
    let position = 0;
    for await (const piece of image.read(entry)) {
      // holes stay holes: an all-zero piece is skipped, and the size set at the end
      if (!isAllZero(piece)) await handle.write(piece, 0, piece.length, position);
      position += piece.length;
    }
    await handle.truncate(entry.size);
    await handle.chmod(entry.mode & KEPT_MODE_BITS);
    await handle.utimes(entry.mtime, entry.mtime);
  } catch (err) {
    throw err instanceof QbackupError ? err : destinationError(err, to);
  } finally {
    await handle.close();
  }
}

/** temp → final, never replacing: a file by link(2) (which refuses), the rest after a last check. */
async function publish(temp: string, final: string, type: ExtEntry["type"]): Promise<void> {
  try {
    if (type === "file") {
      await fs.link(temp, final);
      await fs.unlink(temp);
    } else {
      await refuseExisting(final);
      await fs.rename(temp, final);
    }
  } catch (err) {
    throw err instanceof QbackupError ? err : destinationError(err, final);
  }
}
