/**
 * Chunking stage: cut one (compressed) stream into pieces of exactly `chunkSize` bytes, the last
 * one shorter (spec §4.5). Unlike the reference writer, no empty chunk is added when the stream
 * length is an exact multiple (the spec allows either; readers accept both).
 *
 * Memory: one buffer (a ChunkBuffer), reused for every chunk of the stream, and for every stream
 * of a backup when the caller passes the same one: a 100 MiB buffer left behind by each file would
 * stay allocated until the next garbage collection. It starts at 1 MiB (most files in a backup are
 * small) and, once that is not enough, jumps straight to `chunkSize`: pages of a large buffer cost
 * memory only when touched, while growing by doubling would leave each smaller buffer behind as
 * garbage. A yielded chunk is valid until the consumer asks for the next one, so seal it and write
 * it out before continuing.
 */
import { QbackupError } from "../errors.js";

const INITIAL_BUFFER = 1024 * 1024;

/** Storage for the chunk being filled; one stream at a time may use it. */
export class ChunkBuffer {
  private buffer: Buffer;

  constructor(private readonly chunkSize: number) {
    this.buffer = Buffer.allocUnsafe(Math.min(chunkSize, INITIAL_BUFFER));
  }

  /** The buffer, grown to `chunkSize` once more than its length is needed (the first `filled` bytes kept). */
  room(filled: number): Buffer {
    if (filled === this.buffer.length && filled < this.chunkSize) {
      const bigger = Buffer.allocUnsafe(this.chunkSize);
      this.buffer.copy(bigger, 0, 0, filled);
      this.buffer = bigger;
    }
    return this.buffer;
  }
}

export interface Chunk {
  index: number;
  data: Buffer;
}

/**
 * `onData(i, filled)` fires whenever bytes were added to chunk i (`filled` of them so far; 0 only
 * for the single empty chunk of an empty stream): lets the KDFs of this and later chunks start early.
 */
export async function* chunkStream(
  input: AsyncIterable<Buffer>,
  chunkSize: number,
  onData: (index: number, filled: number) => void = () => undefined,
  storage: ChunkBuffer = new ChunkBuffer(chunkSize),
): AsyncGenerator<Chunk> {
  if (!Number.isSafeInteger(chunkSize) || chunkSize <= 0) {
    throw new QbackupError("ERR_INTERNAL", `bad chunk size ${chunkSize}`);
  }
  let buffer = storage.room(0);
  let filled = 0;
  let index = 0;

  for await (const piece of input) {
    let off = 0;
    while (off < piece.length) {
      if (filled === buffer.length) buffer = storage.room(filled);
      const n = Math.min(piece.length - off, buffer.length - filled);
      piece.copy(buffer, filled, off, off + n);
      filled += n;
      off += n;
      onData(index, filled);
      if (filled === chunkSize) {
        yield { index, data: buffer.subarray(0, filled) };
        index++;
        filled = 0;
      }
    }
  }
  if (filled > 0 || index === 0) {
    if (filled === 0) onData(index, 0);
    yield { index, data: buffer.subarray(0, filled) };
  }
}
