/**
 * gzip on several cores, readable by any gzip: the stream is cut into blocks, each block becomes
 * an independent gzip member (`gzip -d`, zlib and Qubes' restore read concatenated members as
 * one stream), compressed on other threads (block-gzip.ts: libdeflate or node:zlib), and the
 * members are emitted in order.
 * Blocks that look incompressible are stored (deflate level 0). deflate's window is 32 KiB, so
 * independent 1 MiB blocks cost almost no compression.
 *
 * Input pieces of half a block or more are compressed as they are, without a copy (members need
 * not all be the same size): the sources read 1 MiB at a time into fresh buffers, and copying
 * them into blocks doubled the garbage. Smaller pieces (tar headers, small files) are gathered
 * into blocks. Pieces are only read, never kept after their member is done.
 *
 * The input is pumped eagerly by its own task, so the other threads keep compressing while the
 * consumer seals and writes chunks; at most 2·jobs blocks are compressing or waiting to be
 * taken, which bounds memory to a few MiB.
 */
import { blockGzip } from "../runtime/block-gzip.js";
import type { BlockGzip } from "../runtime/block-gzip.js";
import { looksIncompressible } from "./entropy.js";

export const GZIP_BLOCK_SIZE = 1024 * 1024;

export interface ParallelGzipOptions {
  level: number;
  jobs: number;
  blockSize?: number;
  /** What compresses each block; default: blockGzip()'s choice. */
  engine?: BlockGzip;
}

export async function* parallelGzip(
  input: AsyncIterable<Buffer>,
  options: ParallelGzipOptions,
): AsyncGenerator<Buffer> {
  const blockSize = options.blockSize ?? GZIP_BLOCK_SIZE;
  const engine = options.engine ?? blockGzip();
  const maxQueued = Math.max(2, options.jobs * 2);
  const queue: Array<Promise<Buffer>> = [];
  let wakeProducer: (() => void) | undefined;
  let wakeConsumer: (() => void) | undefined;
  let producerDone = false;
  let producerError: { error: unknown } | undefined;
  let stopped = false;
  const wake = (which: "producer" | "consumer") => {
    const w = which === "producer" ? wakeProducer : wakeConsumer;
    if (which === "producer") wakeProducer = undefined;
    else wakeConsumer = undefined;
    w?.();
  };

  const submit = async (block: Buffer) => {
    while (queue.length >= maxQueued && !stopped) await new Promise<void>((r) => (wakeProducer = r));
    const level = looksIncompressible(block) ? 0 : options.level;
    const p = engine.gzip(block, level);
    p.catch(() => undefined); // observed, in order, by the consumer
    queue.push(p);
    wake("consumer");
  };

  const pump = (async () => {
    try {
      let block: Buffer | undefined;
      let filled = 0;
      let submitted = 0;
      const flush = async (data: Buffer) => {
        await submit(data);
        submitted++;
      };
      for await (const piece of input) {
        for (let off = 0; off < piece.length;) {
          const rest = piece.length - off;
          if (rest >= blockSize / 2) {
            // large: the gathered bytes become a member of their own, the piece is compressed in place
            if (block !== undefined && filled > 0) await flush(block.subarray(0, filled));
            block = undefined;
            filled = 0;
            const n = Math.min(rest, blockSize);
            await flush(piece.subarray(off, off + n));
            off += n;
          } else {
            block ??= Buffer.allocUnsafe(blockSize);
            const n = Math.min(rest, blockSize - filled);
            piece.copy(block, filled, off, off + n);
            filled += n;
            off += n;
            if (filled === blockSize) {
              await flush(block);
              block = undefined;
              filled = 0;
            }
          }
          if (stopped) return;
        }
      }
      if (filled > 0 || submitted === 0) await flush((block ?? Buffer.alloc(0)).subarray(0, filled));
    } catch (error) {
      producerError = { error };
    } finally {
      producerDone = true;
      wake("consumer");
    }
  })();

  try {
    for (;;) {
      const next = queue[0];
      if (next !== undefined) {
        const member = await next;
        queue.shift();
        wake("producer");
        yield member;
        continue;
      }
      if (producerDone) {
        if (producerError) throw producerError.error;
        return;
      }
      await new Promise<void>((r) => (wakeConsumer = r));
    }
  } finally {
    stopped = true;
    wake("producer");
    await pump;
  }
}
