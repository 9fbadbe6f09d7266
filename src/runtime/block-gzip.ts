/**
 * One block in, one gzip member out, off the event loop. parallel-gzip.ts compresses independent
 * blocks of about 1 MiB, so a one-shot compressor fits, from one of two implementations whose
 * members any gzip reads:
 *
 * - libdeflate, the system's (Debian: libdeflate0), called through koffi: made for whole buffers,
 *   it compresses the benchmark's blocks at level 1 in about 55% of node:zlib's CPU time, with
 *   slightly smaller output. Used when it loads and node:zlib gunzips its members to the input
 *   on a known answer.
 * - node:zlib on libuv's pool, everywhere else, and for a level the library refuses.
 */
import { promisify } from "node:util";
import { gunzipSync, gzip, gzipSync } from "node:zlib";
import { QbackupError } from "../errors.js";
import { LIBDEFLATE_NAMES, bindLibdeflate } from "./libdeflate.js";
import type { Handle, Libdeflate } from "./libdeflate.js";

export interface BlockGzip {
  /** What compresses, for messages and the benchmark. */
  readonly name: string;
  /** `input` as one gzip member at `level` (0 stores, 1 fastest … 9 smallest), on another thread. */
  gzip(input: Uint8Array, level: number): Promise<Buffer>;
  /** The same on the calling thread: for measurements (bench/floor.ts). */
  gzipSync(input: Uint8Array, level: number): Buffer;
}

/** Room for a whole deflate member: at most 5 bytes per 16 KiB stored block, plus header and trailer. */
function memberCapacity(length: number): number {
  return length + Math.ceil(length / 16384) * 5 + 1024;
}

const zlibGzip = promisify(gzip);

export const NODE_ZLIB: BlockGzip = {
  name: "node:zlib",
  // one output buffer for the whole member: one threadpool task, not one per 16 KiB
  gzip: (input, level) => zlibGzip(input, { level, chunkSize: memberCapacity(input.length) }),
  gzipSync: (input, level) => gzipSync(input, { level, chunkSize: memberCapacity(input.length) }),
};

/** Text-like and byte-noise halves: both deflate paths (matches and literals) and a stored level. */
function knownAnswerInput(): Buffer {
  const text = Buffer.from("qbackup known answer: libdeflate against node:zlib. ".repeat(700));
  const noise = Buffer.alloc(32 * 1024);
  let x = 0x2545f491;
  for (let i = 0; i < noise.length; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    noise[i] = x >>> 24;
  }
  return Buffer.concat([text, noise]);
}

/**
 * libdeflate as a BlockGzip, from the first of `names` that loads and whose members (levels 0, 1
 * and 9) node:zlib gunzips to the input; null when none does (or koffi is unavailable here).
 */
export function loadLibdeflateGzip(names: readonly string[] = LIBDEFLATE_NAMES): BlockGzip | null {
  const input = knownAnswerInput();
  for (const file of names) {
    const lib = bindLibdeflate(file);
    if (lib === null) continue;
    const engine = new LibdeflateGzip(lib);
    try {
      if ([0, 1, 9].every((level) => gunzipSync(engine.gzipSync(input, level)).equals(input))) return engine;
    } catch {
      // refused a level, or wrote something that is not gzip
    }
  }
  return null;
}

/**
 * A compressor holds its level's match-finder state (about 0.1–1 MiB) and serves one call at a
 * time, so each level keeps the idle ones for the next block: as many as ever ran at once.
 */
export class LibdeflateGzip implements BlockGzip {
  readonly name: string;
  private readonly idle = new Map<number, Handle[]>();
  /** Levels libdeflate refused to allocate: node:zlib compresses those. */
  private readonly refused = new Set<number>();

  constructor(private readonly lib: Libdeflate) {
    this.name = `libdeflate (${lib.file})`;
  }

  async gzip(input: Uint8Array, level: number): Promise<Buffer> {
    const c = this.take(level);
    if (c === null) return NODE_ZLIB.gzip(input, level);
    try {
      const out = Buffer.allocUnsafe(this.lib.compressBound(c, input.length));
      return this.member(out, await this.lib.gzipCompressAsync(c, input, out));
    } finally {
      this.give(level, c);
    }
  }

  gzipSync(input: Uint8Array, level: number): Buffer {
    const c = this.take(level);
    if (c === null) return NODE_ZLIB.gzipSync(input, level);
    try {
      const out = Buffer.allocUnsafe(this.lib.compressBound(c, input.length));
      return this.member(out, this.lib.gzipCompress(c, input, out));
    } finally {
      this.give(level, c);
    }
  }

  private member(out: Buffer, written: number): Buffer {
    // 0 means the output did not fit, which the bound rules out
    if (!(written > 0 && written <= out.length))
      throw new QbackupError("ERR_INTERNAL", `libdeflate wrote ${written} bytes into a ${out.length}-byte buffer`);
    return out.subarray(0, written);
  }

  private take(level: number): Handle | null {
    if (this.refused.has(level)) return null;
    const c = this.idle.get(level)?.pop() ?? this.lib.allocCompressor(level);
    if (c === null) this.refused.add(level);
    return c;
  }

  private give(level: number, c: Handle): void {
    const list = this.idle.get(level);
    if (list === undefined) this.idle.set(level, [c]);
    else list.push(c);
  }
}

let chosen: BlockGzip | undefined;

/** libdeflate when it is here and sound, else node:zlib; chosen on first use (koffi and a check: ~5 ms). */
export function blockGzip(): BlockGzip {
  chosen ??= loadLibdeflateGzip() ?? NODE_ZLIB;
  return chosen;
}
