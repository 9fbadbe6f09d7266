import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HoleScanner, checkRegions } from "../codec/tar/index.js";
import type { Region } from "../codec/tar/index.js";
import { canSeekData, seekDataRegions } from "./seek-data.js";

const KiB = 1024;
const MiB = 1024 * KiB;
const G = 4096;

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "qb-seek-"));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A file of `size` bytes (holes everywhere) with non-zero bytes written at each [offset, length]. */
function sparseFile(name: string, size: number, writes: ReadonlyArray<readonly [number, number]>): string {
  const file = path.join(dir, name);
  const fd = fs.openSync(file, "w");
  try {
    fs.ftruncateSync(fd, size);
    for (const [offset, length] of writes) fs.writeSync(fd, Buffer.alloc(length, 0xa5), 0, length, offset);
  } finally {
    fs.closeSync(fd);
  }
  return file;
}

function regionsOf(file: string, granularity = G): Region[] | undefined {
  const fd = fs.openSync(file, "r");
  try {
    return seekDataRegions(fd, fs.fstatSync(fd).size, granularity);
  } finally {
    fs.closeSync(fd);
  }
}

function scannedRegions(file: string): Region[] {
  const scanner = new HoleScanner(G);
  scanner.push(fs.readFileSync(file));
  return scanner.finish();
}

// The test suite runs on Linux filesystems that report holes (ext4, tmpfs, overlayfs, xfs, btrfs).
describe("seekDataRegions", () => {
  it("finds the data of a sparse file, widened to the granularity, ending at the size", async () => {
    const file = sparseFile("a.img", 4 * MiB, [
      [0, 8 * KiB],
      [MiB + 100, 100],
    ]);
    expect(await canSeekData(file)).toBe(true);
    expect(regionsOf(file)).toEqual([
      { offset: 0, length: 8 * KiB },
      { offset: MiB, length: G },
      { offset: 4 * MiB, length: 0 },
    ]);
  });

  it("gives the same map as reading for zero blocks when the data has no zeros", () => {
    const file = sparseFile("b.img", 3 * MiB + 700, [
      [64 * KiB, 256 * KiB],
      [2 * MiB, MiB + 700],
    ]);
    expect(regionsOf(file)).toEqual(scannedRegions(file));
    expect(regionsOf(file)!.at(-1)).toEqual({ offset: 2 * MiB, length: MiB + 700 });
  });

  it("maps a file that is all hole, and an empty one", () => {
    expect(regionsOf(sparseFile("hole.img", 2 * MiB, []))).toEqual([{ offset: 2 * MiB, length: 0 }]);
    expect(regionsOf(sparseFile("empty.img", 0, []))).toEqual([{ offset: 0, length: 0 }]);
  });

  it("merges regions that touch once widened", () => {
    const file = sparseFile("c.img", MiB, [
      [10, 10],
      [G + 10, 10],
    ]);
    // each write allocates one 4 KiB block: the two blocks are adjacent data
    expect(regionsOf(file)).toEqual([
      { offset: 0, length: 2 * G },
      { offset: MiB, length: 0 },
    ]);
  });

  it("covers every non-zero byte of random sparse files with a valid, aligned map", () => {
    const layout = fc.record({
      size: fc.integer({ min: 1, max: 2 * MiB }),
      writes: fc.array(fc.tuple(fc.integer({ min: 0, max: 2 * MiB }), fc.integer({ min: 1, max: 100 * KiB })), {
        maxLength: 12,
      }),
    });
    let n = 0;
    fc.assert(
      fc.property(layout, ({ size, writes }) => {
        const inside = writes.filter(([o]) => o < size).map(([o, l]) => [o, Math.min(l, size - o)] as const);
        const file = sparseFile(`p${n++}.img`, size, inside);
        const regions = regionsOf(file)!;
        checkRegions(regions, size);
        const bytes = fs.readFileSync(file);
        const covered = new Uint8Array(size);
        for (const r of regions) {
          if (r.length > 0) expect(r.offset % G).toBe(0);
          covered.fill(1, r.offset, r.offset + r.length);
        }
        const missed = bytes.findIndex((b, i) => b !== 0 && covered[i] === 0);
        expect(missed).toBe(-1);
        fs.rmSync(file);
      }),
      { numRuns: 60 },
    );
  });
});
