/** Paths inside a qube's filesystem as users type them (`/home/user/Documents`, `home/user/x.txt`). */
import { QbackupError } from "../errors.js";

/** The longest path accepted (PATH_MAX). */
export const MAX_INSIDE_PATH = 4096;

/**
 * `QUBE[:PATH]` → the qube and the path inside, normalised without a leading `/` ("" = the root).
 * `..` is refused rather than resolved: there is nothing above the root to reach.
 */
export function parseInsideSpec(spec: string): { qube: string; path: string } {
  const colon = spec.indexOf(":");
  const qube = colon < 0 ? spec : spec.slice(0, colon);
  const inside = colon < 0 ? "" : spec.slice(colon + 1);
  if (qube === "") throw new QbackupError("ERR_USAGE", `'${spec}': give QUBE or QUBE:PATH`);
  return { qube, path: normalizeInsidePath(inside) };
}

export function normalizeInsidePath(text: string): string {
  if (text.length > MAX_INSIDE_PATH || text.includes("\0")) {
    throw new QbackupError("ERR_USAGE", `path '${text.slice(0, 60)}…' is too long or holds NUL`);
  }
  const parts = text.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) throw new QbackupError("ERR_USAGE", `path '${text}': '..' is not allowed`);
  return parts.join("/");
}

/** The last component of an inside path ("" for the root). */
export function baseName(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}
