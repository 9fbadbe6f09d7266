/**
 * Safety check of a path read from an inner archive, for the restore layer (the tar reader itself
 * only refuses NUL bytes). Pure string rules; no library needed.
 */

import { QbackupError } from "../../errors.js";

/**
 * Throws ERR_UNSAFE_PATH unless `path` is relative and harmless: not empty, no NUL, not absolute,
 * no '..' component, no empty component (a single trailing '/' is allowed). '.' components are
 * allowed ("./dir/file" is what `tar -C root .` writes).
 */
export function validateRelativeArchivePath(path: string): void {
  const fail = (why: string): never => {
    throw new QbackupError("ERR_UNSAFE_PATH", `archive path ${JSON.stringify(path)}: ${why}`);
  };
  if (path.length === 0) fail("empty path");
  if (path.includes("\0")) fail("contains NUL");
  if (path.startsWith("/")) fail("absolute path");
  const body = path.endsWith("/") ? path.slice(0, -1) : path;
  for (const component of body.split("/")) {
    if (component === "") fail("empty path component");
    if (component === "..") fail("'..' path component");
  }
}
