/**
 * tar header decoding (reader side): one 512-byte header block (POSIX ustar, old GNU, v7) with its
 * checksum, octal or GNU base-256 numbers and old-GNU sparse fields, and strict pax record parsing.
 * Hand-written: the npm tar readers mishandle GNU sparse members (stack notes), and a strict,
 * bounded decoder of a few fixed fields is small.
 */

import { Buffer } from "node:buffer";
import { QbackupError } from "../../errors.js";
import { BLOCK_SIZE, NAME_FIELD_SIZE, PREFIX_FIELD_SIZE, LINKNAME_FIELD_SIZE } from "./header.js";
import type { PaxRecord } from "./pax.js";
import { isAllZero } from "./sparse.js";
import type { Region } from "./sparse.js";
import {
  F_NAME,
  F_MODE,
  F_UID,
  F_GID,
  F_SIZE,
  F_MTIME,
  F_CHKSUM,
  F_TYPEFLAG,
  F_LINKNAME,
  F_MAGIC,
  F_UNAME,
  F_GNAME,
  F_PREFIX,
  OWNER_FIELD_SIZE,
  SMALL_NUMERIC_FIELD,
  LARGE_NUMERIC_FIELD,
  CHKSUM_FIELD_SIZE,
} from "./layout.js";

/** Which header layout a block uses, from its magic/version bytes. */
export type HeaderFormat = "ustar" | "gnu" | "v7";

/** Old GNU sparse fields of a typeflag 'S' header: up to 4 map entries, extension flag, real size. */
export interface OldGnuSparseHeader {
  regions: Region[];
  /** true when extension blocks (21 entries each) follow the header */
  isExtended: boolean;
  realSize: number;
}

export interface DecodedHeader {
  format: HeaderFormat;
  /** the typeflag byte as a one-character string ("\0" for an old regular file) */
  typeflag: string;
  /** name field, joined with the prefix field for ustar ("prefix/name") */
  name: string;
  mode: number;
  uid: number;
  gid: number;
  /** size field: bytes of member data that follow the header (for 'S', the stored bytes only) */
  size: number;
  /** seconds since the epoch (may be negative in GNU base-256) */
  mtime: number;
  linkname: string;
  /** "" for v7 headers */
  uname: string;
  gname: string;
  /** only for format "gnu" with typeflag 'S' */
  oldGnuSparse?: OldGnuSparseHeader;
}

// Old GNU sparse layout (GNU tar's tar.h); the common fields are in layout.ts.
const MAGIC_AND_VERSION_SIZE = 8;
/** old GNU: 4 sparse entries at 386, isextended at 482, realsize at 483 */
const F_GNU_SPARSE = 386;
const F_GNU_ISEXTENDED = 482;
const F_GNU_REALSIZE = 483;
export const OLD_GNU_SPARSES_IN_HEADER = 4;
/** An old GNU sparse extension block: 21 entries of 24 bytes, then the isextended byte at 504. */
export const OLD_GNU_SPARSES_IN_EXTENSION = 21;
const F_EXT_ISEXTENDED = 504;
const SPARSE_ENTRY_SIZE = 2 * LARGE_NUMERIC_FIELD;

const ASCII_SPACE = 0x20;
const ASCII_ZERO = 0x30;
const ASCII_SEVEN = 0x37;
const ASCII_NINE = 0x39;
const ASCII_NEWLINE = 0x0a;
const ASCII_EQUALS = 0x3d;
const BASE256_FLAG = 0x80;
const BASE256_SIGN = 0x40;
const BASE256_FIRST_BYTE_BITS = 0x3f;
/** Decimal digits of the largest pax record length we parse (far above any pax size limit). */
const MAX_RECORD_LENGTH_DIGITS = 15;

const MAGIC_POSIX = Buffer.from("ustar\u000000", "latin1");
const MAGIC_GNU = Buffer.from("ustar  \u0000", "latin1");

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function malformed(message: string): QbackupError {
  return new QbackupError("ERR_TAR_MALFORMED", message);
}

/** Strict UTF-8 to string; ERR_TAR_MALFORMED naming `what` when the bytes are not valid UTF-8. */
export function decodeUtf8(bytes: Uint8Array, what: string): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw malformed(`${what} is not valid UTF-8`);
  }
}

/** A NUL-terminated text field (the whole field when it has no NUL). */
function textField(block: Uint8Array, offset: number, size: number, what: string): string {
  const field = block.subarray(offset, offset + size);
  const nul = field.indexOf(0);
  return decodeUtf8(nul === -1 ? field : field.subarray(0, nul), what);
}

/**
 * A numeric header field: octal digits after optional leading spaces, ended by NUL, space or the end
 * of the field (then only NULs/spaces), or GNU base-256 (lead byte 0x80 positive, 0xff negative).
 * Throws ERR_TAR_MALFORMED for anything else, for an empty field and for values beyond 2^53.
 */
export function decodeNumericField(block: Uint8Array, offset: number, size: number, what: string): number {
  const first = block[offset] ?? 0;
  if ((first & BASE256_FLAG) !== 0) {
    const negative = (first & BASE256_SIGN) !== 0;
    let v = BigInt(first & BASE256_FIRST_BYTE_BITS);
    if (negative) v -= BigInt(BASE256_SIGN); // two's complement of the remaining 7 bits
    for (let i = offset + 1; i < offset + size; i++) v = (v << 8n) + BigInt(block[i] ?? 0);
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
      throw malformed(`${what}: base-256 value out of range`);
    }
    return Number(v);
  }
  let i = offset;
  const end = offset + size;
  while (i < end && block[i] === ASCII_SPACE) i++;
  let value = 0;
  let digits = 0;
  for (; i < end; i++) {
    const c = block[i] ?? 0;
    if (c < ASCII_ZERO || c > ASCII_SEVEN) break;
    value = value * 8 + (c - ASCII_ZERO);
    digits++;
  }
  for (; i < end; i++) {
    const c = block[i];
    if (c !== 0 && c !== ASCII_SPACE) throw malformed(`${what}: not an octal number`);
  }
  if (digits === 0) throw malformed(`${what}: empty numeric field`);
  if (!Number.isSafeInteger(value)) throw malformed(`${what}: octal value out of range`);
  return value;
}

/** Byte sums of a header block with its checksum field as eight spaces: [unsigned, signed]. */
export function headerChecksums(block: Uint8Array): [unsigned: number, signed: number] {
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK_SIZE; i++) {
    const b = i >= F_CHKSUM && i < F_CHKSUM + CHKSUM_FIELD_SIZE ? ASCII_SPACE : (block[i] ?? 0);
    unsigned += b;
    signed += b >= BASE256_FLAG ? b - 2 * BASE256_FLAG : b;
  }
  return [unsigned, signed];
}

function headerFormat(block: Uint8Array): HeaderFormat {
  const magic = block.subarray(F_MAGIC, F_MAGIC + MAGIC_AND_VERSION_SIZE);
  if (Buffer.compare(magic, MAGIC_POSIX) === 0) return "ustar";
  if (Buffer.compare(magic, MAGIC_GNU) === 0) return "gnu";
  if (isAllZero(magic)) return "v7";
  throw malformed("tar header: unknown magic");
}

/**
 * Old GNU sparse entries (offset 12 + numbytes 12 each) starting at `offset`; the list ends at the
 * first entry whose numbytes field starts with NUL, as in GNU tar.
 */
export function decodeOldGnuSparseEntries(block: Uint8Array, offset: number, count: number): Region[] {
  const regions: Region[] = [];
  for (let k = 0; k < count; k++) {
    const at = offset + k * SPARSE_ENTRY_SIZE;
    if (block[at + LARGE_NUMERIC_FIELD] === 0) break;
    const regionOffset = decodeNumericField(block, at, LARGE_NUMERIC_FIELD, "sparse entry offset");
    const length = decodeNumericField(block, at + LARGE_NUMERIC_FIELD, LARGE_NUMERIC_FIELD, "sparse entry numbytes");
    if (regionOffset < 0 || length < 0) throw malformed("tar header: negative sparse entry");
    regions.push({ offset: regionOffset, length });
  }
  return regions;
}

/** An old GNU sparse extension block: its entries and whether another extension block follows. */
export function decodeOldGnuSparseExtension(block: Uint8Array): { regions: Region[]; isExtended: boolean } {
  if (block.length !== BLOCK_SIZE) throw malformed(`sparse extension block is ${block.length} bytes`);
  return {
    regions: decodeOldGnuSparseEntries(block, 0, OLD_GNU_SPARSES_IN_EXTENSION),
    isExtended: block[F_EXT_ISEXTENDED] !== 0,
  };
}

/** What can be trusted of a header block once its checksum and magic are checked. */
export interface HeaderIdentity {
  format: HeaderFormat;
  typeflag: string;
  name: string;
}

/**
 * Checksum (the unsigned sum, or the signed sum some old tars wrote), magic, typeflag and name of
 * a header block, without its numeric fields. "zero" for an all-zero block.
 */
export function decodeHeaderIdentity(block: Uint8Array): HeaderIdentity | "zero" {
  if (block.length !== BLOCK_SIZE) throw malformed(`tar header: block is ${block.length} bytes, not ${BLOCK_SIZE}`);
  if (isAllZero(block)) return "zero";
  const stored = decodeNumericField(block, F_CHKSUM, CHKSUM_FIELD_SIZE, "tar header: checksum");
  const [unsigned, signed] = headerChecksums(block);
  if (stored !== unsigned && stored !== signed) throw malformed("tar header: checksum mismatch");

  const format = headerFormat(block);
  const typeflag = String.fromCharCode(block[F_TYPEFLAG] ?? 0);
  let name = textField(block, F_NAME, NAME_FIELD_SIZE, "tar header: name");
  if (format === "ustar") {
    const prefix = textField(block, F_PREFIX, PREFIX_FIELD_SIZE, "tar header: prefix");
    if (prefix !== "") name = `${prefix}/${name}`;
  }
  return { format, typeflag, name };
}

/**
 * Decode one header block: decodeHeaderIdentity, then every numeric and text field. "zero" for an
 * all-zero block (end-of-archive marker). Throws ERR_TAR_MALFORMED otherwise.
 */
export function decodeHeader(block: Uint8Array): DecodedHeader | "zero" {
  const id = decodeHeaderIdentity(block);
  if (id === "zero") return "zero";
  const { format, typeflag, name } = id;
  const num = (offset: number, size: number, what: string): number =>
    decodeNumericField(block, offset, size, `tar header of ${JSON.stringify(name)}: ${what}`);
  const header: DecodedHeader = {
    format,
    typeflag,
    name,
    mode: num(F_MODE, SMALL_NUMERIC_FIELD, "mode"),
    uid: num(F_UID, SMALL_NUMERIC_FIELD, "uid"),
    gid: num(F_GID, SMALL_NUMERIC_FIELD, "gid"),
    size: num(F_SIZE, LARGE_NUMERIC_FIELD, "size"),
    mtime: num(F_MTIME, LARGE_NUMERIC_FIELD, "mtime"),
    linkname: textField(block, F_LINKNAME, LINKNAME_FIELD_SIZE, "tar header: linkname"),
    uname: format === "v7" ? "" : textField(block, F_UNAME, OWNER_FIELD_SIZE, "tar header: uname"),
    gname: format === "v7" ? "" : textField(block, F_GNAME, OWNER_FIELD_SIZE, "tar header: gname"),
  };
  for (const [what, v] of [
    ["mode", header.mode],
    ["uid", header.uid],
    ["gid", header.gid],
    ["size", header.size],
  ] as const) {
    if (v < 0) throw malformed(`tar header of ${JSON.stringify(name)}: negative ${what}`);
  }
  if (format === "gnu" && typeflag === "S") {
    const realSize = num(F_GNU_REALSIZE, LARGE_NUMERIC_FIELD, "sparse real size");
    if (realSize < 0) throw malformed(`tar header of ${JSON.stringify(name)}: negative sparse real size`);
    header.oldGnuSparse = {
      regions: decodeOldGnuSparseEntries(block, F_GNU_SPARSE, OLD_GNU_SPARSES_IN_HEADER),
      isExtended: block[F_GNU_ISEXTENDED] !== 0,
      realSize,
    };
  }
  return header;
}

/** Keys whose values may be arbitrary bytes (extended attributes); decoded leniently, never used. */
const BINARY_VALUE_KEY_PREFIXES = ["SCHILY.xattr.", "LIBARCHIVE.xattr."];

function decimalLength(bytes: Uint8Array, start: number): { length: number; next: number } {
  let i = start;
  let length = 0;
  while (i < bytes.length && i - start <= MAX_RECORD_LENGTH_DIGITS) {
    const c = bytes[i] ?? 0;
    if (c < ASCII_ZERO || c > ASCII_NINE) break;
    length = length * 10 + (c - ASCII_ZERO);
    i++;
  }
  if (i === start || i - start > MAX_RECORD_LENGTH_DIGITS) throw malformed("pax header: bad record length");
  if (bytes[i] !== ASCII_SPACE) throw malformed("pax header: record length not followed by a space");
  return { length, next: i + 1 };
}

/**
 * pax records in order, repeats kept ("<len> key=value\n" each, filling `bytes` exactly). Strict:
 * any malformed record throws ERR_TAR_MALFORMED and nothing is returned.
 */
export function decodePaxRecordList(bytes: Uint8Array): PaxRecord[] {
  const records: PaxRecord[] = [];
  let pos = 0;
  while (pos < bytes.length) {
    const { length, next } = decimalLength(bytes, pos);
    const end = pos + length;
    if (end > bytes.length || end <= next) throw malformed("pax header: record length out of bounds");
    if (bytes[end - 1] !== ASCII_NEWLINE) throw malformed("pax header: record does not end with a newline");
    const body = bytes.subarray(next, end - 1);
    const eq = body.indexOf(ASCII_EQUALS);
    if (eq <= 0) throw malformed("pax header: record without a key");
    const keyBytes = body.subarray(0, eq);
    if (keyBytes.includes(0)) throw malformed("pax header: key contains NUL");
    const key = decodeUtf8(keyBytes, "pax header: key");
    const valueBytes = body.subarray(eq + 1);
    const value = BINARY_VALUE_KEY_PREFIXES.some((p) => key.startsWith(p))
      ? Buffer.from(valueBytes).toString("latin1")
      : decodeUtf8(valueBytes, `pax header: value of ${key}`);
    records.push([key, value]);
    pos = end;
  }
  return records;
}

/** pax records as a map (a repeated key keeps its last value). Strict like decodePaxRecordList. */
export function decodePaxRecords(bytes: Uint8Array): Map<string, string> {
  return new Map(decodePaxRecordList(bytes));
}
