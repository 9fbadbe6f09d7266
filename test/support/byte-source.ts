/** Reading a whole ByteSource in tests. */
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
