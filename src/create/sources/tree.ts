/**
 * A directory (the dom0 home, or any directory source) as an inner archive of its whole tree:
 * directories, regular files and symlinks stored as they are (never followed), with modes,
 * mtimes and owner names. Entries are walked in sorted order so archives are reproducible.
 * Other file types (sockets, fifos, devices) are skipped with a warning.
 */
import type { Dirent, Stats } from "node:fs";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { encodeTreeEntryHeader, endOfArchive, paddingFor } from "../../codec/tar/index.js";
import type { TreeEntry } from "../../codec/tar/index.js";
import { sourceError } from "../plan.js";
import { groupName, userName } from "./owners.js";
import type { SourceProgress } from "./volume.js";

const READ_SIZE = 1024 * 1024;
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

/** Depth-first, parents before children, names sorted bytewise. */
async function* walk(root: string, archiveRoot: string): AsyncGenerator<Visit> {
  const rootStats = await fs.lstat(root).catch((err: unknown) => {
    throw sourceError(err, root);
  });
  yield { fsPath: root, archivePath: archiveRoot, stats: rootStats };
  if (rootStats.isDirectory()) yield* walkChildren(root, archiveRoot);
}

async function* walkChildren(dir: string, archiveDir: string): AsyncGenerator<Visit> {
  const entries: Dirent[] = await fs.readdir(dir, { withFileTypes: true }).catch((err: unknown) => {
    throw sourceError(err, dir);
  });
  entries.sort((a, b) => Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)));
  for (const entry of entries) {
    const fsPath = path.join(dir, entry.name);
    const archivePath = `${archiveDir}/${entry.name}`;
    const stats = await fs.lstat(fsPath).catch((err: unknown) => {
      throw sourceError(err, fsPath);
    });
    yield { fsPath, archivePath, stats };
    if (stats.isDirectory()) yield* walkChildren(fsPath, archivePath);
  }
}

/** Allocated bytes of the tree plus header overhead: the figure the summary shows. */
export async function estimateTree(root: string): Promise<number> {
  let total = 0;
  for await (const { stats } of walk(root, ".")) {
    total += ENTRY_OVERHEAD_ESTIMATE + (stats.isFile() ? Math.min(Number(stats.blocks) * 512, stats.size) : 0);
  }
  return total;
}

export async function* treeArchive(root: string, archiveRoot: string, progress: TreeProgress): AsyncGenerator<Buffer> {
  for await (const visit of walk(root, archiveRoot)) {
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
      yield encodeTreeEntryHeader({ ...base, type: "directory", size: 0 });
    } else if (stats.isSymbolicLink()) {
      const linkname = await fs.readlink(visit.fsPath).catch((err: unknown) => {
        throw sourceError(err, visit.fsPath);
      });
      yield encodeTreeEntryHeader({ ...base, type: "symlink", size: 0, linkname });
    } else if (stats.isFile()) {
      const entry: TreeEntry = { ...base, type: "file", size: stats.size };
      yield encodeTreeEntryHeader(entry);
      yield* fileContent(visit.fsPath, stats.size, progress);
      const pad = paddingFor(stats.size);
      if (pad > 0) yield Buffer.alloc(pad);
    } else {
      progress.warning(`skipped ${visit.fsPath}: not a regular file, directory or symlink`);
    }
  }
  yield endOfArchive();
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
