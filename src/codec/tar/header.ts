/**
 * ustar header block (POSIX.1-1988 layout, spec Appendix A): encode one 512-byte block, compute the
 * unsigned checksum, numeric fields in octal or GNU base-256, name/prefix splitting.
 * Hand-written rather than taken from an npm tar library: we need byte-level control of every field
 * (Qubes' tar2qfile only accepts a narrow subset) and the libraries mishandle GNU sparse members.
 */

import { Buffer } from "node:buffer";
import { QbackupError } from "../../errors.js";
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
  F_VERSION,
  F_UNAME,
  F_GNAME,
  F_DEVMAJOR,
  F_DEVMINOR,
  F_PREFIX,
  SMALL_NUMERIC_FIELD,
  LARGE_NUMERIC_FIELD,
  CHKSUM_FIELD_SIZE,
} from "./layout.js";

export const BLOCK_SIZE = 512;
/** GNU tar's default record: blocking factor 20 × 512. */
export const RECORD_SIZE = 10240;

export const NAME_FIELD_SIZE = 100;
export const PREFIX_FIELD_SIZE = 155;
export const LINKNAME_FIELD_SIZE = 100;
/** uname/gname are 32 bytes and must stay NUL-terminated. */
export const OWNER_NAME_MAX_BYTES = 31;
export const MODE_MASK = 0o7777;

/** Largest value of an 8-byte octal field (7 digits + NUL): mode, uid, gid. */
export const MAX_OCTAL_7 = 0o7777777;
/** Largest value of a 12-byte octal field (11 digits + NUL): size, mtime. 8 GiB - 1. */
export const MAX_OCTAL_11 = 0o77777777777;

const CHKSUM_DIGITS = 6;
const ASCII_SPACE = 0x20;
const MAX_ASCII = 0x7f;
const BASE256_POSITIVE_FLAG = 0x80;

const POSIX_MAGIC = "ustar\0";
const POSIX_VERSION = "00";

export type TypeFlag = "0" | "5" | "2" | "x";

export interface HeaderFields {
  name: string;
  type: TypeFlag;
  size: number;
  mode: number;
  /** seconds since the epoch, integer */
  mtime: number;
  uid?: number;
  gid?: number;
  uname?: string;
  gname?: string;
  linkname?: string;
}

export interface EncodeHeaderOptions {
  /**
   * Numeric values that do not fit their octal field are written in GNU base-256 instead of throwing.
   * Only for headers whose exact values are also carried by a preceding pax record.
   */
  base256?: boolean;
}

function malformed(message: string): QbackupError {
  return new QbackupError("ERR_TAR_MALFORMED", `tar header: ${message}`);
}

/** NUL-padding that brings `size` bytes up to the next multiple of 512. */
export function paddingFor(size: number): number {
  const rest = size % BLOCK_SIZE;
  return rest === 0 ? 0 : BLOCK_SIZE - rest;
}

/** `size` rounded up to a multiple of 512. */
export function blockAlign(size: number): number {
  return size + paddingFor(size);
}

/** True when every character is 7-bit ASCII other than NUL (so one char is one byte). */
export function isPlainAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0 || c > MAX_ASCII) return false;
  }
  return true;
}

/** The largest value an octal field of `fieldSize` bytes holds (digits = fieldSize - 1, then NUL). */
export function maxOctal(fieldSize: number): number {
  return 8 ** (fieldSize - 1) - 1;
}

export function fitsOctal(value: number, fieldSize: number): boolean {
  return Number.isSafeInteger(value) && value >= 0 && value <= maxOctal(fieldSize);
}

/** Zero-padded octal digits filling the field except its last byte, which is NUL. */
export function encodeOctal(value: number, fieldSize: number): Buffer {
  if (!fitsOctal(value, fieldSize)) throw malformed(`value ${value} does not fit a ${fieldSize}-byte octal field`);
  const out = Buffer.alloc(fieldSize);
  out.write(value.toString(8).padStart(fieldSize - 1, "0"), 0, "ascii");
  return out;
}

/** GNU base-256: big-endian two's complement with the top bit of the first byte set (0x80 / 0xff lead). */
export function encodeBase256(value: number, fieldSize: number): Buffer {
  if (!Number.isSafeInteger(value)) throw malformed(`value ${value} is not an integer`);
  const out = Buffer.alloc(fieldSize);
  const bits = BigInt(8 * fieldSize);
  let v = BigInt(value);
  if (v < 0n) v += 1n << bits; // two's complement over the whole field; the lead byte becomes 0xff
  for (let i = fieldSize - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  if (value >= 0) out[0] = (out[0] ?? 0) | BASE256_POSITIVE_FLAG;
  return out;
}

function encodeNumber(what: string, value: number, fieldSize: number, opts: EncodeHeaderOptions): Buffer {
  if (!Number.isSafeInteger(value)) throw malformed(`${what} ${value} is not an integer`);
  if (fitsOctal(value, fieldSize)) return encodeOctal(value, fieldSize);
  if (opts.base256 === true) return encodeBase256(value, fieldSize);
  throw malformed(`${what} ${value} does not fit its ${fieldSize}-byte octal field`);
}

/**
 * Split an ASCII path into ustar prefix + name: the whole path in `name` when it fits, else the
 * shortest prefix (cut at a '/') that lets the rest fit in `name`. Undefined when no split fits.
 */
export function splitUstarName(path: string): { prefix: string; name: string } | undefined {
  if (path.length <= NAME_FIELD_SIZE) return { prefix: "", name: path };
  for (let i = path.indexOf("/"); i !== -1 && i <= PREFIX_FIELD_SIZE; i = path.indexOf("/", i + 1)) {
    const rest = path.length - i - 1;
    if (i > 0 && rest > 0 && rest <= NAME_FIELD_SIZE) return { prefix: path.slice(0, i), name: path.slice(i + 1) };
  }
  return undefined;
}

function writeText(block: Buffer, offset: number, fieldSize: number, what: string, value: string): void {
  if (!isPlainAscii(value)) throw malformed(`${what} is not plain ASCII (use a pax record)`);
  if (value.length > fieldSize) throw malformed(`${what} is ${value.length} bytes, the field holds ${fieldSize}`);
  block.write(value, offset, "ascii");
}

/** Unsigned byte sum of a header block with its checksum field counted as eight spaces. */
export function headerChecksum(block: Uint8Array): number {
  if (block.length !== BLOCK_SIZE) throw malformed(`block is ${block.length} bytes, not ${BLOCK_SIZE}`);
  let sum = 0;
  for (let i = 0; i < BLOCK_SIZE; i++) {
    sum += i >= F_CHKSUM && i < F_CHKSUM + CHKSUM_FIELD_SIZE ? ASCII_SPACE : (block[i] ?? 0);
  }
  return sum;
}

/**
 * One ustar header block: POSIX magic "ustar\0" + "00", checksum as 6 octal digits, NUL, space.
 * Throws ERR_TAR_MALFORMED when a value does not fit (callers put long or non-ASCII strings and big
 * numbers in a pax header first).
 */
export function encodeHeader(f: HeaderFields, opts: EncodeHeaderOptions = {}): Buffer {
  const block = Buffer.alloc(BLOCK_SIZE);
  if (f.name.length === 0) throw malformed("empty name");
  if (!isPlainAscii(f.name)) throw malformed("name is not plain ASCII (use a pax path record)");
  const split = splitUstarName(f.name);
  if (split === undefined) throw malformed(`name of ${f.name.length} bytes does not fit ustar name/prefix`);
  writeText(block, F_NAME, NAME_FIELD_SIZE, "name", split.name);
  writeText(block, F_PREFIX, PREFIX_FIELD_SIZE, "prefix", split.prefix);

  if (!Number.isSafeInteger(f.mode) || f.mode < 0) throw malformed(`mode ${f.mode} is not a non-negative integer`);
  encodeOctal(f.mode & MODE_MASK, SMALL_NUMERIC_FIELD).copy(block, F_MODE);
  encodeNumber("uid", f.uid ?? 0, SMALL_NUMERIC_FIELD, opts).copy(block, F_UID);
  encodeNumber("gid", f.gid ?? 0, SMALL_NUMERIC_FIELD, opts).copy(block, F_GID);
  if (f.size < 0) throw malformed(`size ${f.size} is negative`);
  encodeNumber("size", f.size, LARGE_NUMERIC_FIELD, opts).copy(block, F_SIZE);
  encodeNumber("mtime", f.mtime, LARGE_NUMERIC_FIELD, opts).copy(block, F_MTIME);

  block.write(f.type, F_TYPEFLAG, "ascii");
  writeText(block, F_LINKNAME, LINKNAME_FIELD_SIZE, "linkname", f.linkname ?? "");
  block.write(POSIX_MAGIC, F_MAGIC, "ascii");
  block.write(POSIX_VERSION, F_VERSION, "ascii");
  writeText(block, F_UNAME, OWNER_NAME_MAX_BYTES, "uname", f.uname ?? "");
  writeText(block, F_GNAME, OWNER_NAME_MAX_BYTES, "gname", f.gname ?? "");
  encodeOctal(0, SMALL_NUMERIC_FIELD).copy(block, F_DEVMAJOR);
  encodeOctal(0, SMALL_NUMERIC_FIELD).copy(block, F_DEVMINOR);

  const sum = headerChecksum(block);
  block.write(`${sum.toString(8).padStart(CHKSUM_DIGITS, "0")}\0 `, F_CHKSUM, "ascii");
  return block;
}

/**
 * A stand-in for the ustar name field when the real name travels in a pax record: non-ASCII
 * characters become '_' and an over-long path keeps its tail (no leading '/').
 */
export function ustarFallbackName(path: string): string {
  // eslint-disable-next-line no-control-regex
  const ascii = path.replace(/[^\x01-\x7f]/gu, "_");
  if (splitUstarName(ascii) !== undefined) return ascii;
  return ascii.slice(ascii.length - NAME_FIELD_SIZE).replace(/^\/+/u, "") || "_";
}
