/**
 * Archive path rules shared by the tar writers: relative, '/'-separated, no empty, '.' or '..'
 * components, no NUL. Pure string checks; no library needed.
 */

import { QbackupError } from "../../errors.js";

/** Throws ERR_UNSAFE_PATH unless `path` is a clean relative archive path. `what` names it in the message. */
export function checkRelativePath(path: string, what: string): void {
  const fail = (why: string): never => {
    throw new QbackupError("ERR_UNSAFE_PATH", `${what}: ${why}: ${JSON.stringify(path)}`);
  };
  if (path.length === 0) fail("empty path");
  if (path.includes("\0")) fail("path contains NUL");
  if (path.startsWith("/")) fail("absolute path");
  for (const component of path.split("/")) {
    if (component === "") fail("empty path component");
    if (component === "." || component === "..") fail(`'${component}' path component`);
  }
}

/** "a/b/c" → { dir: "a/b", base: "c" }; "c" → { dir: "", base: "c" }. */
export function splitDirBase(path: string): { dir: string; base: string } {
  const slash = path.lastIndexOf("/");
  return slash === -1 ? { dir: "", base: path } : { dir: path.slice(0, slash), base: path.slice(slash + 1) };
}
