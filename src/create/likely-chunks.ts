/**
 * How many chunks a file's stream will probably have, judged from how well it compressed so far.
 * Keys are derived ahead only for chunks that will come: a KDF started for a chunk that never
 * does costs a core for a second (at the default cost) and holds back the ones that are needed.
 */

/** Input read before the compression ratio is trusted. */
export const MIN_SAMPLE_BYTES = 8 * 1024 * 1024;
/** The rest of a file may compress worse than its start; estimate with this much to spare. */
const MARGIN = 1.1;

export interface StreamProgress {
  /** Bytes of the (compressed) stream produced so far. */
  produced: number;
  /** Bytes of source data read so far. */
  inputRead: number;
  /** Bytes of source data the file is expected to have. */
  inputTotal: number;
  chunkSize: number;
  /** A count the file can never exceed. */
  bound: number;
}

/** The likely chunk count, at least the chunk being filled; undefined while there is too little to judge. */
export function likelyChunkCount(p: StreamProgress): number | undefined {
  const current = Math.floor(p.produced / p.chunkSize) + 1;
  if (p.inputRead < Math.min(MIN_SAMPLE_BYTES, p.inputTotal) || p.inputRead === 0) return undefined;
  const ratio = p.produced / p.inputRead;
  const rest = Math.max(0, p.inputTotal - p.inputRead) * ratio * MARGIN;
  const likely = Math.ceil((p.produced + rest) / p.chunkSize);
  return Math.min(p.bound, Math.max(current, likely));
}
