/**
 * Positional writes into one restored file without waiting for each: while up to `maxBytes` are
 * being written on libuv's pool, the main thread goes on authenticating, decrypting and parsing
 * the next pieces (waiting for every write had it idle half the time during a volume). Pieces
 * handed in must not change afterwards; decompressed output is never reused, so they do not.
 * The first failure is thrown by the next write() or by drain(); settle() waits for everything
 * still running, before the file is closed on the way out of an error.
 */
import type { FileHandle } from "node:fs/promises";
import { destinationError } from "../errors.js";

export const WRITE_BEHIND_BYTES = 8 * 1024 * 1024;

export class WriteBehind {
  private readonly running = new Set<Promise<void>>();
  private bytes = 0;
  private failure: { error: unknown } | undefined;

  constructor(
    private readonly handle: FileHandle,
    /** The file's path, for messages. */
    private readonly file: string,
    private readonly maxBytes = WRITE_BEHIND_BYTES,
  ) {}

  /** Starts writing `data` at `position`; waits only while more than maxBytes are on their way. */
  async write(data: Uint8Array, position: number): Promise<void> {
    this.throwIfFailed();
    while (this.running.size > 0 && this.bytes + data.length > this.maxBytes) {
      await Promise.race(this.running);
      this.throwIfFailed();
    }
    this.bytes += data.length;
    const done: Promise<void> = this.writeAll(data, position).then(
      () => this.finished(done, data.length),
      (err: unknown) => {
        this.failure ??= { error: destinationError(err, this.file) };
        this.finished(done, data.length);
      },
    );
    this.running.add(done);
  }

  /** Every write done; throws the first failure. */
  async drain(): Promise<void> {
    await this.settle();
    this.throwIfFailed();
  }

  /** Every write done or failed; never throws. */
  async settle(): Promise<void> {
    while (this.running.size > 0) await Promise.all(this.running);
  }

  private finished(done: Promise<void>, length: number): void {
    this.running.delete(done);
    this.bytes -= length;
  }

  private throwIfFailed(): void {
    if (this.failure !== undefined) throw this.failure.error;
  }

  /** write(2) may take less than it was given (a full disk part-way): the rest goes again, and fails there. */
  private async writeAll(data: Uint8Array, position: number): Promise<void> {
    for (let off = 0; off < data.length;) {
      const { bytesWritten } = await this.handle.write(data, off, data.length - off, position + off);
      if (bytesWritten === 0) throw new Error(`no progress writing ${data.length - off} bytes at ${position + off}`);
      off += bytesWritten;
    }
  }
}
