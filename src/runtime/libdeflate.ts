/**
 * The system's libdeflate (Debian: libdeflate0), called through koffi: gzip compression and
 * decompression of whole buffers in one call each, without zlib's streaming state. Only the
 * binding is here; block-gzip.ts (create) and gunzip.ts (restore) each check it on a known
 * answer against node:zlib before they use it. The *Async calls run on koffi's threads.
 */
import { createRequire } from "node:module";
import type Koffi from "koffi";
import type { KoffiFunc, LibraryHandle } from "koffi";

/** Where libdeflate may be found: its soname first, then the unversioned development link. */
export const LIBDEFLATE_NAMES: readonly string[] =
  process.platform === "darwin" ? ["libdeflate.0.dylib", "libdeflate.dylib"] : ["libdeflate.so.0", "libdeflate.so"];

/** An opaque `struct libdeflate_compressor *` or `…_decompressor *`, as koffi hands it out. */
export type Handle = object | bigint | number;

/** libdeflate_result: the member was whole and sound, and fit. */
export const DECOMPRESS_SUCCESS = 0;

export interface Decompressed {
  /** A libdeflate_result: DECOMPRESS_SUCCESS, or bad data (1), short output (2), no space (3). */
  result: number;
  /** Bytes of input the member took. */
  inputUsed: number;
  /** Bytes written to the output. */
  outputUsed: number;
}

export interface Libdeflate {
  /** The file it was loaded from. */
  readonly file: string;
  /** null when the library does not offer `level`. */
  allocCompressor(level: number): Handle | null;
  /** The most bytes compressing `length` bytes can take. */
  compressBound(c: Handle, length: number): number;
  /** `input` as one gzip member into `out`: the member's length, 0 if it did not fit. */
  gzipCompress(c: Handle, input: Uint8Array, out: Uint8Array): number;
  gzipCompressAsync(c: Handle, input: Uint8Array, out: Uint8Array): Promise<number>;
  allocDecompressor(): Handle | null;
  /** The one gzip member at the start of `input`, into `out`. */
  gzipDecompress(d: Handle, input: Uint8Array, out: Uint8Array): Decompressed;
  gzipDecompressAsync(d: Handle, input: Uint8Array, out: Uint8Array): Promise<Decompressed>;
}

const settle =
  <R>(resolve: (value: R) => void, reject: (err: unknown) => void) =>
  (err: unknown, result: R) => {
    if (err === null || err === undefined) resolve(result);
    else reject(err instanceof Error ? err : new Error(String(err)));
  };

/** libdeflate's functions from `file`; null when koffi or the library (or one of its functions) is missing. */
export function bindLibdeflate(file: string): Libdeflate | null {
  let lib: LibraryHandle | undefined;
  try {
    const koffi = createRequire(import.meta.url)("koffi") as typeof Koffi;
    lib = koffi.load(file);
    const compress = lib.func(
      "size_t libdeflate_gzip_compress(void *c, const uint8_t *in, size_t n, uint8_t *out, size_t avail)",
    ) as unknown as KoffiFunc<(c: Handle, input: Uint8Array, n: number, out: Uint8Array, avail: number) => number>;
    // the counts are written into a buffer of two size_t: input used at 0, output written after it
    const decompress = lib.func(
      "int libdeflate_gzip_decompress_ex(void *d, const uint8_t *in, size_t n, uint8_t *out, size_t avail, " +
        "void *actual_in, void *actual_out)",
    ) as unknown as KoffiFunc<
      (
        d: Handle,
        input: Uint8Array,
        n: number,
        out: Uint8Array,
        avail: number,
        inputUsed: Uint8Array,
        outputUsed: Uint8Array,
      ) => number
    >;
    const sizeT = koffi.sizeof("size_t");
    const counts = (result: number, used: Uint8Array): Decompressed => {
      const [inputUsed, outputUsed] =
        sizeT === 8 ? Array.from(new BigUint64Array(used.buffer), Number) : Array.from(new Uint32Array(used.buffer));
      return { result, inputUsed: inputUsed!, outputUsed: outputUsed! };
    };
    const usedArgs = (used: Uint8Array) => [used.subarray(0, sizeT), used.subarray(sizeT)] as const;
    return {
      file,
      allocCompressor: lib.func("void *libdeflate_alloc_compressor(int level)") as Libdeflate["allocCompressor"],
      compressBound: lib.func(
        "size_t libdeflate_gzip_compress_bound(void *c, size_t n)",
      ) as Libdeflate["compressBound"],
      gzipCompress: (c, input, out) => compress(c, input, input.length, out, out.length),
      gzipCompressAsync: (c, input, out) =>
        new Promise((resolve, reject) =>
          compress.async(c, input, input.length, out, out.length, settle(resolve, reject)),
        ),
      allocDecompressor: lib.func("void *libdeflate_alloc_decompressor(void)") as Libdeflate["allocDecompressor"],
      gzipDecompress: (d, input, out) => {
        const used = new Uint8Array(2 * sizeT); // its own ArrayBuffer: aligned for the size_t views
        return counts(decompress(d, input, input.length, out, out.length, ...usedArgs(used)), used);
      },
      gzipDecompressAsync: (d, input, out) => {
        const used = new Uint8Array(2 * sizeT);
        return new Promise((resolve, reject) =>
          decompress.async(
            d,
            input,
            input.length,
            out,
            out.length,
            ...usedArgs(used),
            settle((result: number) => resolve(counts(result, used)), reject),
          ),
        );
      },
    };
  } catch {
    lib?.unload(); // no FFI here, no such library, or not the library we think
    return null;
  }
}
