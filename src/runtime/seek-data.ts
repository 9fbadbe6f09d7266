/**
 * Where a sparse file's data is, asked of the filesystem with lseek(SEEK_DATA / SEEK_HOLE), as
 * GNU tar --sparse does, instead of reading every hole to find it is zeros (a 20 GiB private.img
 * holding 2 GiB would otherwise be read in full). Node has no binding for these, so lseek is
 * called through koffi (FFI, prebuilt for each platform). 64-bit Linux only (the constants differ
 * elsewhere); anything unavailable or refused gives `undefined` and the caller reads for holes.
 */
import * as fs from "node:fs/promises";
import { createRequire } from "node:module";
import type Koffi from "koffi";
import type { Region } from "../codec/tar/index.js";

const SEEK_DATA = 3;
const SEEK_HOLE = 4;
const ENXIO = 6;

type Lseek = (fd: number, offset: number, whence: number) => number | bigint;
interface Libc {
  lseek: Lseek;
  errno: () => number;
}

let libc: Libc | null | undefined;

/** Where off_t is 64 bits, so that `lseek` takes and returns int64_t. */
const ARCHES_64 = new Set(["x64", "arm64", "ppc64", "s390x", "riscv64", "loong64", "mips64el"]);

/** The C library's lseek through koffi, or null where that cannot be had (not 64-bit Linux, no prebuilt koffi). */
function loadLibc(): Libc | null {
  if (libc !== undefined) return libc;
  libc = null;
  if (process.platform !== "linux" || !ARCHES_64.has(process.arch)) return libc;
  try {
    const koffi = createRequire(import.meta.url)("koffi") as typeof Koffi;
    const lib = koffi.load(null); // the symbols already in the process: glibc's or musl's lseek
    libc = {
      lseek: lib.func("int64_t lseek(int fd, int64_t offset, int whence)") as Lseek,
      errno: () => koffi.errno(),
    };
  } catch {
    // no FFI here: holes are found by reading
  }
  return libc;
}

/**
 * The data regions of the open file `fd` of `size` bytes, widened to multiples of `granularity`
 * (clipped to the size) and merged, in the form HoleScanner.finish() gives: ascending, and
 * ending exactly at `size` (with a final { size, 0 } when the file ends in a hole). `undefined`
 * when the filesystem or platform cannot tell (then every byte must be read to find holes).
 */
export function seekDataRegions(fd: number, size: number, granularity: number): Region[] | undefined {
  const c = loadLibc();
  if (c === null) return undefined;
  const regions: Region[] = [];
  let end = 0;
  for (let pos = 0; pos < size;) {
    const data = Number(c.lseek(fd, pos, SEEK_DATA));
    if (data < 0) {
      if (c.errno() === ENXIO) break; // nothing but a hole from pos to the end
      return undefined; // EINVAL: SEEK_DATA not supported here
    }
    if (data >= size) break; // the file grew since its size was taken
    const hole = Number(c.lseek(fd, data, SEEK_HOLE));
    if (hole <= data) return undefined;
    const start = Math.floor(data / granularity) * granularity;
    const stop = Math.min(size, Math.ceil(hole / granularity) * granularity);
    const previous = regions[regions.length - 1];
    if (previous !== undefined && start <= end) previous.length = stop - previous.offset;
    else regions.push({ offset: start, length: stop - start });
    end = stop;
    pos = stop;
  }
  if (end < size || regions.length === 0) regions.push({ offset: size, length: 0 });
  return regions;
}

/** Whether the filesystem holding the regular file `file` can tell where its data is. */
export async function canSeekData(file: string): Promise<boolean> {
  const c = loadLibc();
  if (c === null) return false;
  const handle = await fs.open(file, "r");
  try {
    return Number(c.lseek(handle.fd, 0, SEEK_DATA)) >= 0 || c.errno() === ENXIO;
  } finally {
    await handle.close();
  }
}
