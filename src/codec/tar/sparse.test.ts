import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { HoleScanner, checkRegions, encodeSparseMap10, isAllZero } from "./sparse.js";
import type { Region } from "./sparse.js";

const MiB = 1024 * 1024;
const SPEC_MAP = "5\n0\n1048576\n17825792\n1572864\n41951232\n4096\n62914560\n524288\n67108864\n0\n";

/** Non-zero random bytes: no 512-byte block of it can be all zero. */
function dataBytes(n: number): Buffer {
  const b = randomBytes(n);
  for (let i = 0; i < n; i++) if (b[i] === 0) b[i] = 1;
  return b;
}

/** The golden private.img shape (spec §4.3): 64 MiB, four data regions, ends in a hole. */
function goldenShape(): Buffer {
  const img = Buffer.alloc(64 * MiB);
  dataBytes(MiB).copy(img, 0);
  dataBytes(1.5 * MiB).copy(img, 17 * MiB);
  dataBytes(4096).copy(img, 40 * MiB + 8192);
  dataBytes(512 * 1024).copy(img, 60 * MiB);
  return img;
}

function scan(bytes: Uint8Array, pieces: readonly number[] | "whole", granularity?: number): Region[] {
  const s = new HoleScanner(granularity);
  if (pieces === "whole") {
    s.push(bytes);
  } else {
    for (let off = 0, i = 0; off < bytes.length; i++) {
      const n = pieces[i % pieces.length] ?? 1;
      s.push(bytes.subarray(off, off + n));
      off += n;
    }
  }
  return s.finish();
}

/** Obvious per-block reference used to cross-check the scanner. */
function naiveRegions(bytes: Uint8Array, g: number): Region[] {
  const out: Region[] = [];
  let start = -1;
  for (let off = 0; off < bytes.length; off += g) {
    const zero = bytes.subarray(off, off + g).every((b) => b === 0);
    if (!zero && start < 0) start = off;
    if (zero && start >= 0) {
      out.push({ offset: start, length: off - start });
      start = -1;
    }
  }
  out.push(start >= 0 ? { offset: start, length: bytes.length - start } : { offset: bytes.length, length: 0 });
  return out;
}

describe("isAllZero", () => {
  it("finds a single non-zero byte anywhere", () => {
    for (const n of [1, 7, 512, 4096, 65536, 65537, 200000]) {
      const b = Buffer.alloc(n);
      expect(isAllZero(b)).toBe(true);
      for (const at of [0, n >> 1, n - 1]) {
        b[at] = 0x40;
        expect(isAllZero(b)).toBe(false);
        b[at] = 0;
      }
    }
    expect(isAllZero(new Uint8Array(0))).toBe(true);
  });
});

describe("HoleScanner", () => {
  const golden = goldenShape();

  it("produces the spec's map for the golden shape at granularity 512 and 4096", () => {
    for (const g of [512, 4096]) {
      const regions = scan(golden, "whole", g);
      expect(encodeSparseMap10(regions).toString("latin1")).toBe(SPEC_MAP.padEnd(512, "\0"));
    }
  });

  it("gives the same regions whatever the piece sizes", () => {
    const whole = scan(golden, "whole");
    expect(scan(golden, [MiB])).toEqual(whole);
    expect(scan(golden, [777, 4097, 13, 65535, 1])).toEqual(whole);
    expect(scan(golden, [3 * MiB + 1])).toEqual(whole);
  });

  it("matches a per-block reference on random layouts fed 1 byte and odd pieces at a time", () => {
    for (let round = 0; round < 20; round++) {
      const g = round % 2 === 0 ? 512 : 4096;
      const size = (randomBytes(2).readUInt16LE(0) % 40000) + (round % 3);
      const b = Buffer.alloc(size);
      for (let off = 0; off < size; off += 256) if (Math.random() < 0.3) b[off + Math.floor(Math.random() * 256)] = 1;
      if (round % 4 === 0 && size > 0) b[size - 1] = 9; // ends in data
      const expected = naiveRegions(b, g);
      expect(scan(b, [1], g)).toEqual(expected);
      expect(scan(b, [5, 511, 513, 1], g)).toEqual(expected);
      expect(scan(b, "whole", g)).toEqual(expected);
      expect(() => checkRegions(expected, size)).not.toThrow();
    }
  });

  it("applies the end rule", () => {
    expect(scan(Buffer.alloc(0), "whole")).toEqual([{ offset: 0, length: 0 }]);
    expect(scan(Buffer.alloc(10000), [333])).toEqual([{ offset: 10000, length: 0 }]);
    const tail = Buffer.alloc(10000);
    tail[9999] = 1; // partial last block with data: region ends at the file size
    expect(scan(tail, [333])).toEqual([{ offset: 8192, length: 1808 }]);
    expect(scan(tail, [333], 512)).toEqual([{ offset: 9728, length: 272 }]);
    const full = dataBytes(5000);
    expect(scan(full, [100])).toEqual([{ offset: 0, length: 5000 }]);
    const zeroTail = Buffer.concat([dataBytes(4096), Buffer.alloc(100)]);
    expect(scan(zeroTail, "whole")).toEqual([
      { offset: 0, length: 4096 },
      { offset: 4196, length: 0 },
    ]);
  });

  it("rejects bad granularity and misuse", () => {
    const internal = expect.objectContaining({ code: "ERR_INTERNAL" });
    for (const g of [0, 100, 513, 4095.5]) expect(() => new HoleScanner(g)).toThrow(internal);
    const s = new HoleScanner();
    s.push(Buffer.alloc(10));
    expect(s.bytesSeen).toBe(10);
    s.finish();
    expect(() => s.push(Buffer.alloc(1))).toThrow(internal);
    expect(() => s.finish()).toThrow(internal);
  });

  it("scans zero data at memory speed (no per-byte loop)", () => {
    const piece = Buffer.alloc(MiB);
    const s = new HoleScanner();
    const t0 = performance.now();
    for (let i = 0; i < 512; i++) s.push(piece);
    const regions = s.finish();
    const ms = performance.now() - t0;
    expect(regions).toEqual([{ offset: 512 * MiB, length: 0 }]);
    expect(ms).toBeLessThan(5000); // ~0.1-0.3 s here; a per-byte JS loop takes several seconds
  });
});

describe("encodeSparseMap10", () => {
  it("pads to 512 and spans several blocks when long", () => {
    expect(encodeSparseMap10([{ offset: 0, length: 0 }]).toString("latin1")).toBe("1\n0\n0\n".padEnd(512, "\0"));
    const many = Array.from({ length: 100 }, (_, i) => ({ offset: i * 1000000, length: 4096 }));
    const map = encodeSparseMap10(many);
    expect(map.length % 512).toBe(0);
    expect(map.length).toBeGreaterThan(512);
    const text = map.toString("latin1").replace(/\0+$/u, "");
    expect(text.split("\n").slice(0, 3)).toEqual(["100", "0", "4096"]);
  });
  it("rejects negative or fractional values", () => {
    const malformed = expect.objectContaining({ code: "ERR_TAR_MALFORMED" });
    expect(() => encodeSparseMap10([{ offset: -1, length: 1 }])).toThrow(malformed);
    expect(() => encodeSparseMap10([{ offset: 0, length: 0.5 }])).toThrow(malformed);
  });
});

describe("checkRegions", () => {
  const malformed = expect.objectContaining({ code: "ERR_TAR_MALFORMED" });
  it("accepts the writer's shapes", () => {
    expect(() => checkRegions([{ offset: 0, length: 0 }], 0)).not.toThrow();
    expect(() => checkRegions([{ offset: 9, length: 0 }], 9)).not.toThrow();
    expect(() => checkRegions([{ offset: 0, length: 9 }], 9)).not.toThrow();
    expect(() =>
      checkRegions(
        [
          { offset: 0, length: 4 },
          { offset: 8, length: 0 },
        ],
        8,
      ),
    ).not.toThrow();
  });
  it("rejects anything else", () => {
    const bad: Array<[Region[], number]> = [
      [[], 0],
      [[{ offset: 0, length: 4 }], 8], // does not reach the size
      [[{ offset: 0, length: 9 }], 8], // past the size
      [
        [
          { offset: 4, length: 4 },
          { offset: 2, length: 1 },
        ],
        8,
      ], // out of order
      [
        [
          { offset: 0, length: 0 },
          { offset: 8, length: 0 },
        ],
        8,
      ], // empty region in the middle
      [[{ offset: -1, length: 9 }], 8],
    ];
    for (const [regions, size] of bad) expect(() => checkRegions(regions, size)).toThrow(malformed);
  });
});
