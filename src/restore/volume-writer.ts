/**
 * Writing one large restored file (a volume) without waiting for each write: pieces arrive in
 * ascending order, are copied into 4 KiB-aligned staging slabs, and each slab is written while the
 * next one fills, one write at a time on libuv's pool, so the main thread goes on authenticating,
 * decrypting and parsing meanwhile.
 *
 * Where the filesystem allows it, the slabs are written with O_DIRECT, past the page cache: a
 * restore writes gigabytes that nobody reads soon, and copying them into fresh page-cache pages
 * was a fifth of a restore's CPU time here (`perf`: copy_folio_from_iter_atomic), evicting the
 * user's cache on the way. Direct I/O needs aligned memory, offsets and lengths: slabs start on
 * 4 KiB file boundaries, a run's last block is padded with zeros (the next run starts in a later
 * block, and the file is truncated to its size at the end), and the staging memory is a
 * WebAssembly memory, which starts on a page boundary. A filesystem that refuses direct I/O at
 * open or at a write (EINVAL) gets the same slabs through the ordinary handle.
 */
import { constants as fsConstants } from "node:fs";
import * as fs from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { QbackupError, destinationError, systemErrorCode } from "../errors.js";
import { writeFully } from "../runtime/paths.js";

/** File offsets, lengths and memory of direct writes are multiples of this. */
const ALIGN = 4096;
export const SLAB_BYTES = 4 * 1024 * 1024;
/** One being written, one filling, one spare: a 4 MiB direct write takes ~4 ms here. */
const SLABS = 3;
const WASM_PAGE = 64 * 1024;

const alignDown = (n: number) => n - (n % ALIGN);
const alignUp = (n: number) => alignDown(n + ALIGN - 1);

/** Staging memories not in use, kept for the next volume (their pages are already touched). */
const idleStaging: Uint8Array[] = [];
const KEEP_IDLE = 2;

/** TypeScript's libs here do not type the WebAssembly global. */
type MemoryConstructor = new (size: { initial: number; maximum: number }) => { buffer: ArrayBuffer };
const WasmMemory = (globalThis as { WebAssembly?: { Memory: MemoryConstructor } }).WebAssembly?.Memory;

function takeStaging(): Uint8Array {
  const idle = idleStaging.pop();
  if (idle !== undefined) return idle;
  const bytes = SLABS * SLAB_BYTES;
  // without WebAssembly, memory of unknown alignment: direct writes then fail with EINVAL and fall back
  return new Uint8Array(
    WasmMemory
      ? new WasmMemory({ initial: bytes / WASM_PAGE, maximum: bytes / WASM_PAGE }).buffer
      : new ArrayBuffer(bytes),
  );
}

/**
 * A second handle on `file` for direct writes, or undefined where the filesystem (or platform)
 * has none. It must be the very file `handle` created.
 */
async function openDirect(file: string, handle: FileHandle): Promise<FileHandle | undefined> {
  const O_DIRECT = fsConstants.O_DIRECT as number | undefined;
  if (O_DIRECT === undefined) return undefined;
  const direct = await fs.open(file, fsConstants.O_WRONLY | fsConstants.O_NOFOLLOW | O_DIRECT).catch(() => undefined);
  if (direct === undefined) return undefined;
  const [a, b] = await Promise.all([handle.stat(), direct.stat()]).catch(() => [undefined, undefined]);
  if (a !== undefined && b !== undefined && a.dev === b.dev && a.ino === b.ino) return direct;
  await direct.close().catch(() => undefined);
  return undefined;
}

export interface VolumeWriterOptions {
  /** false: never direct I/O. */
  direct?: boolean;
  /** The staging memory (3 × SLAB_BYTES), for tests; by default page-aligned memory from a pool. */
  staging?: Uint8Array;
}

export class VolumeWriter {
  private readonly free: Uint8Array[];
  /** Taken from the pool (and given back), or the caller's. */
  private readonly staging: { memory: Uint8Array; pooled: boolean };
  /** The slab filling, holding file bytes [runStart, runEnd); runStart is aligned. */
  private slab: Uint8Array | undefined;
  private runStart = 0;
  private runEnd = 0;
  /** Writes queued or running, oldest first; each starts when the one before it is done. */
  private readonly queued: Array<Promise<void>> = [];
  private failure: { error: unknown } | undefined;
  private released = false;

  private constructor(
    private readonly handle: FileHandle,
    /** The file's path, for messages. */
    private readonly file: string,
    private direct: FileHandle | undefined,
    staging: Uint8Array | undefined,
  ) {
    this.staging = staging ? { memory: staging, pooled: false } : { memory: takeStaging(), pooled: true };
    const memory = this.staging.memory;
    if (memory.length !== SLABS * SLAB_BYTES)
      throw new QbackupError("ERR_INTERNAL", "staging memory of the wrong size");
    this.free = Array.from({ length: SLABS }, (_, i) => memory.subarray(i * SLAB_BYTES, (i + 1) * SLAB_BYTES));
  }

  /** A writer for `file`, just created as `handle` (which keeps serving everything but the data). */
  static async open(handle: FileHandle, file: string, options: VolumeWriterOptions = {}): Promise<VolumeWriter> {
    const direct = options.direct === false ? undefined : await openDirect(file, handle);
    return new VolumeWriter(handle, file, direct, options.staging);
  }

  /** Whether the data goes past the page cache (for tests and diagnostics). */
  get directIO(): boolean {
    return this.direct !== undefined;
  }

  /**
   * Stages `data` for `position`, which must not be before the end of the previous write; waits
   * only while every slab is full or being written.
   */
  async write(data: Uint8Array, position: number): Promise<void> {
    this.throwIfFailed();
    if (this.released) throw new QbackupError("ERR_INTERNAL", `write to ${this.file} after it was released`);
    if (position < this.runEnd) {
      throw new QbackupError("ERR_INTERNAL", `${this.file}: write at ${position}, before the end of the last one`);
    }
    if (data.length === 0) return;
    // a gap reaching past the run's last block ends the run: the gap stays a hole
    if (this.slab !== undefined && position > this.runEnd && position >= alignUp(this.runEnd)) this.flush();
    if (this.slab === undefined) {
      // a new run, from the block `position` is in: nothing was written in that block yet
      this.slab = await this.takeSlab();
      this.runStart = this.runEnd = alignDown(position);
    }
    this.slab.fill(0, this.runEnd - this.runStart, position - this.runStart); // a gap within a block
    this.runEnd = position;
    for (let done = 0; done < data.length;) {
      if (this.runEnd - this.runStart === SLAB_BYTES) {
        this.flush();
        this.slab = await this.takeSlab();
        this.runStart = this.runEnd;
      }
      const n = Math.min(SLAB_BYTES - (this.runEnd - this.runStart), data.length - done);
      this.slab!.set(data.subarray(done, done + n), this.runEnd - this.runStart);
      this.runEnd += n;
      done += n;
    }
  }

  /** Everything staged is written; throws the first failure. */
  async drain(): Promise<void> {
    this.throwIfFailed();
    if (this.slab !== undefined) this.flush();
    await this.settle();
    this.throwIfFailed();
  }

  /** Every write started is done or failed; never throws. What is still staged is not written. */
  async settle(): Promise<void> {
    await this.queued.at(-1);
  }

  /** settle(), then the direct handle is closed and the staging memory goes back to the pool. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await this.settle();
    await this.direct?.close().catch(() => undefined);
    this.direct = undefined;
    if (this.staging.pooled && idleStaging.length < KEEP_IDLE) idleStaging.push(this.staging.memory);
  }

  /** Queues the filling slab's run, its last block padded with zeros. */
  private flush(): void {
    const slab = this.slab!;
    const at = this.runStart;
    const length = alignUp(this.runEnd) - at;
    slab.fill(0, this.runEnd - at, length);
    this.slab = undefined;
    const done = (this.queued.at(-1) ?? Promise.resolve())
      .then(async () => {
        if (this.failure === undefined) await this.writeOut(slab.subarray(0, length), at);
      })
      .catch((err: unknown) => {
        this.failure ??= { error: destinationError(err, this.file) };
      })
      .finally(() => {
        this.queued.shift();
        this.free.push(slab);
      });
    this.queued.push(done);
  }

  private async writeOut(bytes: Uint8Array, position: number): Promise<void> {
    if (this.direct !== undefined) {
      try {
        await writeFully(this.direct, bytes, position);
        return;
      } catch (err) {
        if (systemErrorCode(err) !== "EINVAL") throw err;
        // the filesystem takes no direct I/O of this alignment: the same bytes, through the page cache
        const direct = this.direct;
        this.direct = undefined;
        await direct.close().catch(() => undefined);
      }
    }
    await writeFully(this.handle, bytes, position);
  }

  private async takeSlab(): Promise<Uint8Array> {
    for (;;) {
      const slab = this.free.pop();
      if (slab !== undefined) return slab;
      await this.queued[0];
      this.throwIfFailed();
    }
  }

  private throwIfFailed(): void {
    if (this.failure !== undefined) throw this.failure.error;
  }
}
