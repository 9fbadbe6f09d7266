/**
 * An ext2/3/4 filesystem inside a disk image file, read without mounting anything: libext2fs in
 * WebAssembly (the `ext2fs` package; e2fsprogs' own library, so every feature e2fsprogs reads is
 * read) runs in a worker thread (ext-worker-source.ts) that is terminated when a request takes
 * longer than a bound. The image is hostile input: every answer is checked here, and a damaged
 * filesystem is a one-line error, never a crash or a hang.
 */
import { createRequire } from "node:module";
import * as fs from "node:fs/promises";
import { Worker } from "node:worker_threads";
import { QbackupError } from "../errors.js";
import { EXT_WORKER_SOURCE } from "./ext-worker-source.js";
import { SECTOR_SIZE, locateExtFilesystem } from "./layout.js";
import type { Located } from "./layout.js";

/** A request libext2fs has not answered in this long is taken as a filesystem that makes it spin. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
/** File data is read in pieces of this size. */
export const READ_PIECE_BYTES = 1024 * 1024;
/** The most entries one directory may list. */
export const MAX_DIRECTORY_ENTRIES = 1_000_000;
/** The longest symlink target (PATH_MAX). */
export const MAX_LINK_TARGET = 4096;
/** What libext2fs may "write" (access times) is kept in memory, up to this much. */
const MAX_OVERLAY_BYTES = 64 * 1024 * 1024;
/** The JS heap of the worker; the library's own memory is WebAssembly's (bounded at 2 GiB). */
const WORKER_HEAP_MB = 256;
/** libext2fs's own error numbers (e2fsprogs lib/ext2fs/ext2_err.et) are the 256 from here. */
const EXT2_ET_BASE = 2133571328;
const EXT2_ET_COUNT = 256;
/** How much of a library message an error quotes. */
const MAX_QUOTED_MESSAGE = 200;

export type EntryType = "file" | "directory" | "symlink" | "fifo" | "socket" | "char-device" | "block-device";

export interface ExtEntry {
  /** The path inside the filesystem, without a leading `/` ("" for the root). */
  path: string;
  type: EntryType;
  size: number;
  /** Permission bits (and setuid/setgid/sticky), without the type. */
  mode: number;
  mtime: Date;
  uid: number;
  gid: number;
  /** A symlink's target. */
  target?: string;
}

interface WireStat {
  mode: number;
  size: number;
  mtimeMs: number;
  uid: number;
  gid: number;
}

interface Failure {
  message: string;
  errno: number | null;
  code: string | null;
}

type Reply = { id: number; ok: true; value: unknown } | ({ id: number; ok: false } & Failure);

/** A failed request, as the worker reported it. */
class WorkerFailure extends Error {
  constructor(readonly failure: Failure) {
    super(failure.message);
  }
}

const TYPE_BITS: ReadonlyArray<[number, EntryType]> = [
  [0o100000, "file"],
  [0o040000, "directory"],
  [0o120000, "symlink"],
  [0o010000, "fifo"],
  [0o140000, "socket"],
  [0o020000, "char-device"],
  [0o060000, "block-device"],
];

export class ExtImage {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private failure: Error | undefined;

  private constructor(
    private readonly worker: Worker,
    /** How the image is named in messages (e.g. `work: private.img`). */
    readonly what: string,
    readonly located: Located,
    private readonly timeoutMs: number,
  ) {
    worker.on("message", (reply: Reply) => {
      const waiting = this.pending.get(reply.id);
      if (!waiting) return;
      this.pending.delete(reply.id);
      if (reply.ok) waiting.resolve(reply.value);
      else waiting.reject(new WorkerFailure(reply));
    });
    worker.on("error", (err) => this.fail(new Error(`the filesystem reader failed: ${err.message}`)));
    worker.on("exit", () => this.fail(new Error("the filesystem reader stopped")));
  }

  /** Finds the ext filesystem in `file` (whole image or a partition) and opens it. */
  static async open(file: string, what: string, timeoutMs = DEFAULT_REQUEST_TIMEOUT_MS): Promise<ExtImage> {
    const handle = await fs.open(file, "r");
    let located: Located;
    try {
      const size = (await handle.stat()).size;
      const read = async (offset: number, length: number) => {
        const buffer = Buffer.alloc(length);
        const { bytesRead } = await handle.read(buffer, 0, length, offset);
        return buffer.subarray(0, bytesRead);
      };
      located = await locateExtFilesystem(read, size, what);
    } finally {
      await handle.close();
    }
    const worker = new Worker(EXT_WORKER_SOURCE, {
      eval: true,
      workerData: {
        ext2fsPath: createRequire(import.meta.url).resolve("ext2fs"),
        maxOverlaySectors: MAX_OVERLAY_BYTES / SECTOR_SIZE,
      },
      resourceLimits: { maxOldGenerationSizeMb: WORKER_HEAP_MB },
      stdout: true,
      stderr: true,
    });
    const image = new ExtImage(worker, what, located, timeoutMs);
    try {
      await image.call("mount", { path: file, offset: located.offset, size: located.size }, "open the filesystem");
    } catch (err) {
      await image.close();
      throw err;
    }
    return image;
  }

  async stat(path: string): Promise<ExtEntry> {
    const st = (await this.call("lstat", { path: `/${path}` }, `stat /${path}`).catch(async (err: unknown) => {
      // "not found" may only mean that a directory on the way is damaged: say so if one is
      if (err instanceof QbackupError && err.code === "ERR_NOT_FOUND") await this.checkAncestors(path);
      throw err;
    })) as WireStat;
    const entry = entryOf(path, st, this.what);
    if (entry.type === "symlink") {
      const target = (await this.call("readlink", { path: `/${path}` }, `read the link /${path}`)) as string;
      if (typeof target !== "string" || target.length > MAX_LINK_TARGET || target.includes("\0")) {
        throw this.damaged(`the symlink /${path} has an invalid target`);
      }
      entry.target = target;
    }
    return entry;
  }

  /** Throws the damage error of the first directory above `path` that cannot be read, if any. */
  private async checkAncestors(path: string): Promise<void> {
    const parts = path.split("/");
    for (let i = 0; i < parts.length - 1; i++) {
      const dir = parts.slice(0, i + 1).join("/");
      await this.call("lstat", { path: `/${dir}` }, `stat /${dir}`).catch((err: unknown) => {
        if (err instanceof QbackupError && err.code === "ERR_IMAGE_MALFORMED") throw err;
      });
    }
  }

  /** The entries of directory `path`, sorted by name (without `.` and `..`). */
  async list(path: string): Promise<ExtEntry[]> {
    const names = (await this.call("readdir", { path: `/${path}` }, `list /${path}`)) as unknown;
    if (!Array.isArray(names) || names.length > MAX_DIRECTORY_ENTRIES)
      throw this.damaged(`/${path} is not a sane directory`);
    const entries: ExtEntry[] = [];
    for (const name of [...new Set(names as string[])].sort()) {
      if (
        typeof name !== "string" ||
        name === "" ||
        name === "." ||
        name === ".." ||
        name.includes("/") ||
        name.includes("\0")
      ) {
        throw this.damaged(`/${path} holds an invalid name ${JSON.stringify(String(name))}`);
      }
      entries.push(await this.stat(path === "" ? name : `${path}/${name}`));
    }
    return entries;
  }

  /** The bytes of regular file `entry`, in pieces; exactly entry.size of them. */
  async *read(entry: ExtEntry): AsyncGenerator<Buffer> {
    const file = (await this.call("open", { path: `/${entry.path}` }, `open /${entry.path}`)) as number;
    try {
      for (let position = 0; position < entry.size;) {
        const length = Math.min(READ_PIECE_BYTES, entry.size - position);
        const piece = (await this.call("read", { file, position, length }, `read /${entry.path}`)) as Uint8Array;
        if (piece.length === 0) throw this.damaged(`/${entry.path} ends at byte ${position} of ${entry.size}`);
        position += piece.length;
        yield Buffer.from(piece.buffer, piece.byteOffset, piece.length);
      }
    } finally {
      await this.call("close", { file }, `close /${entry.path}`).catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    if (this.failure === undefined) {
      await this.call("umount", {}, "close the filesystem").catch(() => undefined);
    }
    this.failure ??= new Error("closed");
    await this.worker.terminate();
  }

  private call(op: string, args: Record<string, unknown>, doing: string): Promise<unknown> {
    if (this.failure) return Promise.reject(this.damaged(`cannot ${doing}: ${this.failure.message}`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(this.damaged(`cannot ${doing}: no answer within ${this.timeoutMs / 1000} s`));
        this.fail(new Error("stopped after a timeout"));
        void this.worker.terminate();
      }, this.timeoutMs);
      this.pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(this.errorOf(e, doing));
        },
      });
      this.worker.postMessage({ id, op, ...args });
    });
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const [id, waiting] of this.pending) {
      this.pending.delete(id);
      waiting.reject(err);
    }
  }

  /** What the user asked for is not there (ENOENT, ENOTDIR), or the filesystem is damaged. */
  private errorOf(err: Error, doing: string): QbackupError {
    const f = err instanceof WorkerFailure ? err.failure : undefined;
    if (f?.code === "ENOENT" || f?.code === "ENOTDIR") {
      const why = f.code === "ENOENT" ? "no such file or directory" : "a path component is not a directory";
      return new QbackupError("ERR_NOT_FOUND", `${this.what}: cannot ${doing}: ${why}`);
    }
    if (f?.errno != null && f.errno >= EXT2_ET_BASE && f.errno < EXT2_ET_BASE + EXT2_ET_COUNT) {
      return this.damaged(`cannot ${doing}: libext2fs error ${f.errno - EXT2_ET_BASE}`);
    }
    return this.damaged(`cannot ${doing}: ${err.message.split("\n")[0]!.slice(0, MAX_QUOTED_MESSAGE)}`);
  }

  private damaged(message: string): QbackupError {
    return new QbackupError("ERR_IMAGE_MALFORMED", `${this.what}: ${message}`, {
      hint: "the filesystem in the image is damaged (restore the whole qube to inspect it with e2fsck)",
    });
  }
}

function entryOf(path: string, st: WireStat, what: string): ExtEntry {
  const bad = (why: string) => new QbackupError("ERR_IMAGE_MALFORMED", `${what}: /${path}: ${why}`);
  if (typeof st !== "object" || st === null) throw bad("no metadata");
  const format = st.mode & 0o170000;
  const type = TYPE_BITS.find(([bits]) => bits === format)?.[1];
  if (type === undefined) throw bad(`unknown file type ${format.toString(8)}`);
  if (!Number.isSafeInteger(st.size) || st.size < 0) throw bad(`impossible size ${st.size}`);
  if (!Number.isFinite(st.mtimeMs)) throw bad("impossible modification time");
  return { path, type, size: st.size, mode: st.mode & 0o7777, mtime: new Date(st.mtimeMs), uid: st.uid, gid: st.gid };
}
