/**
 * A directory (the dom0 home, or any directory source) as an inner archive of its whole tree:
 * directories, regular files and symlinks stored as they are (never followed), with modes,
 * mtimes and owner names. Entries are walked in sorted order so archives are reproducible.
 * Other file types (sockets, fifos, devices) are skipped with a warning.
 *
 * The walk and small files use synchronous calls: a home directory has tens of thousands of
 * small files, and a threadpool round trip per open/stat/read/close costs more than the read
 * itself (1 ms vs ~20 µs per file here); compression keeps running on the threadpool meanwhile.
 */
import type { Dirent, Stats } from "node:fs";
import * as fsSync from "node:fs";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { encodeTreeEntryHeader, endOfArchive, paddingFor } from "../../codec/tar/index.js";
import type { TreeEntry } from "../../codec/tar/index.js";
import { sourceError } from "../plan.js";
import { groupName, userName } from "./owners.js";
import type { SourceProgress } from "./volume.js";

const READ_SIZE = 1024 * 1024;
/** Files up to this size are read with one synchronous read, into a batch of small entries. */
const SMALL_FILE = 256 * 1024;
const BATCH_SIZE = 1024 * 1024;
/** Per entry, for the summary's estimate: a header block and, often, a pax header. */
const ENTRY_OVERHEAD_ESTIMATE = 1024;

export interface TreeProgress extends SourceProgress {
  warning(message: string): void;
}

interface Visit {
  fsPath: string;
  archivePath: string;
  stats: Stats;
}

function sync<T>(p: string, call: () => T): T {
  try {
    return call();
  } catch (err) {
    throw sourceError(err, p);
  }
}

/** Depth-first, parents before children, names sorted bytewise. */
function* walk(root: string, archiveRoot: string): Generator<Visit> {
  const rootStats = sync(root, () => fsSync.lstatSync(root));
  yield { fsPath: root, archivePath: archiveRoot, stats: rootStats };
  if (rootStats.isDirectory()) yield* walkChildren(root, archiveRoot);
}

function* walkChildren(dir: string, archiveDir: string): Generator<Visit> {
  const entries: Dirent[] = sync(dir, () => fsSync.readdirSync(dir, { withFileTypes: true }));
  entries.sort((a, b) => Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)));
  for (const entry of entries) {
    const fsPath = path.join(dir, entry.name);
    const archivePath = `${archiveDir}/${entry.name}`;
    const stats = sync(fsPath, () => fsSync.lstatSync(fsPath));
    yield { fsPath, archivePath, stats };
    if (stats.isDirectory()) yield* walkChildren(fsPath, archivePath);
  }
}

/** Allocated bytes of the tree plus header overhead: the figure the summary shows. */
export async function estimateTree(root: string): Promise<number> {
  let total = 0;
  for (const { stats } of walk(root, ".")) {
    total += ENTRY_OVERHEAD_ESTIMATE + (stats.isFile() ? Math.min(Number(stats.blocks) * 512, stats.size) : 0);
  }
  return total;
}

/**
 * Small entries (headers, small files with their padding) gathered into buffers of about 1 MiB:
 * one piece per many files through the pipeline instead of one per file, each written in place
 * (a small file is read straight into it).
 */
class EntryBatch {
  private buffer: Buffer | undefined;
  private filled = 0;

  /** `size` bytes at the end of the batch to fill; null when they do not fit (take() first). */
  reserve(size: number): Buffer | null {
    this.buffer ??= Buffer.allocUnsafe(Math.max(BATCH_SIZE, size));
    if (this.filled + size > this.buffer.length) return null;
    const room = this.buffer.subarray(this.filled, this.filled + size);
    this.filled += size;
    return room;
  }

  /** The gathered bytes (handed on: the next reserve() starts a new buffer), or null when none. */
  take(): Buffer | null {
    if (this.buffer === undefined || this.filled === 0) return null;
    const taken = this.buffer.subarray(0, this.filled);
    this.buffer = undefined;
    this.filled = 0;
    return taken;
  }
}

export async function* treeArchive(root: string, archiveRoot: string, progress: TreeProgress): AsyncGenerator<Buffer> {
  const batch = new EntryBatch();
  /** Room for `size` bytes in the batch, yielding the batch first when they do not fit. */
  function* room(size: number): Generator<Buffer, Buffer> {
    let space = batch.reserve(size);
    if (space === null) {
      const full = batch.take();
      if (full !== null) yield full;
      space = batch.reserve(size)!;
    }
    return space;
  }
  for (const visit of walk(root, archiveRoot)) {
    const { stats } = visit;
    const base = {
      path: visit.archivePath,
      mode: stats.mode & 0o7777,
      mtime: Math.floor(stats.mtimeMs / 1000),
      uid: stats.uid,
      gid: stats.gid,
      uname: userName(stats.uid),
      gname: groupName(stats.gid),
    };
    if (stats.isDirectory()) {
      const header = encodeTreeEntryHeader({ ...base, type: "directory", size: 0 });
      header.copy(yield* room(header.length));
    } else if (stats.isSymbolicLink()) {
      const linkname = sync(visit.fsPath, () => fsSync.readlinkSync(visit.fsPath));
      const header = encodeTreeEntryHeader({ ...base, type: "symlink", size: 0, linkname });
      header.copy(yield* room(header.length));
    } else if (stats.isFile()) {
      const entry: TreeEntry = { ...base, type: "file", size: stats.size };
      const header = encodeTreeEntryHeader(entry);
      if (stats.size <= SMALL_FILE) {
        const space = yield* room(header.length + stats.size + paddingFor(stats.size));
        header.copy(space);
        readSmallFile(visit.fsPath, space.subarray(header.length), stats.size, progress);
      } else {
        const gathered = batch.take();
        if (gathered !== null) yield gathered;
        yield header;
        yield* fileContent(visit.fsPath, stats.size, progress);
        const pad = paddingFor(stats.size);
        if (pad > 0) yield Buffer.alloc(pad);
      }
    } else {
      progress.warning(`skipped ${visit.fsPath}: not a regular file, directory or symlink`);
    }
  }
  const end = endOfArchive();
  end.copy(yield* room(end.length));
  const last = batch.take();
  if (last !== null) yield last;
}

/** Exactly `size` bytes: a file that grew is cut at the size in its header, one that shrank is padded with zeros. */
async function* fileContent(file: string, size: number, progress: TreeProgress): AsyncGenerator<Buffer> {
  const handle = await fs.open(file, "r").catch((err: unknown) => {
    throw sourceError(err, file);
  });
  try {
    let done = 0;
    while (done < size) {
      const want = Math.min(READ_SIZE, size - done);
      const piece = Buffer.allocUnsafe(want);
      const { bytesRead } = await handle.read(piece, 0, want, done).catch((err: unknown) => {
        throw sourceError(err, file);
      });
      if (bytesRead === 0) {
        progress.warning(`${file} shrank while it was being backed up; padded with zeros`);
        yield Buffer.alloc(size - done);
        return;
      }
      done += bytesRead;
      progress.read(bytesRead);
      yield bytesRead === want ? piece : piece.subarray(0, bytesRead);
    }
  } finally {
    await handle.close();
  }
}

/**
 * A small file's content and block padding into `space`: exactly `size` bytes (cut or padded with
 * zeros like fileContent), then zeros to the end of `space`.
 */
function readSmallFile(file: string, space: Buffer, size: number, progress: TreeProgress): void {
  const fd = sync(file, () => fsSync.openSync(file, "r"));
  try {
    let done = 0;
    while (done < size) {
      const n = sync(file, () => fsSync.readSync(fd, space, done, size - done, done));
      if (n === 0) {
        progress.warning(`${file} shrank while it was being backed up; padded with zeros`);
        break;
      }
      done += n;
    }
    progress.read(done);
    space.fill(0, done);
  } finally {
    fsSync.closeSync(fd);
  }
}
