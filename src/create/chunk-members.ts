/**
 * Chunk → seal → outer member, for the compressed stream of one archived file. Two ways, the same
 * bytes:
 *
 *  - streamed (a seekable sink: a file): each chunk's member is written while its bytes arrive,
 *    encrypted as they come; the member's tar header, which holds the size, is written over its
 *    placeholder when the chunk ends. Up to 16 MiB that arrive before the chunk's key is derived
 *    wait in memory; after that nothing is gathered, so memory does not grow with the chunk size.
 *  - buffered (pipes, ssh, a storage agent): a member's header must precede its data, so the
 *    chunk is gathered in one reusable buffer (chunk.ts), sealed in place and written whole.
 */
import type { ContainerSealer } from "../codec/scrypt/index.js";
import { chunkMemberName } from "../format/names.js";
import type { ChunkBuffer } from "./chunk.js";
import { chunkStream } from "./chunk.js";
import type { OpenMember, OuterArchiveWriter } from "./outer.js";
import type { ChunkSealer } from "./seal.js";

export interface ChunkMembersContext {
  fileBase: string;
  chunkSize: number;
  sealer: ChunkSealer;
  outer: OuterArchiveWriter;
  /** Used when the sink is not seekable. */
  chunkBuffer: ChunkBuffer;
  /** Bytes were added to chunk `index` (`filled` so far; 0 only for the empty chunk of an empty stream). */
  onData: (index: number, filled: number) => void;
  /** A member was written (called in order). */
  onMember: (name: string, size: number) => void;
  signal?: AbortSignal;
}

/** Writes every chunk of `input` as a sealed member; returns the number of chunks and their bytes. */
export async function writeChunkMembers(
  input: AsyncIterable<Buffer>,
  ctx: ChunkMembersContext,
): Promise<{ chunks: number; stored: number }> {
  return ctx.outer.seekable ? streamed(input, ctx) : buffered(input, ctx);
}

async function buffered(input: AsyncIterable<Buffer>, ctx: ChunkMembersContext) {
  let chunks = 0;
  let stored = 0;
  for await (const chunk of chunkStream(input, ctx.chunkSize, ctx.onData, ctx.chunkBuffer)) {
    ctx.signal?.throwIfAborted();
    const name = chunkMemberName(ctx.fileBase, chunk.index);
    const size = await ctx.outer.member(name, await ctx.sealer.seal(ctx.fileBase, chunk.index, chunk.data));
    ctx.onMember(name, size);
    stored += size;
    chunks++;
  }
  return { chunks, stored };
}

/**
 * Bytes a chunk gathers while its key is being derived, before it waits for the key instead (and
 * compression with it): while both cores derive keys, compressing ahead gains little.
 */
export const MAX_WAITING_BYTES = 16 * 1024 * 1024;

/** The chunk being written: its bytes wait in `waiting` until its key is there, then stream. */
interface OpenChunk {
  index: number;
  waiting: Buffer[];
  waitingBytes: number;
  /** Set once the key is there and the member begun. */
  sealed?: { container: ContainerSealer; member: OpenMember };
}

const newChunk = (index: number): OpenChunk => ({ index, waiting: [], waitingBytes: 0 });

/** The pieces are ours (see the top of index.ts): encrypting them in place allocates nothing. */
function sealInPlace(container: ContainerSealer, piece: Buffer): Buffer {
  container.updateInPlace(piece);
  return piece;
}

async function streamed(input: AsyncIterable<Buffer>, ctx: ChunkMembersContext) {
  const { fileBase, chunkSize, sealer, outer } = ctx;
  let chunks = 0;
  let stored = 0;
  let index = 0;
  let filled = 0;
  let current: OpenChunk | undefined;

  const open = async (c: OpenChunk) => {
    ctx.signal?.throwIfAborted();
    const container = await sealer.open(fileBase, c.index);
    const member = await outer.beginMember(chunkMemberName(fileBase, c.index));
    await member.write(container.header());
    for (const piece of c.waiting.splice(0)) await member.write(sealInPlace(container, piece));
    c.waitingBytes = 0;
    return (c.sealed = { container, member });
  };
  const add = async (c: OpenChunk, piece: Buffer) => {
    const ready = () => sealer.ready(fileBase, c.index) || c.waitingBytes >= MAX_WAITING_BYTES;
    const sealed = c.sealed ?? (ready() ? await open(c) : undefined);
    if (sealed !== undefined) {
      await sealed.member.write(sealInPlace(sealed.container, piece));
    } else {
      c.waiting.push(piece);
      c.waitingBytes += piece.length;
    }
  };
  const end = async (c: OpenChunk) => {
    const { container, member } = c.sealed ?? (await open(c));
    await member.write(container.final());
    const size = await member.end();
    ctx.onMember(chunkMemberName(fileBase, c.index), size);
    stored += size;
    chunks++;
  };

  for await (const piece of input) {
    for (let off = 0; off < piece.length;) {
      current ??= newChunk(index);
      const n = Math.min(piece.length - off, chunkSize - filled);
      filled += n;
      ctx.onData(index, filled);
      await add(current, piece.subarray(off, off + n));
      off += n;
      if (filled === chunkSize) {
        await end(current);
        current = undefined;
        index++;
        filled = 0;
      }
    }
  }
  if (current !== undefined || index === 0) {
    if (current === undefined) ctx.onData(index, 0); // every file has a .000, even an empty one
    await end(current ?? newChunk(index));
  }
  return { chunks, stored };
}
