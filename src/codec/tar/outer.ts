/**
 * Outer archive members (spec §2.1, §2.4, §2.7): each member is framed as its own complete archive,
 * like one `tar -cO` run of REF-W, so it starts on a 10240-byte record boundary of the outer file.
 * Restricted to what Qubes' tar2qfile parses: ustar name/prefix only, octal size only, typeflag '0'.
 * Hand-written: the layout must be exact to the byte and tar libraries do not expose it.
 */

import { Buffer } from "node:buffer";
import { QbackupError } from "../../errors.js";
import { BLOCK_SIZE, MAX_OCTAL_11, RECORD_SIZE, encodeHeader, paddingFor, splitUstarName } from "./header.js";
import { checkRelativePath } from "./path.js";

/** tar2qfile parses the size only as 11 octal digits: 8 GiB - 1 at most. */
export const MAX_OUTER_MEMBER_SIZE = MAX_OCTAL_11;

/** Mode of every outer member (REF-W's temp files are 0644; tar2qfile applies mode & 07777). */
export const OUTER_MEMBER_MODE = 0o644;

/**
 * Owner names of every outer member. REF-W runs tar as root in dom0, so its members say root/root;
 * writing the same keeps the header block byte-identical to REF-W's. Readers ignore owners
 * (tar2qfile forwards none; REF-R extracts into a temp dir as root, where root is uid 0 anyway).
 */
export const OUTER_MEMBER_OWNER = "root";

/** End-of-archive marker: two zero blocks. */
const END_MARKER_SIZE = 2 * BLOCK_SIZE;
/** Printable ASCII without the space: the reader accepts no more (Qubes passes names space-separated). */
const PRINTABLE_ASCII_FIRST = 0x21;
const PRINTABLE_ASCII_LAST = 0x7e;

/**
 * Throws ERR_UNSAFE_PATH unless `name` is printable ASCII without spaces, relative, without
 * empty/'.'/'..' components, and fits the ustar name (100) or prefix (155) + name (100) fields.
 */
export function validateOuterMemberName(name: string): void {
  checkRelativePath(name, "outer member name");
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c < PRINTABLE_ASCII_FIRST || c > PRINTABLE_ASCII_LAST) {
      throw new QbackupError(
        "ERR_UNSAFE_PATH",
        `outer member name: not printable ASCII without spaces: ${JSON.stringify(name)}`,
      );
    }
  }
  if (splitUstarName(name) === undefined) {
    throw new QbackupError("ERR_UNSAFE_PATH", `outer member name: does not fit ustar name/prefix: ${name}`);
  }
}

/**
 * The ustar header block of a member of `size` bytes: typeflag '0', mode 0644, uid/gid 0,
 * uname/gname "root" (see OUTER_MEMBER_OWNER), POSIX magic, octal size (< 8 GiB).
 */
export function outerMemberHeader(name: string, size: number, mtime: number): Buffer {
  validateOuterMemberName(name);
  if (!Number.isSafeInteger(size) || size < 0 || size > MAX_OUTER_MEMBER_SIZE) {
    throw new QbackupError(
      "ERR_TAR_MALFORMED",
      `outer member ${name}: size ${size} not in 0..${MAX_OUTER_MEMBER_SIZE}`,
    );
  }
  return encodeHeader({
    name,
    type: "0",
    size,
    mode: OUTER_MEMBER_MODE,
    mtime,
    uid: 0,
    gid: 0,
    uname: OUTER_MEMBER_OWNER,
    gname: OUTER_MEMBER_OWNER,
  });
}

/** Total bytes one framed member occupies: header + data + padding + end marker, up to a record. */
export function outerMemberFramedSize(size: number): number {
  const used = BLOCK_SIZE + size + paddingFor(size) + END_MARKER_SIZE;
  return Math.ceil(used / RECORD_SIZE) * RECORD_SIZE;
}

/**
 * What follows a member's data: NUL padding to 512, two zero blocks, NUL padding to the next
 * 10240 boundary (the member started on one), so the next member starts on a record boundary.
 */
export function outerMemberTrailer(size: number): Buffer {
  if (!Number.isSafeInteger(size) || size < 0) {
    throw new QbackupError("ERR_TAR_MALFORMED", `outer member: size ${size} is not a non-negative integer`);
  }
  return Buffer.alloc(outerMemberFramedSize(size) - BLOCK_SIZE - size);
}

/** Convenience for small members held in memory: header + data + trailer. */
export function encodeOuterMember(name: string, data: Uint8Array, mtime: number): Buffer {
  return Buffer.concat([outerMemberHeader(name, data.length, mtime), data, outerMemberTrailer(data.length)]);
}
