import { describe, expect, it } from "vitest";
import { ChunkBuffer, chunkStream } from "./chunk.js";

async function* pieces(sizes: number[]): AsyncGenerator<Buffer> {
  let n = 0;
  for (const size of sizes) {
    yield Buffer.from(Array.from({ length: size }, () => n++ & 0xff));
  }
}

async function cut(sizes: number[], chunkSize: number) {
  const started: number[] = [];
  const fills: Array<[number, number]> = [];
  const chunks: Array<{ index: number; data: Buffer }> = [];
  const onData = (i: number, filled: number) => {
    if (started.at(-1) !== i) started.push(i);
    fills.push([i, filled]);
  };
  for await (const c of chunkStream(pieces(sizes), chunkSize, onData)) {
    chunks.push({ index: c.index, data: Buffer.from(c.data) }); // copy: the buffer is reused
  }
  return { chunks, started, fills };
}

describe("chunkStream", () => {
  it("cuts exact chunkSize pieces, the last one shorter, whatever the input piece sizes", async () => {
    const { chunks, started } = await cut([1, 7, 3000, 5, 999, 1], 1024);
    const total = 1 + 7 + 3000 + 5 + 999 + 1;
    expect(chunks.map((c) => c.data.length)).toEqual([1024, 1024, 1024, 1024 - (4096 - total)].filter((n) => n > 0));
    expect(chunks.map((c) => c.index)).toEqual([0, 1, 2, 3]);
    expect(started).toEqual([0, 1, 2, 3]);
    const all = Buffer.concat(chunks.map((c) => c.data));
    expect([...all]).toEqual(Array.from({ length: total }, (_, i) => i & 0xff));
  });

  it("reports how full each chunk is as bytes arrive", async () => {
    const { fills } = await cut([600, 600, 1000], 1024);
    expect(fills).toEqual([
      [0, 600],
      [0, 1024],
      [1, 176],
      [1, 1024],
      [2, 152],
    ]);
  });

  it("adds no empty chunk when the length is an exact multiple", async () => {
    const { chunks, started } = await cut([2048], 1024);
    expect(chunks.map((c) => c.data.length)).toEqual([1024, 1024]);
    expect(started).toEqual([0, 1]);
  });

  it("an empty stream is one empty chunk (every file has a .000)", async () => {
    const { chunks, started } = await cut([], 1024);
    expect(chunks).toEqual([{ index: 0, data: Buffer.alloc(0) }]);
    expect(started).toEqual([0]);
  });

  it("grows its buffer past the initial size up to the chunk size", async () => {
    const big = 3 * 1024 * 1024 + 17;
    const { chunks } = await cut([big], 2 * 1024 * 1024 + 1);
    expect(chunks.map((c) => c.data.length)).toEqual([2 * 1024 * 1024 + 1, big - (2 * 1024 * 1024 + 1)]);
  });

  it("streams that share one ChunkBuffer reuse its memory and each get their own bytes", async () => {
    const storage = new ChunkBuffer(4096);
    const seen: Array<{ bytes: number[]; buffer: ArrayBufferLike }> = [];
    for (const fill of [1, 2]) {
      async function* input(): AsyncGenerator<Buffer> {
        yield Buffer.alloc(3000, fill);
        yield Buffer.alloc(3000, fill);
      }
      for await (const c of chunkStream(input(), 4096, undefined, storage)) {
        seen.push({ bytes: [...new Set(c.data)], buffer: c.data.buffer });
      }
    }
    expect(seen.map((s) => s.bytes)).toEqual([[1], [1], [2], [2]]);
    expect(new Set(seen.map((s) => s.buffer)).size).toBe(1);
  });
});
