/**
 * Pull-based byte cursor over an async iterable of chunks of any size, for the tar reader: exact
 * reads (copied only when they span chunks), zero-copy partial reads, skips, and a byte position.
 * Hand-written: a few lines over the async-iterator protocol; stream libraries add nothing here.
 */

import { Buffer } from "node:buffer";

const EMPTY = Buffer.alloc(0);

function asBuffer(chunk: Uint8Array): Buffer {
  return Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
}

export class ByteSource {
  private readonly iterator: AsyncIterator<Uint8Array>;
  private current: Buffer = EMPTY;
  private pos = 0;
  private ended = false;
  /** Bytes consumed so far. */
  position = 0;

  constructor(source: AsyncIterable<Uint8Array>) {
    this.iterator = source[Symbol.asyncIterator]();
  }

  /** True when at least one byte is available; false at the end of the source. */
  private async fill(): Promise<boolean> {
    while (this.pos >= this.current.length) {
      if (this.ended) return false;
      const r = await this.iterator.next();
      if (r.done === true) {
        this.ended = true;
        this.current = EMPTY;
        this.pos = 0;
        return false;
      }
      this.current = asBuffer(r.value);
      this.pos = 0;
    }
    return true;
  }

  /** Between 1 and `max` bytes (a view of the source's chunk), or an empty buffer at the end. */
  async readUpTo(max: number): Promise<Buffer> {
    if (max <= 0 || !(await this.fill())) return EMPTY;
    const n = Math.min(max, this.current.length - this.pos);
    const out = this.current.subarray(this.pos, this.pos + n);
    this.pos += n;
    this.position += n;
    return out;
  }

  /** Exactly `n` bytes, or fewer only when the source ended first. */
  async readExact(n: number): Promise<Buffer> {
    const first = await this.readUpTo(n);
    if (first.length === n || first.length === 0) return first;
    const out = Buffer.allocUnsafe(n);
    first.copy(out, 0);
    let filled = first.length;
    while (filled < n) {
      const more = await this.readUpTo(n - filled);
      if (more.length === 0) return out.subarray(0, filled);
      more.copy(out, filled);
      filled += more.length;
    }
    return out;
  }

  /** Discards up to `n` bytes; returns how many were discarded (fewer only at the end). */
  async skip(n: number): Promise<number> {
    let skipped = 0;
    while (skipped < n) {
      const got = await this.readUpTo(n - skipped);
      if (got.length === 0) break;
      skipped += got.length;
    }
    return skipped;
  }

  /** Tell the source we stop reading (runs its `return`, e.g. a generator's finally). */
  async close(): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    this.current = EMPTY;
    await this.iterator.return?.();
  }
}
