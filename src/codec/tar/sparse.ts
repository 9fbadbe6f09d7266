/**
 * Holes and GNU sparse maps: zero-block detection over a byte stream (any piece sizes), the region
 * list with the reference end rule (spec §4.3), and the GNU sparse 1.0 map text.
 * Hand-written: npm tar libraries mishandle GNU sparse formats, and this is a few dozen lines.
 */

import { Buffer } from "node:buffer";
import { QbackupError } from "../../errors.js";
import { BLOCK_SIZE, paddingFor } from "./header.js";

/** A data region of a sparse file: `length` bytes at `offset`. Everything else is a hole. */
export interface Region {
  offset: number;
  length: number;
}

export const DEFAULT_HOLE_GRANULARITY = 4096;

/** Zero buffer used as the comparand of isAllZero (memcmp through Buffer.compare). */
const ZERO_CHUNK = Buffer.alloc(64 * 1024);

/** True when every byte is 0. Compares natively against a zero buffer, no per-byte JS loop. */
export function isAllZero(bytes: Uint8Array): boolean {
  for (let off = 0; off < bytes.length; off += ZERO_CHUNK.length) {
    const n = Math.min(ZERO_CHUNK.length, bytes.length - off);
    const piece = bytes.subarray(off, off + n);
    if (Buffer.compare(piece, n === ZERO_CHUNK.length ? ZERO_CHUNK : ZERO_CHUNK.subarray(0, n)) !== 0) return false;
  }
  return true;
}

/**
 * Feed the consecutive bytes of a file in pieces of any size; blocks of `granularity` bytes that
 * are all zero are holes, runs of other blocks are data regions. finish() returns the regions; if
 * the file ends in a hole (or is empty) a final { offset: fileSize, length: 0 } is appended, so the
 * list always ends at the file size. The last region may end at a size that is not block-aligned.
 */
export class HoleScanner {
  private readonly granularity: number;
  private readonly partial: Buffer;
  private partialLength = 0;
  /** Bytes of the file fully classified so far (a multiple of granularity until finish). */
  private scanned = 0;
  /** Start offset of the data region being extended, or -1 when the last block was a hole. */
  private dataStart = -1;
  private readonly regions: Region[] = [];
  private finished = false;

  constructor(granularity: number = DEFAULT_HOLE_GRANULARITY) {
    if (!Number.isSafeInteger(granularity) || granularity <= 0 || granularity % BLOCK_SIZE !== 0) {
      throw new QbackupError("ERR_INTERNAL", `hole scanner: granularity ${granularity} is not a multiple of 512`);
    }
    this.granularity = granularity;
    this.partial = Buffer.alloc(granularity);
  }

  push(bytes: Uint8Array): void {
    if (this.finished) throw new QbackupError("ERR_INTERNAL", "hole scanner: push after finish");
    const g = this.granularity;
    let i = 0;
    if (this.partialLength > 0) {
      const take = Math.min(g - this.partialLength, bytes.length);
      this.partial.set(bytes.subarray(0, take), this.partialLength);
      this.partialLength += take;
      i = take;
      if (this.partialLength < g) return;
      this.classify(this.partial);
      this.partialLength = 0;
    }
    for (; bytes.length - i >= g; i += g) this.classify(bytes.subarray(i, i + g));
    if (i < bytes.length) {
      this.partial.set(bytes.subarray(i), 0);
      this.partialLength = bytes.length - i;
    }
  }

  finish(): Region[] {
    if (this.finished) throw new QbackupError("ERR_INTERNAL", "hole scanner: finish called twice");
    if (this.partialLength > 0) this.classify(this.partial.subarray(0, this.partialLength));
    this.partialLength = 0;
    this.finished = true;
    const fileSize = this.scanned;
    if (this.dataStart >= 0) {
      this.regions.push({ offset: this.dataStart, length: fileSize - this.dataStart });
    } else {
      this.regions.push({ offset: fileSize, length: 0 });
    }
    return this.regions.slice();
  }

  /** Total bytes pushed so far. */
  get bytesSeen(): number {
    return this.scanned + this.partialLength;
  }

  private classify(block: Uint8Array): void {
    const offset = this.scanned;
    if (isAllZero(block)) {
      if (this.dataStart >= 0) this.regions.push({ offset: this.dataStart, length: offset - this.dataStart });
      this.dataStart = -1;
    } else if (this.dataStart < 0) {
      this.dataStart = offset;
    }
    this.scanned += block.length;
  }
}

/**
 * Throws ERR_TAR_MALFORMED unless `regions` describe a file of `realSize` bytes the way the writer
 * emits them: ascending, non-overlapping, non-empty regions inside the file, the last one ending
 * exactly at `realSize` (a zero-length { realSize, 0 } marks a file that ends in a hole).
 */
export function checkRegions(regions: readonly Region[], realSize: number): void {
  const fail = (why: string): never => {
    throw new QbackupError("ERR_TAR_MALFORMED", `sparse map: ${why}`);
  };
  if (!Number.isSafeInteger(realSize) || realSize < 0) fail(`real size ${realSize} is not a non-negative integer`);
  if (regions.length === 0) fail("no regions");
  let end = 0;
  regions.forEach((r, i) => {
    const last = i === regions.length - 1;
    if (!Number.isSafeInteger(r.offset) || !Number.isSafeInteger(r.length) || r.offset < 0 || r.length < 0) {
      fail(`region ${i} has an invalid offset or length`);
    }
    if (r.offset < end) fail(`region ${i} overlaps or precedes the previous one`);
    if (r.length === 0 && !(last && r.offset === realSize)) fail(`region ${i} is empty`);
    end = r.offset + r.length;
    if (end > realSize) fail(`region ${i} ends at ${end}, past the real size ${realSize}`);
  });
  if (end !== realSize) fail(`regions end at ${end}, not at the real size ${realSize}`);
}

/** GNU sparse 1.0 map: "<count>\n" then "<offset>\n<length>\n" per region, NUL-padded to 512. */
export function encodeSparseMap10(regions: readonly Region[]): Buffer {
  const lines = [String(regions.length)];
  for (const r of regions) {
    if (!Number.isSafeInteger(r.offset) || !Number.isSafeInteger(r.length) || r.offset < 0 || r.length < 0) {
      throw new QbackupError("ERR_TAR_MALFORMED", "sparse map: region offset or length is not a non-negative integer");
    }
    lines.push(String(r.offset), String(r.length));
  }
  const text = Buffer.from(`${lines.join("\n")}\n`, "ascii");
  return Buffer.concat([text, Buffer.alloc(paddingFor(text.length))]);
}
