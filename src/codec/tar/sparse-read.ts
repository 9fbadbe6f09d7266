/**
 * GNU sparse maps, reader side: the pax 0.0 (repeated offset/numbytes records), 0.1 (one
 * "GNU.sparse.map" list) and 1.0 (decimal lines at the start of the member data) encodings, and
 * the checks every map must pass before any data is placed.
 * Hand-written: the npm tar readers mishandle or ignore these maps (stack notes).
 */

import { QbackupError } from "../../errors.js";
import { BLOCK_SIZE } from "./header.js";
import type { PaxRecord } from "./pax.js";
import type { Region } from "./sparse.js";

/** Largest number of decimal digits of a 2^53 value. */
const MAX_DECIMAL_DIGITS = 16;
const ASCII_ZERO = 0x30;
const ASCII_NINE = 0x39;
const ASCII_NEWLINE = 0x0a;

export const PAX_SPARSE_OFFSET = "GNU.sparse.offset";
export const PAX_SPARSE_NUMBYTES = "GNU.sparse.numbytes";

function malformed(what: string, why: string): QbackupError {
  return new QbackupError("ERR_TAR_MALFORMED", `${what}: ${why}`);
}

/** A non-negative decimal integer ≤ 2^53 - 1 written with digits only. */
export function parseDecimal(text: string, what: string): number {
  if (!/^[0-9]+$/u.test(text) || text.length > MAX_DECIMAL_DIGITS)
    throw malformed(what, `bad number ${JSON.stringify(text)}`);
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw malformed(what, `number ${text} out of range`);
  return n;
}

function checkCount(count: number, maxRegions: number, what: string): void {
  if (count > maxRegions) throw malformed(what, `sparse map has more than ${maxRegions} regions`);
}

/**
 * pax sparse 0.0: GNU.sparse.offset / GNU.sparse.numbytes records, strictly alternating, in
 * record order. `records` is the whole ordered record list of the pax header.
 */
export function sparseMapFromPax00(records: readonly PaxRecord[], maxRegions: number, what: string): Region[] {
  const regions: Region[] = [];
  let pendingOffset: number | undefined;
  for (const [key, value] of records) {
    if (key === PAX_SPARSE_OFFSET) {
      if (pendingOffset !== undefined) throw malformed(what, "sparse offset without numbytes");
      checkCount(regions.length + 1, maxRegions, what);
      pendingOffset = parseDecimal(value, `${what}: ${key}`);
    } else if (key === PAX_SPARSE_NUMBYTES) {
      if (pendingOffset === undefined) throw malformed(what, "sparse numbytes without offset");
      regions.push({ offset: pendingOffset, length: parseDecimal(value, `${what}: ${key}`) });
      pendingOffset = undefined;
    }
  }
  if (pendingOffset !== undefined) throw malformed(what, "sparse offset without numbytes");
  return regions;
}

/** pax sparse 0.1: "offset,length,offset,length,…" (empty for no regions). */
export function sparseMapFromPax01(map: string, maxRegions: number, what: string): Region[] {
  if (map === "") return [];
  let commas = 0;
  for (let i = 0; i < map.length; i++) if (map.charCodeAt(i) === 0x2c) commas++;
  if (commas % 2 === 0) throw malformed(what, "GNU.sparse.map has an odd number of values");
  checkCount((commas + 1) / 2, maxRegions, what);
  const values = map.split(",").map((v) => parseDecimal(v, `${what}: GNU.sparse.map`));
  const regions: Region[] = [];
  for (let i = 0; i < values.length; i += 2) regions.push({ offset: values[i] ?? 0, length: values[i + 1] ?? 0 });
  return regions;
}

/**
 * Incremental parser of a pax sparse 1.0 map ("<count>\n" then "<offset>\n<length>\n" per region,
 * NUL-padded to 512): push the member's data blocks one by one until push() returns true.
 */
export class SparseMap10Parser {
  readonly regions: Region[] = [];
  /** Bytes of member data the map occupies (whole blocks). */
  bytesUsed = 0;
  private count = -1;
  private pendingOffset = -1;
  private digits = 0;
  private value = 0;
  private done = false;

  constructor(
    private readonly maxRegions: number,
    private readonly what: string,
  ) {}

  /** Feed the next 512-byte block; true once the map is complete (the rest of that block must be NUL). */
  push(block: Uint8Array): boolean {
    if (this.done) throw new QbackupError("ERR_INTERNAL", "sparse 1.0 map: push after completion");
    if (block.length !== BLOCK_SIZE) throw malformed(this.what, "sparse map block is not 512 bytes");
    this.bytesUsed += BLOCK_SIZE;
    for (let i = 0; i < block.length; i++) {
      const c = block[i] ?? 0;
      if (this.done) {
        if (c !== 0) throw malformed(this.what, "garbage after the sparse map");
      } else if (c >= ASCII_ZERO && c <= ASCII_NINE) {
        if (++this.digits > MAX_DECIMAL_DIGITS) throw malformed(this.what, "sparse map number too long");
        this.value = this.value * 10 + (c - ASCII_ZERO);
      } else if (c === ASCII_NEWLINE && this.digits > 0) {
        if (!Number.isSafeInteger(this.value)) throw malformed(this.what, "sparse map number out of range");
        this.takeNumber(this.value);
        this.digits = 0;
        this.value = 0;
      } else {
        throw malformed(this.what, "sparse map is not decimal lines");
      }
    }
    return this.done;
  }

  private takeNumber(n: number): void {
    if (this.count < 0) {
      checkCount(n, this.maxRegions, this.what);
      this.count = n;
    } else if (this.pendingOffset < 0) {
      this.pendingOffset = n;
    } else {
      this.regions.push({ offset: this.pendingOffset, length: n });
      this.pendingOffset = -1;
    }
    if (this.regions.length === this.count) this.done = true;
  }
}

/**
 * Throws ERR_TAR_MALFORMED unless the map fits a file of `realSize` bytes whose member stores
 * `dataSize` bytes: regions ascending and non-overlapping (zero-length ones allowed, e.g. GNU's
 * final "(size, 0)"), each inside the file, lengths summing to `dataSize`.
 */
export function validateSparseMap(regions: readonly Region[], realSize: number, dataSize: number, what: string): void {
  if (!Number.isSafeInteger(realSize) || realSize < 0) throw malformed(what, `bad sparse real size ${realSize}`);
  let end = 0;
  let total = 0;
  for (let i = 0; i < regions.length; i++) {
    const r = regions[i];
    if (r === undefined) continue;
    if (r.offset < end)
      throw malformed(what, `sparse region ${i} at ${r.offset} overlaps or precedes the previous one`);
    end = r.offset + r.length;
    if (end > realSize) throw malformed(what, `sparse region ${i} ends at ${end}, past the real size ${realSize}`);
    total += r.length;
  }
  if (total !== dataSize) throw malformed(what, `sparse regions hold ${total} bytes, the member stores ${dataSize}`);
}
