/**
 * POSIX.1-2001 pax extended header records ("<len> key=value\n", UTF-8, <len> counts the whole
 * record including its own digits) and the typeflag 'x' member that carries them.
 * Hand-written: tiny, and the tar libraries do not give byte-level control of the header layout.
 */

import { Buffer } from "node:buffer";
import { QbackupError } from "../../errors.js";
import { encodeHeader, fitsOctal, paddingFor } from "./header.js";

export type PaxRecord = readonly [key: string, value: string];

const RECORD_SEPARATOR_BYTES = 3; // " ", "=", "\n"
const MTIME_FIELD_SIZE = 12;

function decimalDigits(n: number): number {
  return String(n).length;
}

/** One record; its length prefix is the smallest fixed point of len = digits(len) + rest. */
export function encodePaxRecord(key: string, value: string): Buffer {
  if (key.length === 0 || key.includes("=") || key.includes("\0") || key.includes("\n")) {
    throw new QbackupError("ERR_TAR_MALFORMED", `pax record: invalid key ${JSON.stringify(key)}`);
  }
  const rest = Buffer.byteLength(key, "utf8") + Buffer.byteLength(value, "utf8") + RECORD_SEPARATOR_BYTES;
  let len = rest + decimalDigits(rest);
  while (decimalDigits(len) + rest !== len) len = decimalDigits(len) + rest;
  return Buffer.from(`${len} ${key}=${value}\n`, "utf8");
}

/** Records concatenated, in the given order, without padding. */
export function encodePaxRecords(records: ReadonlyArray<readonly [string, string]>): Buffer {
  return Buffer.concat(records.map(([k, v]) => encodePaxRecord(k, v)));
}

export interface PaxHeaderOptions {
  /** mode of the 'x' header block itself (default 0644) */
  mode?: number;
  /** mtime of the 'x' header block itself; 0 when it does not fit an octal field */
  mtime?: number;
}

/**
 * A complete typeflag 'x' member: its ustar header block named `headerName` (ASCII, fits ustar),
 * the records, NUL padding to 512. Applies to the member header that follows it.
 */
export function encodePaxHeader(
  headerName: string,
  records: ReadonlyArray<readonly [string, string]>,
  opts: PaxHeaderOptions = {},
): Buffer {
  const data = encodePaxRecords(records);
  const mtime = opts.mtime !== undefined && fitsOctal(opts.mtime, MTIME_FIELD_SIZE) ? opts.mtime : 0;
  const header = encodeHeader({ name: headerName, type: "x", size: data.length, mode: opts.mode ?? 0o644, mtime });
  return Buffer.concat([header, data, Buffer.alloc(paddingFor(data.length))]);
}
