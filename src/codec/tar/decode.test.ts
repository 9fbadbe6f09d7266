import { Buffer } from "node:buffer";
import { describe, expect, it } from "vitest";
import { validateRelativeArchivePath } from "./archive-path.js";
import {
  decodeHeader,
  decodeHeaderIdentity,
  decodeNumericField,
  decodeOldGnuSparseExtension,
  decodePaxRecordList,
  decodePaxRecords,
} from "./decode.js";
import type { DecodedHeader } from "./decode.js";
import { BLOCK_SIZE, encodeBase256, encodeHeader, headerChecksum } from "./header.js";
import { encodePaxRecords } from "./pax.js";

const MALFORMED = expect.objectContaining({ code: "ERR_TAR_MALFORMED" });
const UNSAFE = expect.objectContaining({ code: "ERR_UNSAFE_PATH" });

/** Writes `bytes` at `offset` and recomputes the unsigned checksum. */
function patch(block: Buffer, offset: number, bytes: Buffer | string): Buffer {
  const b = Buffer.from(block);
  (typeof bytes === "string" ? Buffer.from(bytes, "latin1") : bytes).copy(b, offset);
  b.write(`${headerChecksum(b).toString(8).padStart(6, "0")}\0 `, 148, "latin1");
  return b;
}

function field(text: string, size: number): Buffer {
  const b = Buffer.alloc(size);
  b.write(text, "latin1");
  return b;
}

function decoded(block: Buffer): DecodedHeader {
  const h = decodeHeader(block);
  if (h === "zero") throw new Error("unexpected zero block");
  return h;
}

const BASE = encodeHeader({
  name: "dir/file.txt",
  type: "0",
  size: 1234,
  mode: 0o640,
  mtime: 1_700_000_000,
  uid: 1000,
  gid: 100,
  uname: "user",
  gname: "users",
});

describe("decodeHeader", () => {
  it("decodes every field of a ustar header written by encodeHeader", () => {
    expect(decodeHeader(BASE)).toEqual({
      format: "ustar",
      typeflag: "0",
      name: "dir/file.txt",
      mode: 0o640,
      uid: 1000,
      gid: 100,
      size: 1234,
      mtime: 1_700_000_000,
      linkname: "",
      uname: "user",
      gname: "users",
    });
  });

  it("joins prefix and name, and reads a symlink target", () => {
    const long = `${"p".repeat(120)}/${"n".repeat(90)}`;
    const h = decoded(encodeHeader({ name: long, type: "2", size: 0, mode: 0o777, mtime: 1, linkname: "t/a" }));
    expect(h.name).toBe(long);
    expect(h.typeflag).toBe("2");
    expect(h.linkname).toBe("t/a");
  });

  it("returns 'zero' for an all-zero block and rejects a block that is not 512 bytes", () => {
    expect(decodeHeader(Buffer.alloc(BLOCK_SIZE))).toBe("zero");
    expect(() => decodeHeader(Buffer.alloc(100))).toThrow(MALFORMED);
  });

  it("recognises old GNU and v7 magic; rejects unknown magic", () => {
    expect(decoded(patch(BASE, 257, "ustar  \0")).format).toBe("gnu");
    const v7 = decoded(patch(BASE, 257, Buffer.alloc(8)));
    expect(v7.format).toBe("v7");
    expect(v7.uname).toBe(""); // v7 has no owner names
    // an old GNU header has no prefix field: bytes there are not part of the name
    expect(decoded(patch(patch(BASE, 257, "ustar  \0"), 345, "zzz")).name).toBe("dir/file.txt");
    expect(() => decodeHeader(patch(BASE, 257, "ustar\u000001"))).toThrow(/unknown magic/u);
  });

  it("accepts the unsigned checksum, the signed one, and several field spellings; rejects a mismatch", () => {
    const high = patch(BASE, 0, Buffer.from("dir/\xe9\xe9\xe9", "latin1")); // bytes ≥ 0x80
    // invalid UTF-8 in the name is refused after the checksum passed
    expect(() => decodeHeader(high)).toThrow(/name is not valid UTF-8/u);
    const utf8 = patch(BASE, 0, Buffer.concat([Buffer.from("dir/é.txt", "utf8"), Buffer.alloc(10)]));
    let signed = 0;
    for (let i = 0; i < BLOCK_SIZE; i++) {
      const b = i >= 148 && i < 156 ? 0x20 : (utf8[i] ?? 0);
      signed += b >= 0x80 ? b - 256 : b;
    }
    const withSigned = Buffer.from(utf8);
    withSigned.write(`${signed.toString(8).padStart(6, "0")}\0 `, 148, "latin1");
    expect(decoded(withSigned).name).toBe("dir/é.txt");

    const sum = headerChecksum(BASE);
    for (const spelling of [`${sum.toString(8).padStart(7, "0")}\0`, ` ${sum.toString(8)}\0 `.slice(0, 8)]) {
      const b = Buffer.from(BASE);
      b.write(spelling, 148, "latin1");
      expect(decoded(b).size).toBe(1234);
    }
    const bad = Buffer.from(BASE);
    bad[0] = 0x65; // 'e' instead of 'd'
    expect(() => decodeHeader(bad)).toThrow(/checksum mismatch/u);
  });

  it("decodes GNU base-256 numbers, positive and negative", () => {
    const h = decoded(
      patch(
        patch(patch(BASE, 124, encodeBase256(9 * 2 ** 30, 12)), 108, encodeBase256(4_000_000, 8)),
        136,
        encodeBase256(-1000, 12),
      ),
    );
    expect(h.size).toBe(9 * 2 ** 30);
    expect(h.uid).toBe(4_000_000);
    expect(h.mtime).toBe(-1000);
    expect(() => decodeHeader(patch(BASE, 124, encodeBase256(-1, 12)))).toThrow(/negative size/u);
    expect(() => decodeHeader(patch(BASE, 108, encodeBase256(-1, 8)))).toThrow(/negative uid/u);
    const huge = Buffer.alloc(12, 0xff);
    huge[0] = 0x80;
    expect(() => decodeHeader(patch(BASE, 124, huge))).toThrow(/base-256 value out of range/u);
  });

  it("rejects malformed octal numbers", () => {
    for (const bad of ["00000001234x", "0000000 1234", "000000008888", "\0\0\0\0\0\0\0\0\0\0\0\0", "      \0     "]) {
      expect(() => decodeHeader(patch(BASE, 124, field(bad, 12))), bad).toThrow(MALFORMED);
    }
  });

  it("decodes the old GNU sparse fields of an 'S' header and extension blocks", () => {
    let b = patch(BASE, 257, "ustar  \0");
    b = patch(b, 156, "S");
    b = patch(b, 386, field("00000000000\u000000000001000\u0000", 24));
    b = patch(b, 410, Buffer.concat([encodeBase256(5 * 2 ** 30, 12), field("00000000020", 12)]));
    b = patch(b, 482, Buffer.from([1]));
    b = patch(b, 483, encodeBase256(6 * 2 ** 30, 12));
    expect(decoded(b).oldGnuSparse).toEqual({
      regions: [
        { offset: 0, length: 0o1000 },
        { offset: 5 * 2 ** 30, length: 0o20 },
      ],
      isExtended: true,
      realSize: 6 * 2 ** 30,
    });
    const ext = Buffer.alloc(BLOCK_SIZE);
    for (let k = 0; k < 21; k++) {
      ext.write(`${(k * 0o100000).toString(8).padStart(11, "0")}\0${"00000000100"}\0`, k * 24, "latin1");
    }
    const e = decodeOldGnuSparseExtension(ext);
    expect(e.regions).toHaveLength(21);
    expect(e.regions[20]).toEqual({ offset: 20 * 0o100000, length: 0o100 });
    expect(e.isExtended).toBe(false);
    ext[504] = 1;
    ext.fill(0, 24 * 3, 24 * 4); // entry 3 empty: the list ends there
    expect(decodeOldGnuSparseExtension(ext)).toEqual({ regions: e.regions.slice(0, 3), isExtended: true });
  });

  it("decodeHeaderIdentity checks checksum and magic but not the numeric fields", () => {
    const label = patch(patch(patch(BASE, 100, Buffer.alloc(32)), 156, "V"), 124, Buffer.alloc(12));
    expect(decodeHeaderIdentity(label)).toEqual({ format: "ustar", typeflag: "V", name: "dir/file.txt" });
    expect(() => decodeHeader(label)).toThrow(/empty numeric field/u);
  });

  it("decodeNumericField accepts leading spaces and a space terminator", () => {
    expect(decodeNumericField(field("   755 ", 8), 0, 8, "mode")).toBe(0o755);
    expect(decodeNumericField(field("77777777777 ", 12), 0, 12, "size")).toBe(0o77777777777);
    expect(decodeNumericField(field("777777777777", 12), 0, 12, "size")).toBe(0o777777777777);
  });
});

describe("decodePaxRecords", () => {
  it("decodes records, UTF-8 values, values containing '=' and newlines", () => {
    const bytes = encodePaxRecords([
      ["path", "dir/日本語/ü.txt"],
      ["comment", "a=b\nc"],
      ["mtime", "1700000000.123456789"],
    ]);
    expect(decodePaxRecords(bytes)).toEqual(
      new Map([
        ["path", "dir/日本語/ü.txt"],
        ["comment", "a=b\nc"],
        ["mtime", "1700000000.123456789"],
      ]),
    );
    expect(decodePaxRecords(Buffer.alloc(0)).size).toBe(0);
  });

  it("keeps order and repeats in the list form; the map keeps the last value", () => {
    const records: Array<[string, string]> = [
      ["GNU.sparse.offset", "0"],
      ["GNU.sparse.numbytes", "10"],
      ["GNU.sparse.offset", "100"],
      ["GNU.sparse.numbytes", "20"],
    ];
    const bytes = encodePaxRecords(records);
    expect(decodePaxRecordList(bytes)).toEqual(records);
    expect(decodePaxRecords(bytes).get("GNU.sparse.offset")).toBe("100");
  });

  it("rejects every malformed record, never returning partial results", () => {
    const good = encodePaxRecords([["path", "a"]]).toString("latin1");
    const cases = [
      `${good}8 path=b\n`, // length too short for the record
      `${good}99 path=b\n`, // length past the end
      "11 path=abc", // no newline
      "10 pathabc\n", // no '='
      "7 =abc\n", // empty key
      "x path=a\n", // no length
      "8path=a\n", // no space after the length
      `${good}\0\0\0`, // NUL padding inside the declared size
      "0 \n",
      `${"9".repeat(20)} path=a\n`,
    ];
    for (const c of cases)
      expect(() => decodePaxRecords(Buffer.from(c, "latin1")), JSON.stringify(c)).toThrow(MALFORMED);
    const badUtf8 = Buffer.concat([Buffer.from("9 path="), Buffer.from([0xc3]), Buffer.from("\n")]);
    expect(() => decodePaxRecords(badUtf8)).toThrow(/not valid UTF-8/u);
    // binary xattr values are tolerated (never used)
    const xattr = Buffer.concat([Buffer.from("25 SCHILY.xattr.user.a="), Buffer.from([0xff]), Buffer.from("\n")]);
    expect(decodePaxRecords(xattr).has("SCHILY.xattr.user.a")).toBe(true);
  });
});

describe("validateRelativeArchivePath", () => {
  it("accepts relative paths, a trailing slash and '.' components", () => {
    for (const p of ["a", "a/b/c.txt", "dir/", "./dir/file", ".", "a..b/..c", "日本語/ü"]) {
      expect(() => validateRelativeArchivePath(p), p).not.toThrow();
    }
  });

  it("rejects absolute paths, '..', empty components, NUL and the empty path", () => {
    for (const p of ["", "/etc/passwd", "/", "a/../../b", "..", "../a", "a/..", "a//b", "a/b//", "//a", "a\0b"]) {
      expect(() => validateRelativeArchivePath(p), JSON.stringify(p)).toThrow(UNSAFE);
    }
  });
});
