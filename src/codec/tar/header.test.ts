import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  BLOCK_SIZE,
  MAX_OCTAL_11,
  encodeBase256,
  encodeHeader,
  encodeOctal,
  headerChecksum,
  paddingFor,
  splitUstarName,
  ustarFallbackName,
} from "./header.js";
import { encodePaxHeader, encodePaxRecord, encodePaxRecords } from "./pax.js";

/** First 10240 bytes of the golden v4 backup (REF-W, GNU tar 1.34): the `backup-header` member. */
const golden = readFileSync(new URL("./testdata/golden-v4-first-member.tar", import.meta.url));
const malformed = expect.objectContaining({ code: "ERR_TAR_MALFORMED" });

function field(block: Buffer, offset: number, size: number): string {
  return block.subarray(offset, offset + size).toString("latin1");
}

describe("encodeHeader", () => {
  it("reproduces REF-W's ustar block of backup-header byte for byte", () => {
    const ref = golden.subarray(1024, 1536);
    const mtime = parseInt(field(ref, 136, 11), 8);
    const ours = encodeHeader({
      name: "backup-header",
      type: "0",
      size: 118,
      mode: 0o644,
      mtime,
      uid: 0,
      gid: 0,
      uname: "root",
      gname: "root",
    });
    expect(ours.length).toBe(BLOCK_SIZE);
    expect(ours.equals(ref)).toBe(true);
  });

  it("writes the fields of Appendix A", () => {
    const h = encodeHeader({ name: "a/b", type: "2", size: 0, mode: 0o100755, mtime: 0o1234, linkname: "../t" });
    expect(field(h, 0, 4)).toBe("a/b\0");
    expect(field(h, 100, 8)).toBe("0000755\0"); // masked to 07777
    expect(field(h, 124, 12)).toBe("00000000000\0");
    expect(field(h, 136, 12)).toBe("00000001234\0");
    expect(field(h, 156, 1)).toBe("2");
    expect(field(h, 157, 5)).toBe("../t\0");
    expect(field(h, 257, 8)).toBe("ustar\u000000");
    expect(field(h, 148, 8)).toMatch(/^[0-7]{6}\0 $/u);
    expect(parseInt(field(h, 148, 6), 8)).toBe(headerChecksum(h));
  });

  it("splits long names into prefix + name, shortest prefix first", () => {
    const dir = "d".repeat(60);
    const path = `${dir}/${"e".repeat(40)}/${"f".repeat(50)}`;
    expect(splitUstarName(path)).toEqual({ prefix: dir, name: `${"e".repeat(40)}/${"f".repeat(50)}` });
    const h = encodeHeader({ name: path, type: "0", size: 1, mode: 0o644, mtime: 0 });
    expect(field(h, 345, 61)).toBe(`${dir}\0`);
    expect(splitUstarName("x".repeat(100))).toEqual({ prefix: "", name: "x".repeat(100) });
    expect(splitUstarName("x".repeat(101))).toBeUndefined();
    expect(splitUstarName(`${"p".repeat(156)}/n`)).toBeUndefined();
    expect(splitUstarName(`${"p".repeat(155)}/n`)).toEqual({ prefix: "p".repeat(155), name: "n" });
    expect(splitUstarName(`/${"n".repeat(100)}`)).toBeUndefined(); // empty prefix is not a split
  });

  it("refuses values that do not fit, unless base-256 is allowed", () => {
    const base = { name: "f", type: "0", size: 0, mode: 0o644, mtime: 0 } as const;
    expect(() => encodeHeader({ ...base, name: "x".repeat(101) })).toThrow(malformed);
    expect(() => encodeHeader({ ...base, name: "é" })).toThrow(malformed);
    expect(() => encodeHeader({ ...base, name: "" })).toThrow(malformed);
    expect(() => encodeHeader({ ...base, size: MAX_OCTAL_11 + 1 })).toThrow(malformed);
    expect(() => encodeHeader({ ...base, mtime: -1 })).toThrow(malformed);
    expect(() => encodeHeader({ ...base, mtime: 1.5 })).toThrow(malformed);
    expect(() => encodeHeader({ ...base, uid: 0o10000000 })).toThrow(malformed);
    expect(() => encodeHeader({ ...base, uname: "u".repeat(32) })).toThrow(malformed);
    expect(() => encodeHeader({ ...base, linkname: "l".repeat(101) })).toThrow(malformed);
    expect(
      encodeHeader({ ...base, size: MAX_OCTAL_11 })
        .subarray(124, 136)
        .toString("latin1"),
    ).toBe("77777777777\0");
    const big = encodeHeader({ ...base, size: 2 ** 33, mtime: -86400 }, { base256: true });
    expect([...big.subarray(124, 136)]).toEqual([0x80, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0]);
    expect(big.subarray(136, 148).equals(encodeBase256(-86400, 12))).toBe(true);
    expect(parseInt(field(big, 148, 6), 8)).toBe(headerChecksum(big)); // unsigned sum over 0x80/0xff bytes
  });
});

describe("numeric fields", () => {
  it("octal fills the field minus a trailing NUL", () => {
    expect(encodeOctal(0o644, 8).toString("latin1")).toBe("0000644\0");
    expect(encodeOctal(0o7777777, 8).toString("latin1")).toBe("7777777\0");
    expect(() => encodeOctal(0o10000000, 8)).toThrow(malformed);
  });
  it("base-256 is big-endian two's complement with the flag bit", () => {
    expect([...encodeBase256(0x0102, 8)]).toEqual([0x80, 0, 0, 0, 0, 0, 1, 2]);
    expect([...encodeBase256(-1, 8)]).toEqual([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    expect([...encodeBase256(-256, 8)]).toEqual([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00]);
  });
  it("paddingFor rounds up to 512", () => {
    expect([0, 1, 511, 512, 513, 1024].map(paddingFor)).toEqual([0, 511, 1, 0, 511, 0]);
  });
});

describe("pax records", () => {
  it("reproduces REF-W's pax records of backup-header", () => {
    const size = parseInt(field(golden, 124, 11), 8);
    const refRecords = golden.subarray(512, 512 + size);
    const records = refRecords
      .toString("utf8")
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => l.slice(l.indexOf(" ") + 1).split("=") as [string, string]);
    expect(records.map(([k]) => k)).toEqual(["mtime", "atime", "ctime"]);
    expect(encodePaxRecords(records).equals(refRecords)).toBe(true);
  });

  it("counts its own length across digit boundaries, in UTF-8 bytes", () => {
    expect(encodePaxRecord("GNU.sparse.major", "1").toString()).toBe("22 GNU.sparse.major=1\n");
    expect(encodePaxRecord("k", "").toString()).toBe("5 k=\n");
    expect(encodePaxRecord("k", "abcd").toString()).toBe("9 k=abcd\n"); // 1 digit, 9 bytes
    expect(encodePaxRecord("k", "abcde").toString()).toBe("11 k=abcde\n"); // jumps past 10
    expect(encodePaxRecord("k", "x".repeat(93)).length).toBe(99);
    expect(encodePaxRecord("k", "x".repeat(94)).length).toBe(101); // 100 is impossible
    const r = encodePaxRecord("path", "dom0-home/ü/€");
    expect(r.length).toBe(Number(r.toString("utf8").split(" ")[0]));
    expect(r.toString("utf8")).toBe("25 path=dom0-home/ü/€\n");
  });

  it("rejects keys that cannot be encoded", () => {
    for (const k of ["", "a=b", "a\nb", "a\0b"]) expect(() => encodePaxRecord(k, "v")).toThrow(malformed);
  });

  it("frames records as a typeflag 'x' member padded to 512", () => {
    const m = encodePaxHeader("./PaxHeaders/f", [["path", "f"]], { mtime: 7 });
    expect(m.length).toBe(1024);
    expect(field(m, 156, 1)).toBe("x");
    expect(parseInt(field(m, 124, 11), 8)).toBe(9);
    expect(m.subarray(512, 1024).toString("latin1")).toBe("9 path=f\n".padEnd(512, "\0"));
  });
});

describe("ustarFallbackName", () => {
  it("keeps ASCII names that fit, replaces the rest", () => {
    expect(ustarFallbackName("a/b")).toBe("a/b");
    expect(ustarFallbackName("a/é€")).toBe("a/__");
    const long = `dir/${"n".repeat(150)}`;
    expect(ustarFallbackName(long)).toBe("n".repeat(100));
  });
});
