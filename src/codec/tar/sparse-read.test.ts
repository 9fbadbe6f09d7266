import { Buffer } from "node:buffer";
import { describe, expect, it } from "vitest";
import { encodePaxRecords } from "./pax.js";
import { decodePaxRecordList } from "./decode.js";
import { encodeSparseMap10 } from "./sparse.js";
import {
  SparseMap10Parser,
  parseDecimal,
  sparseMapFromPax00,
  sparseMapFromPax01,
  validateSparseMap,
} from "./sparse-read.js";

const MALFORMED = expect.objectContaining({ code: "ERR_TAR_MALFORMED" });

function blocks(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; i += 512) out.push(buf.subarray(i, i + 512));
  return out;
}

describe("parseDecimal", () => {
  it("accepts plain non-negative decimal integers up to 2^53 - 1", () => {
    expect(parseDecimal("0", "x")).toBe(0);
    expect(parseDecimal("9663676416", "x")).toBe(9663676416);
    expect(parseDecimal(String(Number.MAX_SAFE_INTEGER), "x")).toBe(Number.MAX_SAFE_INTEGER);
  });
  it("rejects signs, spaces, fractions, exponents, empties and huge values", () => {
    for (const bad of ["", "-1", "+1", " 1", "1 ", "1.5", "1e3", "0x10", "9007199254740992", "12345678901234567"]) {
      expect(() => parseDecimal(bad, "x"), bad).toThrow(MALFORMED);
    }
  });
});

describe("pax sparse 0.0 / 0.1 maps", () => {
  it("0.0: pairs in record order, other records ignored", () => {
    const list = decodePaxRecordList(
      encodePaxRecords([
        ["GNU.sparse.size", "1048576"],
        ["GNU.sparse.offset", "8192"],
        ["GNU.sparse.numbytes", "4096"],
        ["mtime", "1"],
        ["GNU.sparse.offset", "1048576"],
        ["GNU.sparse.numbytes", "0"],
      ]),
    );
    expect(sparseMapFromPax00(list, 10, "x")).toEqual([
      { offset: 8192, length: 4096 },
      { offset: 1048576, length: 0 },
    ]);
  });
  it("0.0: rejects unpaired records and too many regions", () => {
    const rec = (pairs: Array<[string, string]>) => decodePaxRecordList(encodePaxRecords(pairs));
    expect(() => sparseMapFromPax00(rec([["GNU.sparse.numbytes", "1"]]), 10, "x")).toThrow(/numbytes without offset/u);
    expect(() =>
      sparseMapFromPax00(
        rec([
          ["GNU.sparse.offset", "1"],
          ["GNU.sparse.offset", "2"],
        ]),
        10,
        "x",
      ),
    ).toThrow(/offset without numbytes/u);
    const many = Array.from({ length: 5 }, (_, i): Array<[string, string]> => [
      ["GNU.sparse.offset", String(i * 10)],
      ["GNU.sparse.numbytes", "1"],
    ]).flat();
    expect(sparseMapFromPax00(rec(many), 5, "x")).toHaveLength(5);
    expect(() => sparseMapFromPax00(rec(many), 4, "x")).toThrow(/more than 4 regions/u);
  });
  it("0.1: comma list", () => {
    expect(sparseMapFromPax01("8192,4096,499712,4096,1048576,0", 10, "x")).toEqual([
      { offset: 8192, length: 4096 },
      { offset: 499712, length: 4096 },
      { offset: 1048576, length: 0 },
    ]);
    expect(sparseMapFromPax01("", 10, "x")).toEqual([]);
    for (const bad of ["1", "1,2,3", "1,,", "1,-2", "a,b", "1, 2"]) {
      expect(() => sparseMapFromPax01(bad, 10, "x"), bad).toThrow(MALFORMED);
    }
    expect(() => sparseMapFromPax01("1,2,3,4,5,6", 2, "x")).toThrow(/more than 2 regions/u);
  });
});

describe("SparseMap10Parser", () => {
  it("reads our writer's map, including one spanning several blocks", () => {
    const regions = Array.from({ length: 300 }, (_, i) => ({ offset: i * 1_000_000_000, length: 4096 }));
    const map = encodeSparseMap10(regions);
    expect(map.length).toBeGreaterThan(512);
    const p = new SparseMap10Parser(1000, "x");
    const bs = blocks(map);
    bs.forEach((b, i) => expect(p.push(b)).toBe(i === bs.length - 1));
    expect(p.regions).toEqual(regions);
    expect(p.bytesUsed).toBe(map.length);
  });
  it("accepts an empty map (count 0)", () => {
    const p = new SparseMap10Parser(10, "x");
    expect(p.push(encodeSparseMap10([]))).toBe(true);
    expect(p.regions).toEqual([]);
  });
  it("rejects garbage, empty lines, long numbers and too many regions", () => {
    const one = (text: string, max = 10): void => {
      const b = Buffer.alloc(512);
      b.write(text, "latin1");
      new SparseMap10Parser(max, "x").push(b);
    };
    expect(() => one("1\n0\n5\nz")).toThrow(/garbage after the sparse map/u);
    expect(() => one("1\n\n0\n5\n")).toThrow(/not decimal lines/u);
    expect(() => one("1\n-1\n5\n")).toThrow(/not decimal lines/u);
    expect(() => one(`1\n${"9".repeat(17)}\n5\n`)).toThrow(/number too long/u);
    expect(() => one("1\n9007199254740993\n5\n")).toThrow(/out of range/u);
    expect(() => one("11\n")).toThrow(/more than 10 regions/u);
    expect(() => new SparseMap10Parser(10, "x").push(Buffer.alloc(100))).toThrow(MALFORMED);
  });
});

describe("validateSparseMap", () => {
  const ok = (regions: Array<[number, number]>, real: number, data: number): void =>
    validateSparseMap(
      regions.map(([offset, length]) => ({ offset, length })),
      real,
      data,
      "x",
    );
  it("accepts ascending maps, zero-length regions, and a map ending before the real size", () => {
    expect(() =>
      ok(
        [
          [0, 10],
          [10, 5],
          [100, 0],
        ],
        100,
        15,
      ),
    ).not.toThrow();
    expect(() => ok([[4096, 4096]], 9 * 2 ** 30, 4096)).not.toThrow();
    expect(() => ok([], 100, 0)).not.toThrow();
  });
  it("rejects overlap, disorder, regions past the real size, and a wrong total", () => {
    expect(() =>
      ok(
        [
          [0, 10],
          [5, 5],
        ],
        100,
        15,
      ),
    ).toThrow(/overlaps/u);
    expect(() =>
      ok(
        [
          [50, 10],
          [0, 5],
        ],
        100,
        15,
      ),
    ).toThrow(/overlaps or precedes/u);
    expect(() => ok([[95, 10]], 100, 10)).toThrow(/past the real size/u);
    expect(() => ok([[101, 0]], 100, 0)).toThrow(/past the real size/u);
    expect(() => ok([[0, 10]], 100, 11)).toThrow(/hold 10 bytes, the member stores 11/u);
    expect(() => ok([], -1, 0)).toThrow(MALFORMED);
  });
});
