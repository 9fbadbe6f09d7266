import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { gunzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { NODE_ZLIB, loadLibdeflateGzip } from "../runtime/block-gzip.js";
import type { BlockGzip } from "../runtime/block-gzip.js";
import { byteEntropy, looksIncompressible } from "./entropy.js";
import { parallelGzip } from "./parallel-gzip.js";

/** Both compressors a create may use (libdeflate where installed: CI installs libdeflate0). */
const libdeflate = loadLibdeflateGzip();
const engines: BlockGzip[] = libdeflate === null ? [NODE_ZLIB] : [NODE_ZLIB, libdeflate];

async function* pieces(data: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let off = 0; off < data.length; off += size) yield data.subarray(off, off + size);
}

async function collect(it: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of it) parts.push(p);
  return Buffer.concat(parts);
}

const text = (n: number) =>
  Buffer.from("the quick brown fox jumps over the lazy dog; ".repeat(Math.ceil(n / 45))).subarray(0, n);

describe.each(engines.map((engine) => [engine.name, engine] as const))("parallelGzip with %s", (_name, engine) => {
  it.each([
    ["empty", Buffer.alloc(0)],
    ["smaller than a block", text(1000)],
    ["exactly two blocks", text(2 * 65536)],
    ["text and random mixed", Buffer.concat([text(100_000), randomBytes(150_000), text(70_000)])],
  ])("%s: concatenated members decompress to the input, with zlib and with gzip -d", async (_name, input) => {
    for (const jobs of [1, 3]) {
      const out = await collect(parallelGzip(pieces(input, 7777), { level: 1, jobs, blockSize: 65536, engine }));
      expect(gunzipSync(out).equals(input)).toBe(true);
      const r = spawnSync("gzip", ["-d", "-c"], { input: out, maxBuffer: 16 * 1024 * 1024 });
      expect(r.status).toBe(0);
      expect(r.stdout.equals(input)).toBe(true);
    }
  });

  it("gives the input back whatever the mix of small pieces (gathered) and large ones (compressed in place)", async () => {
    const sizes = [100, 65536, 40_000, 3, 200_000, 32_768, 32_767, 1, 65537, 0, 90_000, 10];
    const input = Buffer.concat([text(300_000), randomBytes(200_000), text(26_722)]);
    async function* mixed(): AsyncGenerator<Buffer> {
      let off = 0;
      for (const size of sizes) {
        yield input.subarray(off, off + size);
        off += size;
      }
    }
    const copy = Buffer.from(input);
    const out = await collect(parallelGzip(mixed(), { level: 1, jobs: 2, blockSize: 65536, engine }));
    expect(gunzipSync(out).equals(input)).toBe(true);
    expect(input.equals(copy)).toBe(true); // pieces are only read
    const r = spawnSync("gzip", ["-d", "-c"], { input: out, maxBuffer: 16 * 1024 * 1024 });
    expect(r.stdout.equals(input)).toBe(true);
  });

  it("compresses text and stores random data", async () => {
    const t = text(4 * 65536);
    const r = randomBytes(4 * 65536);
    const zt = await collect(parallelGzip(pieces(t, 65536), { level: 1, jobs: 2, blockSize: 65536, engine }));
    const zr = await collect(parallelGzip(pieces(r, 65536), { level: 1, jobs: 2, blockSize: 65536, engine }));
    expect(zt.length).toBeLessThan(t.length / 10);
    expect(zr.length).toBeGreaterThan(r.length); // stored, with framing
    expect(zr.length).toBeLessThan(r.length * 1.001);
  });

  it("passes on an error from its input and stops", async () => {
    async function* failing(): AsyncGenerator<Buffer> {
      yield text(200_000);
      throw new Error("source broke");
    }
    await expect(collect(parallelGzip(failing(), { level: 1, jobs: 2, blockSize: 65536, engine }))).rejects.toThrow(
      "source broke",
    );
  });
});

describe("entropy", () => {
  it("tells random data from text and structured data", () => {
    expect(byteEntropy(randomBytes(65536))).toBeGreaterThan(7.9);
    expect(byteEntropy(text(65536))).toBeLessThan(5);
    expect(byteEntropy(Buffer.alloc(1000))).toBe(0);
    expect(looksIncompressible(randomBytes(1024 * 1024))).toBe(true);
    expect(looksIncompressible(Buffer.concat([randomBytes(500_000), text(600_000)]))).toBe(false);
  });
});
