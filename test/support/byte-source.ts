/** Reading a whole ByteSource in tests, and cutting bytes into the pieces a stream would deliver. */
import type { ByteSource } from "../../src/transport/source.js";

/** Every byte `source` gives, read `pieceSize` at a time; closes it at the end unless told not to. */
export async function readAll(source: ByteSource, pieceSize = 1024 * 1024, close = true): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (;;) {
    const piece = await source.read(pieceSize);
    if (piece.length === 0) break;
    parts.push(Buffer.from(piece));
  }
  if (close) await source.close();
  return Buffer.concat(parts);
}

/** `data` cut into consecutive pieces whose sizes cycle through `sizes`, none smaller than `floor`. */
export function cutInPieces(data: Buffer, sizes: readonly number[], floor = 1): Buffer[] {
  const out: Buffer[] = [];
  let i = 0;
  for (let off = 0; off < data.length; i++) {
    const n = Math.max(sizes[i % sizes.length] ?? 1, floor);
    out.push(data.subarray(off, off + n));
    off += n;
  }
  return out;
}
