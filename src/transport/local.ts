/**
 * Local destinations: a directory (the backup gets a dated name inside it), a new file path, or
 * stdout. Files are written under a hidden temporary name in the same directory and published
 * with link(2), which refuses to replace anything that appeared meanwhile.
 */
import { randomBytes } from "node:crypto";
import { constants as fsConstants } from "node:fs";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { QbackupError, destinationError, systemErrorCode } from "../errors.js";
import { pathExists, writeFully } from "../runtime/paths.js";
import type { BackupSink } from "./sink.js";

/** `qubes-backup-2026-11-22T153000`, the name qvm-backup gives a backup in a directory. */
export function defaultBackupFileName(now: Date = new Date()): string {
  const p = (n: number) => String(n).padStart(2, "0");
  return (
    `qubes-backup-${now.getFullYear()}-${p(now.getMonth() + 1)}-${p(now.getDate())}` +
    `T${p(now.getHours())}${p(now.getMinutes())}${p(now.getSeconds())}`
  );
}

/** Decide the final file path for DEST without creating anything. `-` is handled by the caller. */
export async function resolveLocalDestination(dest: string, now: Date = new Date()): Promise<string> {
  const st = await statOrUndefined(dest, fs.stat);
  const target = st?.isDirectory() ? path.join(dest, defaultBackupFileName(now)) : dest;
  // lstat: a dangling symlink under the final name counts as existing.
  if ((await statOrUndefined(target, fs.lstat)) !== undefined) {
    throw new QbackupError("ERR_DEST_EXISTS", `destination ${target} already exists; refusing to overwrite it`, {
      hint: "choose a new file name, or a directory to create a dated backup in",
    });
  }
  const parent = path.dirname(path.resolve(target));
  const pst = await statOrUndefined(parent, fs.stat);
  if (!pst?.isDirectory()) throw new QbackupError("ERR_DEST", `destination directory ${parent} does not exist`);
  return target;
}

async function statOrUndefined(
  p: string,
  statFn: typeof fs.stat,
): Promise<Awaited<ReturnType<typeof fs.stat>> | undefined> {
  try {
    return await statFn(p);
  } catch (err) {
    if (systemErrorCode(err) === "ENOENT" || systemErrorCode(err) === "ENOTDIR") return undefined;
    throw destinationError(err, p);
  }
}

/** A new file at `finalPath`, written as `.<name>.partial-<random>` beside it until commit. */
export async function openFileSink(finalPath: string): Promise<BackupSink> {
  const dir = path.dirname(path.resolve(finalPath));
  const tempPath = path.join(dir, `.${path.basename(finalPath)}.partial-${randomBytes(6).toString("hex")}`);
  const handle = await fs
    .open(tempPath, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW, 0o600)
    .catch((err: unknown) => {
      throw destinationError(err, finalPath);
    });
  let state: "open" | "committed" | "aborted" = "open";
  let written = 0;
  const writeAll = (data: Uint8Array, position: number | null) =>
    writeFully(handle, data, position).catch((err: unknown) => {
      throw destinationError(err, finalPath);
    });

  const abort = async () => {
    if (state === "committed" || state === "aborted") return;
    state = "aborted";
    await handle.close().catch(() => undefined);
    await fs.rm(tempPath, { force: true }).catch(() => undefined);
  };

  return {
    location: finalPath,
    async write(data) {
      await writeAll(data, null);
      written += data.length;
    },
    async writeAt(position, data) {
      if (!Number.isSafeInteger(position) || position < 0 || position + data.length > written) {
        throw new QbackupError(
          "ERR_INTERNAL",
          `writeAt(${position}, ${data.length} bytes) outside the ${written} written`,
        );
      }
      await writeAll(data, position);
    },
    async commit() {
      if (state !== "open") throw new QbackupError("ERR_INTERNAL", `commit of a sink that is ${state}`);
      try {
        await handle.sync();
        await handle.close();
        await publishWithoutOverwrite(tempPath, finalPath);
        await syncDirectory(dir);
        state = "committed";
      } catch (err) {
        await abort();
        throw destinationError(err, finalPath);
      }
    },
    abort,
  };
}

/** link() fails with EEXIST instead of replacing; rename() is the fallback where links are unsupported. */
async function publishWithoutOverwrite(tempPath: string, finalPath: string): Promise<void> {
  try {
    await fs.link(tempPath, finalPath);
    await fs.unlink(tempPath);
    return;
  } catch (err) {
    const code = systemErrorCode(err);
    if (code === "EEXIST") {
      throw new QbackupError("ERR_DEST_EXISTS", `destination ${finalPath} appeared while writing; not replacing it`);
    }
    if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EOPNOTSUPP" && code !== "EXDEV" && code !== "EMLINK")
      throw err;
  }
  if (await pathExists(finalPath))
    throw new QbackupError("ERR_DEST_EXISTS", `destination ${finalPath} appeared while writing; not replacing it`);
  await fs.rename(tempPath, finalPath);
}

async function syncDirectory(dir: string): Promise<void> {
  const h = await fs.open(dir, fsConstants.O_RDONLY).catch(() => undefined);
  if (!h) return;
  await h.sync().catch(() => undefined); // not every filesystem can fsync a directory
  await h.close();
}

/** stdout as a sink: nothing to publish or remove; a failed backup is signalled by the exit status. */
export function stdoutSink(stream: NodeJS.WriteStream = process.stdout): BackupSink {
  if (stream.isTTY) {
    throw new QbackupError("ERR_USAGE", "refusing to write a backup to a terminal", {
      hint: "redirect stdout to a file or a pipe",
    });
  }
  let failure: unknown;
  stream.on("error", (err) => (failure ??= err));
  return {
    location: "-",
    write(data) {
      if (failure !== undefined) return Promise.reject(destinationError(failure, "stdout"));
      return new Promise((resolve, reject) => {
        stream.write(data, (err) => (err ? reject(destinationError(err, "stdout")) : resolve()));
      });
    },
    async commit() {
      if (failure !== undefined) throw destinationError(failure, "stdout");
    },
    async abort() {},
  };
}
