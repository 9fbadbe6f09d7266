/**
 * Positional writes into one restored file without waiting for each: while up to `maxBytes` are
 * queued and written one after another on libuv's pool, the main thread goes on authenticating,
 * decrypting and parsing the next pieces (waiting for every write had it idle half the time
 * during a volume). Pieces handed in must not change afterwards; decompressed output is never
 * reused, so they do not. The first failure is thrown by the next write() or by drain();
 * settle() waits for everything still running, before the file is closed on the way out of an
 * error.
 */
import type { FileHandle } from "node:fs/promises";
import { destinationError } from "../errors.js";
import { writeFully } from "../runtime/paths.js";

export const WRITE_BEHIND_BYTES = 8 * 1024 * 1024;

export class WriteBehind {
  /** Writes queued or running, oldest first; each starts when the one before it is done. */
  private readonly queued: Array<Promise<void>> = [];
  private bytes = 0;
  private failure: { error: unknown } | undefined;

  constructor(
    private readonly handle: FileHandle,
    /** The file's path, for messages. */
    private readonly file: string,
    private readonly maxBytes = WRITE_BEHIND_BYTES,
  ) {}

  /** Queues `data` to be written at `position`; waits only while more than maxBytes are queued. */
  async write(data: Uint8Array, position: number): Promise<void> {
    this.throwIfFailed();
    while (this.queued.length > 0 && this.bytes + data.length > this.maxBytes) {
      await this.queued[0];
      this.throwIfFailed();
    }
    this.bytes += data.length;
    // one at a time: writers of one file at once only contend for its lock (the kernel spins on it)
    const done = (this.queued.at(-1) ?? Promise.resolve())
      .then(async () => {
        if (this.failure === undefined) await writeFully(this.handle, data, position);
      })
      .catch((err: unknown) => {
        this.failure ??= { error: destinationError(err, this.file) };
      })
      .finally(() => {
        this.queued.shift();
        this.bytes -= data.length;
      });
    this.queued.push(done);
  }

  /** Every write done; throws the first failure. */
  async drain(): Promise<void> {
    await this.settle();
    this.throwIfFailed();
  }

  /** Every write done or failed; never throws. */
  async settle(): Promise<void> {
    await this.queued.at(-1);
  }

  private throwIfFailed(): void {
    if (this.failure !== undefined) throw this.failure.error;
  }
}
