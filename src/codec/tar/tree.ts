/**
 * Inner directory-tree archive entries (dom0 home §7, directory sources): one ustar header per
 * file, directory or symlink, preceded by a pax 'x' member when a value does not fit ustar.
 * Symlink targets are stored exactly as given (REF-W's --xform rewrite of targets is not copied).
 * Hand-written: same header code as the other tar writers; libraries add nothing here.
 */

import { Buffer } from "node:buffer";
import { QbackupError } from "../../errors.js";
import {
  BLOCK_SIZE,
  LINKNAME_FIELD_SIZE,
  MODE_MASK,
  OWNER_NAME_MAX_BYTES,
  encodeHeader,
  fitsOctal,
  isPlainAscii,
  paddingFor,
  splitUstarName,
  ustarFallbackName,
} from "./header.js";
import type { TypeFlag } from "./header.js";
import { encodePaxHeader } from "./pax.js";
import type { PaxRecord } from "./pax.js";
import { checkRelativePath, splitDirBase } from "./path.js";

export type EntryType = "file" | "directory" | "symlink";

export interface TreeEntry {
  /** archive path, e.g. "dom0-home/user/Documents/a.txt"; directories without trailing slash */
  path: string;
  type: EntryType;
  /** files only; ignored (0) for directories and symlinks */
  size: number;
  mode: number;
  /** seconds, integer */
  mtime: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  /** symlinks only: the target, stored as-is */
  linkname?: string;
}

const TYPE_FLAGS: Record<EntryType, TypeFlag> = { file: "0", directory: "5", symlink: "2" };
const SMALL_NUMERIC_FIELD = 8;
const LARGE_NUMERIC_FIELD = 12;

/** NULs that follow `size` bytes of entry data. */
export function entryPadding(size: number): number {
  return paddingFor(size);
}

/** End-of-archive marker: two zero blocks. */
export function endOfArchive(): Buffer {
  return Buffer.alloc(2 * BLOCK_SIZE);
}

/** GNU tar's name for a pax header member: "<dir>/PaxHeaders/<base>", made to fit ustar. */
export function paxHeaderNameFor(path: string): string {
  const { dir, base } = splitDirBase(path.replace(/\/+$/u, ""));
  return ustarFallbackName(`${dir === "" ? "." : dir}/PaxHeaders/${base}`);
}

function ownerNameFits(name: string): boolean {
  return isPlainAscii(name) && name.length <= OWNER_NAME_MAX_BYTES;
}

function checkEntry(e: TreeEntry): void {
  checkRelativePath(e.path, "tree entry");
  const bad = (why: string): never => {
    throw new QbackupError("ERR_TAR_MALFORMED", `tree entry ${JSON.stringify(e.path)}: ${why}`);
  };
  if (!(e.type in TYPE_FLAGS)) bad(`unknown type ${String(e.type)}`);
  if (e.type === "file" && (!Number.isSafeInteger(e.size) || e.size < 0)) bad(`size ${e.size} is invalid`);
  if (!Number.isSafeInteger(e.mode) || e.mode < 0) bad(`mode ${e.mode} is invalid`);
  if (!Number.isSafeInteger(e.mtime)) bad(`mtime ${e.mtime} is not an integer number of seconds`);
  if (!Number.isSafeInteger(e.uid) || e.uid < 0 || !Number.isSafeInteger(e.gid) || e.gid < 0) bad("uid/gid invalid");
  for (const s of [e.uname, e.gname]) if (s.includes("\0")) bad("owner name contains NUL");
  if (e.type === "symlink") {
    if (e.linkname === undefined || e.linkname.length === 0) bad("symlink without a target");
    if (e.linkname?.includes("\0") === true) bad("symlink target contains NUL");
  }
}

/**
 * Header bytes of one entry: an optional pax 'x' member (path, linkpath, size, uid, gid, mtime,
 * uname, gname — each only when the ustar field cannot hold it) then the ustar header. Directory
 * names get a trailing '/'. The caller then writes `size` bytes (files) and entryPadding(size).
 */
export function encodeTreeEntryHeader(e: TreeEntry): Buffer {
  checkEntry(e);
  const name = e.type === "directory" ? `${e.path}/` : e.path;
  const size = e.type === "file" ? e.size : 0;
  const linkname = e.type === "symlink" ? (e.linkname ?? "") : "";
  const records: PaxRecord[] = [];

  const nameFits = isPlainAscii(name) && splitUstarName(name) !== undefined;
  if (!nameFits) records.push(["path", name]);
  const linkFits = isPlainAscii(linkname) && linkname.length <= LINKNAME_FIELD_SIZE;
  if (!linkFits) records.push(["linkpath", linkname]);
  if (!fitsOctal(size, LARGE_NUMERIC_FIELD)) records.push(["size", String(size)]);
  if (!fitsOctal(e.uid, SMALL_NUMERIC_FIELD)) records.push(["uid", String(e.uid)]);
  if (!fitsOctal(e.gid, SMALL_NUMERIC_FIELD)) records.push(["gid", String(e.gid)]);
  if (!fitsOctal(e.mtime, LARGE_NUMERIC_FIELD)) records.push(["mtime", String(e.mtime)]);
  const unameFits = ownerNameFits(e.uname);
  if (!unameFits) records.push(["uname", e.uname]);
  const gnameFits = ownerNameFits(e.gname);
  if (!gnameFits) records.push(["gname", e.gname]);

  const header = encodeHeader(
    {
      name: nameFits ? name : ustarFallbackName(name),
      type: TYPE_FLAGS[e.type],
      size,
      mode: e.mode & MODE_MASK,
      mtime: e.mtime,
      uid: e.uid,
      gid: e.gid,
      uname: unameFits ? e.uname : "",
      gname: gnameFits ? e.gname : "",
      linkname: linkFits ? linkname : ustarFallbackName(linkname).slice(0, LINKNAME_FIELD_SIZE),
    },
    { base256: records.length > 0 },
  );
  if (records.length === 0) return header;
  const pax = encodePaxHeader(paxHeaderNameFor(e.path), records, { mtime: e.mtime });
  return Buffer.concat([pax, header]);
}
