/**
 * Placement: where authenticated, decompressed archive entries become files. Each qube's output
 * is built inside a fresh directory with a temporary name and published whole (renamed) only
 * when every file in it was complete and verified; on failure it is removed.
 *
 * Confinement rules, because even authenticated archives are parsed defensively:
 *  - entry paths are relative, without empty, `.` or `..` components;
 *  - an entry's parent must be a directory this restore created (never a symlink or a file), so
 *    no write can pass through a link; files are created with O_EXCL | O_NOFOLLOW;
 *  - every symlink must resolve inside the output directory, following the archive's own links
 *    (checked once all entries are known, before anything is published);
 *  - hard links may only point at regular files restored from the same archive;
 *  - set-uid/set-gid bits and ownership are not restored.
 * In dry-run mode (verify) the same checks run and nothing is written.
 */
import { randomBytes } from "node:crypto";
import * as fsSync from "node:fs";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { isAllZero } from "../codec/tar/index.js";
import type { DataPiece, InnerEntry } from "../codec/tar/index.js";
import { QbackupError, destinationError } from "../errors.js";
import { pathExists } from "../runtime/paths.js";
import { CREATE_FLAGS, SmallFileWriter } from "./file-writer.js";
import { VolumeWriter } from "./volume-writer.js";

/** Zero runs of this size are left as holes when writing (the new file reads as zeros there). */
const HOLE_WINDOW = 64 * 1024;
/**
 * Files up to this size are gathered whole and written with synchronous calls: a home directory
 * holds tens of thousands of small files, and six threadpool round trips per file cost more than
 * the writes. Past the first SMALL_FILES_HERE of an output directory (a qube's) they are written
 * by a worker thread (file-writer.ts), so that the main thread goes on with the next ones meanwhile.
 */
const SMALL_FILE = 256 * 1024;
const SMALL_FILES_HERE = 64;
const MAX_SYMLINK_DEPTH = 40;

type Kind = "directory" | "file" | "symlink";

/** A synchronous filesystem call whose failure becomes a destination error naming `where`. */
function onDestination<T>(where: string, call: () => T): T {
  try {
    return call();
  } catch (err) {
    throw destinationError(err, where);
  }
}

function unsafe(message: string): QbackupError {
  return new QbackupError("ERR_UNSAFE_PATH", message);
}

function components(rel: string): string[] {
  return rel === "" ? [] : rel.split("/");
}

/** Relative, no empty/`.`/`..` components, no NUL; `""` is the output directory itself. */
export function checkRelative(rel: string, what: string): void {
  if (rel === "") return;
  if (rel.startsWith("/") || rel.includes("\0")) throw unsafe(`${what}: unsafe path ${JSON.stringify(rel)}`);
  for (const c of rel.split("/")) {
    if (c === "" || c === "." || c === "..") throw unsafe(`${what}: unsafe path ${JSON.stringify(rel)}`);
  }
}

export class OutputDirectory {
  private readonly kinds = new Map<string, Kind>([["", "directory"]]);
  private readonly symlinks = new Map<string, string>();
  private readonly dirMeta = new Map<string, { mode: number; mtime: number }>();
  /** Directories created because an entry needed a parent; their own entry may still come. */
  private readonly implicitDirs = new Set<string>([""]);
  private state: "open" | "committed" | "aborted" = "open";
  private smallFiles = 0;
  /** Started once this output has more than SMALL_FILES_HERE small files. */
  private writer: SmallFileWriter | undefined;

  private constructor(
    /** The temporary directory everything is written into. */
    readonly root: string,
    readonly finalPath: string,
    readonly dryRun: boolean,
  ) {}

  /**
   * A new output directory, built as a hidden temporary directory in `workDir` (on the same
   * filesystem), that will become `finalPath`.
   */
  static async create(workDir: string, finalPath: string, dryRun: boolean): Promise<OutputDirectory> {
    if (dryRun) return new OutputDirectory("", finalPath, true);
    const root = path.join(workDir, `.${path.basename(finalPath)}.partial-${randomBytes(6).toString("hex")}`);
    await fs.mkdir(root, { mode: 0o700 }).catch((err: unknown) => {
      throw destinationError(err, root);
    });
    return new OutputDirectory(root, finalPath, false);
  }

  private abs(rel: string): string {
    return rel === "" ? this.root : path.join(this.root, ...components(rel));
  }

  /** Make sure `rel` is a directory we created, creating missing ones (as plain directories). */
  private async ensureDirectory(rel: string, what: string): Promise<void> {
    const kind = this.kinds.get(rel);
    if (kind === "directory") return;
    if (kind !== undefined) throw unsafe(`${what}: ${JSON.stringify(rel)} is a ${kind}, not a directory`);
    await this.ensureDirectory(path.posix.dirname(rel) === "." ? "" : path.posix.dirname(rel), what);
    if (!this.dryRun) onDestination(this.abs(rel), () => fsSync.mkdirSync(this.abs(rel), { mode: 0o700 }));
    this.kinds.set(rel, "directory");
    this.implicitDirs.add(rel);
  }

  /** Place one archive entry at `rel` (relative to this directory). */
  async place(rel: string, entry: InnerEntry, data: AsyncIterable<DataPiece>, linkRel?: string): Promise<number> {
    const what = `entry ${entry.path}`;
    checkRelative(rel, what);
    const parent = rel === "" ? undefined : path.posix.dirname(rel) === "." ? "" : path.posix.dirname(rel);
    if (parent !== undefined) await this.ensureDirectory(parent, what);
    const existing = this.kinds.get(rel);
    const describesImplicitDir = entry.type === "directory" && this.implicitDirs.delete(rel);
    if (existing !== undefined && !describesImplicitDir) {
      throw new QbackupError("ERR_TAR_MALFORMED", `${what} appears twice`);
    }
    const mtime = entry.mtime;
    switch (entry.type) {
      case "directory":
        if (existing === undefined && !this.dryRun) {
          onDestination(this.abs(rel), () => fsSync.mkdirSync(this.abs(rel), { mode: 0o700 }));
        }
        this.kinds.set(rel, "directory");
        this.dirMeta.set(rel, { mode: entry.mode & 0o1777, mtime });
        return drain(data);
      case "file":
        this.kinds.set(rel, "file");
        return this.writeFile(rel, entry, data);
      case "symlink": {
        const target = entry.linkname ?? "";
        if (target === "" || target.includes("\0")) throw unsafe(`${what}: symlink has an empty target`);
        this.kinds.set(rel, "symlink");
        this.symlinks.set(rel, target);
        if (!this.dryRun) {
          onDestination(this.abs(rel), () => fsSync.symlinkSync(target, this.abs(rel)));
          try {
            fsSync.lutimesSync(this.abs(rel), mtime, mtime);
          } catch {
            // not every filesystem keeps a symlink's own time
          }
        }
        return drain(data);
      }
      case "hardlink": {
        if (linkRel === undefined || this.kinds.get(linkRel) !== "file") {
          throw unsafe(
            `${what}: hard link to ${JSON.stringify(entry.linkname)}, which is not a file restored from this archive`,
          );
        }
        this.kinds.set(rel, "file");
        if (!this.dryRun) {
          await this.writer?.flush(); // the file linked to may still be on its way
          await fs.link(this.abs(linkRel), this.abs(rel));
        }
        return drain(data);
      }
      default:
        throw new QbackupError("ERR_TAR_MALFORMED", `${what} has an unsupported type`);
    }
  }

  private async writeFile(rel: string, entry: InnerEntry, data: AsyncIterable<DataPiece>): Promise<number> {
    if (this.dryRun) return drain(data);
    const file = this.abs(rel);
    if (entry.size <= SMALL_FILE) {
      const content = Buffer.alloc(entry.size);
      let bytes = 0;
      for await (const piece of data) {
        piece.bytes.copy(content, piece.offset);
        bytes += piece.bytes.length;
      }
      if (++this.smallFiles > SMALL_FILES_HERE) {
        this.writer ??= new SmallFileWriter();
        await this.writer.write(file, content, entry.mode & 0o777, entry.mtime);
        return bytes;
      }
      onDestination(file, () => {
        const fd = fsSync.openSync(file, CREATE_FLAGS, 0o600);
        try {
          fsSync.writeSync(fd, content);
          fsSync.fchmodSync(fd, entry.mode & 0o777);
          fsSync.futimesSync(fd, entry.mtime, entry.mtime);
        } finally {
          fsSync.closeSync(fd);
        }
      });
      return bytes;
    }
    const handle = await fs.open(file, CREATE_FLAGS, 0o600).catch((err: unknown) => {
      throw destinationError(err, file);
    });
    let bytes = 0;
    let writes: VolumeWriter | undefined;
    try {
      writes = await VolumeWriter.open(handle, file);
      for await (const piece of data) {
        bytes += piece.bytes.length;
        await writeSkippingZeros(writes, piece);
      }
      await writes.drain();
      await handle.truncate(entry.size).catch((err: unknown) => {
        throw destinationError(err, file);
      });
      await handle.chmod(entry.mode & 0o777);
      await handle.utimes(entry.mtime, entry.mtime);
    } finally {
      await writes?.release();
      await handle.close();
    }
    return bytes;
  }

  /** Wait for the files still being written, check every symlink, then set directory modes and times (deepest first). */
  async finish(): Promise<void> {
    await this.drainWriter();
    for (const [rel, target] of this.symlinks) {
      if (resolveInside(this.symlinks, parentComponents(rel), target, 0) === null) {
        throw unsafe(`symlink ${rel} -> ${target} points outside the restored directory`);
      }
    }
    if (this.dryRun) return;
    const dirs = [...this.dirMeta].sort((a, b) => components(b[0]).length - components(a[0]).length);
    for (const [rel, meta] of dirs) {
      onDestination(this.abs(rel), () => {
        fsSync.chmodSync(this.abs(rel), meta.mode);
        fsSync.utimesSync(this.abs(rel), meta.mtime, meta.mtime);
      });
    }
  }

  /** Write a file of our own (qube.json) into the directory; never replaces an entry from the backup. */
  async writeMetadata(name: string, content: string): Promise<void> {
    if (this.kinds.has(name))
      throw new QbackupError("ERR_TAR_MALFORMED", `the backup holds a file named ${name}, which qbackup reserves`);
    this.kinds.set(name, "file");
    if (this.dryRun) return;
    await fs.writeFile(this.abs(name), content, { flag: "wx", mode: 0o644 });
  }

  /** Publish under the final name (creating its parent if needed); refuses if something is there. */
  async commit(): Promise<void> {
    if (this.state !== "open")
      throw new QbackupError("ERR_INTERNAL", `commit of an output directory that is ${this.state}`);
    if (!this.dryRun) await this.drainWriter(); // a failure here leaves the directory to abort()
    this.state = "committed";
    if (this.dryRun) return;
    const parent = path.dirname(this.finalPath);
    await fs.mkdir(parent, { recursive: true });
    if (!(await fs.lstat(parent)).isDirectory()) {
      await this.removeTemp();
      throw new QbackupError("ERR_DEST", `${parent} is not a directory`);
    }
    if (await pathExists(this.finalPath)) {
      await this.removeTemp();
      throw new QbackupError("ERR_DEST_EXISTS", `${this.finalPath} appeared while restoring; not replacing it`);
    }
    await fs.rename(this.root, this.finalPath);
  }

  async abort(): Promise<void> {
    if (this.state !== "open") return;
    this.state = "aborted";
    await this.writer?.close(); // before removing: nothing is created behind the removal
    this.writer = undefined;
    if (!this.dryRun) await this.removeTemp();
  }

  private async drainWriter(): Promise<void> {
    const writer = this.writer;
    if (writer === undefined) return;
    this.writer = undefined;
    try {
      await writer.flush();
    } finally {
      await writer.close();
    }
  }

  private async removeTemp(): Promise<void> {
    await fs.rm(this.root, { recursive: true, force: true }).catch(() => undefined);
  }
}

function parentComponents(rel: string): string[] {
  const c = components(rel);
  c.pop();
  return c;
}

/**
 * Resolve `target` (a symlink's text) from directory `from`, following the archive's own
 * symlinks for intermediate components. Returns the resolved components, or null if the path
 * leaves the root at any point or loops.
 */
export function resolveInside(
  symlinks: ReadonlyMap<string, string>,
  from: string[],
  target: string,
  depth: number,
): string[] | null {
  if (depth > MAX_SYMLINK_DEPTH || target.startsWith("/")) return null;
  let stack = [...from];
  const parts = target.split("/");
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (stack.length === 0) return null;
      stack.pop();
      continue;
    }
    stack.push(part);
    const isLast = parts.slice(i + 1).every((p) => p === "" || p === ".");
    const link = symlinks.get(stack.join("/"));
    if (link !== undefined && !isLast) {
      const resolved = resolveInside(symlinks, stack.slice(0, -1), link, depth + 1);
      if (resolved === null) return null;
      stack = resolved;
    }
  }
  return stack;
}

async function drain(data: AsyncIterable<DataPiece>): Promise<number> {
  let bytes = 0;
  for await (const piece of data) bytes += piece.bytes.length;
  return bytes;
}

/** Writes the non-zero runs of a piece (in 64 KiB windows); the zero windows stay holes. */
async function writeSkippingZeros(writes: VolumeWriter, piece: DataPiece): Promise<void> {
  const { bytes, offset } = piece;
  let runStart = -1;
  const flush = async (end: number) => {
    if (runStart < 0) return;
    const run = bytes.subarray(runStart, end);
    const at = offset + runStart;
    runStart = -1;
    await writes.write(run, at);
  };
  for (let start = 0; start < bytes.length; start += HOLE_WINDOW) {
    const end = Math.min(bytes.length, start + HOLE_WINDOW);
    if (isAllZero(bytes.subarray(start, end))) await flush(start);
    else if (runStart < 0) runStart = start;
  }
  await flush(bytes.length);
}
