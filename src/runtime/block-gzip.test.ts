/**
 * Both block compressors against node:zlib's and the stock gzip's reading of their members; the
 * system's libdeflate (CI installs libdeflate0) is the one a create uses where it is installed.
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { gunzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { LibdeflateGzip, NODE_ZLIB, blockGzip, loadLibdeflateGzip } from "./block-gzip.js";
import type { BlockGzip } from "./block-gzip.js";
import { LIBDEFLATE_NAMES, bindLibdeflate } from "./libdeflate.js";

const library = loadLibdeflateGzip();
const engines: BlockGzip[] = library === null ? [NODE_ZLIB] : [NODE_ZLIB, library];

const text = (n: number) =>
  Buffer.from("a line of a config file = some value; ".repeat(Math.ceil(n / 38))).subarray(0, n);

describe("block gzip", () => {
  it("libdeflate is found where it is installed (CI installs libdeflate0), and then it is the one used", () => {
    if (process.env.CI !== undefined) expect(library).not.toBeNull();
    expect(blockGzip().name).toBe((library ?? NODE_ZLIB).name);
    if (library !== null) expect(library.name).toMatch(/^libdeflate \(/);
  });

  it.each(engines.map((e) => [e.name, e] as const))(
    "%s: one member per block that zlib and gzip -d read, at every level, from views into larger buffers",
    async (_name, engine) => {
      const backing = Buffer.concat([randomBytes(100), text(300_000), randomBytes(200_000), Buffer.alloc(50_000)]);
      const blocks = [
        Buffer.alloc(0),
        backing.subarray(100, 101),
        backing.subarray(100, 300_100), // text, at an odd offset into its buffer
        backing.subarray(300_100, 500_100), // random
        backing.subarray(7, backing.length - 3), // all of it
      ];
      const members: Buffer[] = [];
      for (const level of [0, 1, 6, 9]) {
        for (const block of blocks) {
          const member = await engine.gzip(block, level);
          expect(gunzipSync(member).equals(block)).toBe(true);
          expect(gunzipSync(engine.gzipSync(block, level)).equals(block)).toBe(true);
          members.push(member);
        }
      }
      const r = spawnSync("gzip", ["-d", "-c"], { input: Buffer.concat(members), maxBuffer: 64 * 1024 * 1024 });
      expect(r.status).toBe(0);
      expect(r.stdout.equals(Buffer.concat([blocks, blocks, blocks, blocks].flat()))).toBe(true);
    },
  );

  it.each(engines.map((e) => [e.name, e] as const))(
    "%s: many blocks at once each get their own member (no state shared between calls in flight)",
    async (_name, engine) => {
      const blocks = Array.from({ length: 24 }, (_, i) =>
        i % 3 === 0 ? randomBytes(70_000 + i) : Buffer.concat([text(90_000 + i * 1000), randomBytes(i * 100)]),
      );
      const members = await Promise.all(blocks.map((b, i) => engine.gzip(b, i % 2 === 0 ? 1 : 6)));
      members.forEach((m, i) => expect(gunzipSync(m).equals(blocks[i]!)).toBe(true));
      expect(members[1]!.length).toBeLessThan(blocks[1]!.length / 5);
    },
  );

  it("level 0 stores: the member is the block plus framing", async () => {
    for (const engine of engines) {
      const block = text(1024 * 1024);
      const member = await engine.gzip(block, 0);
      expect(member.length).toBeGreaterThan(block.length);
      expect(member.length).toBeLessThan(block.length + 1024);
    }
  });

  it("is not taken from a file that is missing or is not libdeflate", () => {
    expect(loadLibdeflateGzip(["libqbackup-does-not-exist.so.0"])).toBeNull();
    expect(loadLibdeflateGzip([])).toBeNull();
    expect(loadLibdeflateGzip(["libz.so.1"])).toBeNull(); // loads, but has none of the functions
    expect(LIBDEFLATE_NAMES[0]).toMatch(/^libdeflate\.(so\.0|0\.dylib)$/);
  });

  it.runIf(library !== null)("a level the library refuses is compressed by node:zlib instead", async () => {
    const lib = bindLibdeflate(LIBDEFLATE_NAMES[0]!)!;
    const asked: number[] = [];
    const refusingZero = new LibdeflateGzip({
      ...lib,
      allocCompressor: (level) => {
        asked.push(level);
        return level === 0 ? null : lib.allocCompressor(level);
      },
    });
    const block = text(200_000);
    for (let i = 0; i < 3; i++) {
      expect((await refusingZero.gzip(block, 0)).equals(await NODE_ZLIB.gzip(block, 0))).toBe(true);
      expect(gunzipSync(await refusingZero.gzip(block, 1)).equals(block)).toBe(true);
    }
    // asked once for each level: a refusal is remembered, a compressor is reused
    expect(asked).toEqual([0, 1]);
  });
});
