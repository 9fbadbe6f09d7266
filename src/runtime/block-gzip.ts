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
import { createRequire } from "node:module";
import { promisify } from "node:util";
import { gunzipSync, gzip, gzipSync } from "node:zlib";
import type Koffi from "koffi";
import { QbackupError } from "../errors.js";

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

/** Where libdeflate may be found: its soname first, then the unversioned development link. */
export const LIBDEFLATE_NAMES: readonly string[] =
  process.platform === "darwin" ? ["libdeflate.0.dylib", "libdeflate.dylib"] : ["libdeflate.so.0", "libdeflate.so"];

/** An opaque `struct libdeflate_compressor *`, as koffi hands it out. */
type Compressor = object | bigint | number;

/** The three functions of libdeflate a BlockGzip needs. */
export interface Libdeflate {
  alloc: (level: number) => Compressor | null;
  bound: (c: Compressor, length: number) => number;
  compress: ((c: Compressor, input: Uint8Array, length: number, out: Uint8Array, avail: number) => number) & {
    async: (
      c: Compressor,
      input: Uint8Array,
      length: number,
      out: Uint8Array,
      avail: number,
      done: (err: unknown, written: number) => void,
    ) => void;
  };
}

/** libdeflate's compression functions from `file`; null when koffi or the library is missing. */
export function bindLibdeflate(file: string): Libdeflate | null {
  try {
    const koffi = createRequire(import.meta.url)("koffi") as typeof Koffi;
    const lib = koffi.load(file);
    return {
      alloc: lib.func("void *libdeflate_alloc_compressor(int level)") as Libdeflate["alloc"],
      bound: lib.func("size_t libdeflate_gzip_compress_bound(void *c, size_t n)") as Libdeflate["bound"],
      compress: lib.func(
        "size_t libdeflate_gzip_compress(void *c, const uint8_t *in, size_t n, uint8_t *out, size_t avail)",
      ) as unknown as Libdeflate["compress"],
    };
  } catch {
    return null; // no FFI here, no such library, or not the library we think
  }
}

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
export function loadLibdeflate(names: readonly string[] = LIBDEFLATE_NAMES): BlockGzip | null {
  const input = knownAnswerInput();
  for (const file of names) {
    const lib = bindLibdeflate(file);
    if (lib === null) continue;
    const engine = new LibdeflateGzip(lib, file);
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
  private readonly idle = new Map<number, Compressor[]>();
  /** Levels libdeflate refused to allocate: node:zlib compresses those. */
  private readonly refused = new Set<number>();

  constructor(
    private readonly lib: Libdeflate,
    file: string,
  ) {
    this.name = `libdeflate (${file})`;
  }

  gzip(input: Uint8Array, level: number): Promise<Buffer> {
    const c = this.take(level);
    if (c === null) return NODE_ZLIB.gzip(input, level);
    const out = Buffer.allocUnsafe(this.lib.bound(c, input.length));
    return new Promise((resolve, reject) => {
      this.lib.compress.async(c, input, input.length, out, out.length, (err, written) => {
        this.give(level, c);
        try {
          if (err !== null && err !== undefined) throw err instanceof Error ? err : new Error(String(err));
          resolve(this.member(out, written));
        } catch (e) {
          reject(e);
        }
      });
    });
  }

  gzipSync(input: Uint8Array, level: number): Buffer {
    const c = this.take(level);
    if (c === null) return NODE_ZLIB.gzipSync(input, level);
    try {
      const out = Buffer.allocUnsafe(this.lib.bound(c, input.length));
      return this.member(out, this.lib.compress(c, input, input.length, out, out.length));
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

  private take(level: number): Compressor | null {
    if (this.refused.has(level)) return null;
    const c = this.idle.get(level)?.pop() ?? this.lib.alloc(level);
    if (c === null) this.refused.add(level);
    return c;
  }

  private give(level: number, c: Compressor): void {
    const list = this.idle.get(level);
    if (list === undefined) this.idle.set(level, [c]);
    else list.push(c);
  }
}

let chosen: BlockGzip | undefined;

/** libdeflate when it is here and sound, else node:zlib; chosen on first use (koffi and a check: ~5 ms). */
export function blockGzip(): BlockGzip {
  chosen ??= loadLibdeflate() ?? NODE_ZLIB;
  return chosen;
}
