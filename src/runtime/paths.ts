/** Filesystem questions the pipelines ask in more than one place. */
import * as fs from "node:fs/promises";

/** Whether anything (a file, a directory, a dangling symlink) is at `p`; links are not followed. */
export async function pathExists(p: string): Promise<boolean> {
  return fs.lstat(p).then(
    () => true,
    () => false,
  );
}
