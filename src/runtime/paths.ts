/** Filesystem questions and writes the pipelines need in more than one place. */
import * as fs from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";

/** Whether anything (a file, a directory, a dangling symlink) is at `p`; links are not followed. */
export async function pathExists(p: string): Promise<boolean> {
  return fs.lstat(p).then(
    () => true,
    () => false,
  );
}

/**
 * Writes all of `data` at `position` (null: at the file's own offset). write(2) may take less
 * than it was given (a full disk part-way): the rest goes again, and fails there.
 */
export async function writeFully(handle: FileHandle, data: Uint8Array, position: number | null): Promise<void> {
  for (let off = 0; off < data.length;) {
    const at = position === null ? null : position + off;
    const { bytesWritten } = await handle.write(data, off, data.length - off, at);
    if (bytesWritten === 0) throw new Error(`no progress writing ${data.length - off} bytes`);
    off += bytesWritten;
  }
}
