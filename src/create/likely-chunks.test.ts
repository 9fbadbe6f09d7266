import { describe, expect, it } from "vitest";
import { MIN_SAMPLE_BYTES, likelyChunkCount } from "./likely-chunks.js";

const MiB = 1024 * 1024;
const chunkSize = 100 * MiB;

describe("likelyChunkCount", () => {
  it("says nothing until enough input was read", () => {
    expect(
      likelyChunkCount({
        produced: MiB,
        inputRead: MIN_SAMPLE_BYTES - 1,
        inputTotal: 1024 * MiB,
        chunkSize,
        bound: 11,
      }),
    ).toBe(undefined);
  });

  it("judges a small file once it was read completely", () => {
    // 99 MiB of text compressed to 38 MiB: one chunk, not the two the bound allows
    expect(
      likelyChunkCount({ produced: 38 * MiB, inputRead: 99 * MiB, inputTotal: 99 * MiB, chunkSize, bound: 2 }),
    ).toBe(1);
  });

  it("extrapolates the ratio so far, with a margin, within the bound", () => {
    // half of 1 GiB read, compressed 2:1 so far: about 5.6 chunks more to come
    expect(
      likelyChunkCount({ produced: 256 * MiB, inputRead: 512 * MiB, inputTotal: 1024 * MiB, chunkSize, bound: 11 }),
    ).toBe(6);
    // incompressible data: the bound caps the estimate
    expect(
      likelyChunkCount({ produced: 512 * MiB, inputRead: 512 * MiB, inputTotal: 1024 * MiB, chunkSize, bound: 11 }),
    ).toBe(11);
  });

  it("never says fewer than the chunk being filled", () => {
    // the source grew past its expected size: the current chunk still counts
    expect(
      likelyChunkCount({ produced: 730 * MiB, inputRead: 1500 * MiB, inputTotal: 1024 * MiB, chunkSize, bound: 11 }),
    ).toBe(8);
  });
});
