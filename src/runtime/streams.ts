/** Async-iterable plumbing shared by the pipelines. */
import { Readable } from "node:stream";
import type { Duplex } from "node:stream";

/** Pipe an async iterable through a Node transform (zlib, …) and iterate its output. */
export async function* through(input: AsyncIterable<Buffer>, transform: Duplex): AsyncGenerator<Buffer> {
  const source = Readable.from(input, { objectMode: false });
  source.once("error", (err) => transform.destroy(err));
  source.pipe(transform);
  try {
    for await (const piece of transform as AsyncIterable<Buffer>) yield piece;
  } finally {
    source.destroy();
    transform.destroy();
  }
}

/** Stop with `onExceed()` once more than `limit` bytes went through. */
export async function* limitBytes(
  input: AsyncIterable<Buffer>,
  limit: number,
  onExceed: () => Error,
): AsyncGenerator<Buffer> {
  let total = 0;
  for await (const piece of input) {
    total += piece.length;
    if (total > limit) throw onExceed();
    yield piece;
  }
}

/**
 * A one-slot handoff between a producer and a consumer running concurrently: `push` resolves
 * once the consumer has taken the value (backpressure), and rejects once the consumer failed,
 * so a producer never runs ahead of, or past, a dead consumer.
 */
export class Channel<T> implements AsyncIterable<T> {
  private slot: { value: T; taken: () => void } | undefined;
  private waiting: (() => void) | undefined;
  private closed = false;
  private failure: { error: unknown } | undefined;
  private rejectPush: ((err: unknown) => void) | undefined;

  push(value: T): Promise<void> {
    if (this.failure) return Promise.reject(this.failure.error);
    if (this.closed || this.slot) return Promise.reject(new Error("channel: push after close or while full"));
    return new Promise<void>((resolve, reject) => {
      this.slot = { value, taken: resolve };
      this.rejectPush = reject;
      this.wakeConsumer();
    });
  }

  close(): void {
    this.closed = true;
    this.wakeConsumer();
  }

  /** The consumer failed: every pending and future push rejects with `error`. */
  fail(error: unknown): void {
    this.failure ??= { error };
    this.rejectPush?.(error);
    this.rejectPush = undefined;
    this.slot = undefined;
    this.wakeConsumer();
  }

  private wakeConsumer(): void {
    const w = this.waiting;
    this.waiting = undefined;
    w?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T> {
    for (;;) {
      if (this.failure) return;
      const slot = this.slot;
      if (slot) {
        this.slot = undefined;
        this.rejectPush = undefined;
        slot.taken();
        yield slot.value;
        continue;
      }
      if (this.closed) return;
      await new Promise<void>((resolve) => (this.waiting = resolve));
    }
  }
}

/** Bytes that arrive in pieces, handed out from the front in the lengths asked for. */
export class ByteQueue {
  private pieces: Buffer[] = [];
  private bytes = 0;

  get length(): number {
    return this.bytes;
  }

  push(piece: Buffer): void {
    this.pieces.push(piece);
    this.bytes += piece.length;
  }

  /** Up to `n` bytes from the front (a view, not a copy, when one piece holds them). */
  take(n: number): Buffer {
    const all = this.pieces.length === 1 ? this.pieces[0]! : Buffer.concat(this.pieces, this.bytes);
    const count = Math.min(n, all.length);
    const rest = all.subarray(count);
    this.pieces = rest.length > 0 ? [rest] : [];
    this.bytes = rest.length;
    return all.subarray(0, count);
  }
}
