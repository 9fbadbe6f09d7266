import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { RECORD_SIZE } from "./header.js";
import {
  MAX_OUTER_MEMBER_SIZE,
  encodeOuterMember,
  outerMemberFramedSize,
  outerMemberHeader,
  outerMemberTrailer,
  validateOuterMemberName,
} from "./outer.js";

const golden = fs.readFileSync(new URL("./testdata/golden-v4-first-member.tar", import.meta.url));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "qb-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function tar(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync("tar", args, { env: { ...process.env, LC_ALL: "C", TZ: "UTC" }, encoding: "utf8" });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface Forwarded {
  name: string;
  mode: number;
  mtime: number;
  data: Buffer;
}

/** Parses an octal field the way tar2qfile does: leading spaces/zeros skipped, octal digits only. */
function octalOnly(field: Buffer): number | undefined {
  const text = field.toString("latin1").replace(/^[ 0]*/u, "");
  const digits = /^[0-7]*/u.exec(text)?.[0] ?? "";
  const rest = text.slice(digits.length);
  if (rest !== "" && !/^[\0 ]/u.test(rest)) return undefined; // base-256 or garbage: not understood
  return digits === "" ? 0 : parseInt(digits, 8);
}

/**
 * A test-side model of tar2qfile (spec §2.4): recognises a header only with name[0] ≠ NUL, magic
 * starting "ustar" and an unsigned checksum; size in octal only; forwards typeflag '0' members,
 * skips others by size and skips zero blocks; stops silently at anything else.
 */
function tar2qfile(stream: Buffer): { members: Forwarded[]; stoppedAt: number | undefined } {
  const members: Forwarded[] = [];
  let off = 0;
  while (off + 512 <= stream.length) {
    const block = stream.subarray(off, off + 512);
    if (block.every((b) => b === 0)) {
      off += 512;
      continue;
    }
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : (block[i] ?? 0);
    const size = octalOnly(block.subarray(124, 136));
    const valid =
      block[0] !== 0 &&
      block.subarray(257, 262).toString("latin1") === "ustar" &&
      octalOnly(block.subarray(148, 156)) === sum &&
      size !== undefined;
    if (!valid || size === undefined) return { members, stoppedAt: off };
    const cstr = (b: Buffer): string => b.toString("latin1").replace(/\0.*$/su, "");
    const prefix = cstr(block.subarray(345, 500));
    const name = prefix === "" ? cstr(block.subarray(0, 100)) : `${prefix}/${cstr(block.subarray(0, 100))}`;
    off += 512;
    if (String.fromCharCode(block[156] ?? 0) === "0") {
      members.push({
        name,
        mode: (octalOnly(block.subarray(100, 108)) ?? -1) & 0o7777,
        mtime: octalOnly(block.subarray(136, 148)) ?? -1,
        data: Buffer.from(stream.subarray(off, off + size)),
      });
    }
    off += Math.ceil(size / 512) * 512;
  }
  return { members, stoppedAt: undefined };
}

const MTIME = 1700000000;
const members: Array<{ name: string; data: Buffer }> = [
  { name: "backup-header", data: Buffer.from("version=4\nencrypted=True\n") },
  { name: "backup-header.hmac", data: randomBytes(246) },
  { name: "qubes.xml.000.enc", data: randomBytes(9216) }, // 512 + 9216 + 1024 > 10240: two records
  { name: "vm5/private.img.000.enc", data: randomBytes(8704) }, // 512 + 8704 + 1024 = 10240 exactly
  { name: "vm5/private.img.001.enc", data: randomBytes(9215) },
  { name: "vm5/empty", data: Buffer.alloc(0) },
  { name: `vm12/${"d".repeat(120)}/firewall.xml.000.enc`, data: randomBytes(512) }, // needs the prefix field
  { name: "dom0-home/user.000.enc", data: randomBytes(30001) },
];

describe("outer member framing", () => {
  const parts = members.map((m) => encodeOuterMember(m.name, m.data, MTIME));
  const outer = Buffer.concat(parts);

  it("matches REF-W's header block and frames each member on a 10240 boundary", () => {
    expect(outerMemberHeader("backup-header", 118, 0o15300572414).equals(golden.subarray(1024, 1536))).toBe(true);
    expect(golden.subarray(1536 + 118).every((b) => b === 0)).toBe(true); // REF-W's trailer is all NUL too
    for (const [i, m] of members.entries()) {
      const part = parts[i] ?? Buffer.alloc(0);
      expect(part.length % RECORD_SIZE).toBe(0);
      expect(part.length).toBe(outerMemberFramedSize(m.data.length));
      expect(part.length - 512 - m.data.length).toBe(outerMemberTrailer(m.data.length).length);
      expect(part.length - 512 - Math.ceil(m.data.length / 512) * 512).toBeGreaterThanOrEqual(1024);
    }
    expect(parts[2]?.length).toBe(2 * RECORD_SIZE);
    expect(parts[3]?.length).toBe(RECORD_SIZE);
  });

  it("is read completely and exactly by a tar2qfile-style parser", () => {
    const { members: got, stoppedAt } = tar2qfile(outer);
    expect(stoppedAt).toBeUndefined();
    expect(got.map((m) => m.name)).toEqual(members.map((m) => m.name));
    for (const [i, m] of got.entries()) {
      expect(m.data.equals(members[i]?.data ?? Buffer.alloc(1))).toBe(true);
      expect(m.mode).toBe(0o644);
      expect(m.mtime).toBe(MTIME);
    }
    const h = outerMemberHeader("vm5/x", 1, MTIME);
    expect(h.subarray(257, 265).toString("latin1")).toBe("ustar\u000000");
    expect(String.fromCharCode(h[156] ?? 0)).toBe("0");
  });

  it("is extracted exactly by GNU tar -i, and plain tar sees only the first member", () => {
    const file = path.join(tmp, "outer.bin");
    fs.writeFileSync(file, outer);
    const dest = path.join(tmp, "x");
    fs.mkdirSync(dest);
    const x = tar(["-i", "-xf", file, "-C", dest]);
    expect(x.stderr).toBe("");
    expect(x.status).toBe(0);
    for (const m of members) expect(fs.readFileSync(path.join(dest, m.name)).equals(m.data)).toBe(true);
    expect(fs.statSync(path.join(dest, "backup-header")).mtimeMs).toBe(MTIME * 1000);

    const all = tar(["-itf", file]);
    expect(all.stdout.split("\n").filter((l) => l !== "")).toEqual(members.map((m) => m.name));
    const plain = tar(["-tvf", file]);
    expect(plain.status).toBe(0);
    expect(plain.stderr).toBe("");
    const lines = plain.stdout.split("\n").filter((l) => l !== "");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^-rw-r--r-- root\/root +25 2023-11-14 22:13 backup-header$/u);
  });

  it("the tar2qfile model itself rejects what tar2qfile rejects (control)", () => {
    const good = encodeOuterMember("vm5/a", Buffer.from("abc"), MTIME);
    const badSum = Buffer.from(good);
    badSum[0] = 0x62; // "vm5/a" -> "bm5/a" without fixing the checksum
    expect(tar2qfile(badSum)).toEqual({ members: [], stoppedAt: 0 });
    const gnuBig = Buffer.from(good);
    gnuBig.fill(0, 124, 136);
    gnuBig[124] = 0x80; // base-256 size: tar2qfile does not understand it
    expect(tar2qfile(gnuBig).stoppedAt).toBe(0);
    expect(tar2qfile(Buffer.concat([good, good])).members).toHaveLength(2);
  });

  it("accepts the largest octal size and nothing above", () => {
    expect(MAX_OUTER_MEMBER_SIZE).toBe(8 * 1024 ** 3 - 1);
    const h = outerMemberHeader("vm5/big", MAX_OUTER_MEMBER_SIZE, MTIME);
    expect(tar2qfile(Buffer.concat([h, Buffer.alloc(512)])).stoppedAt).toBeUndefined();
    expect(octalOnly(h.subarray(124, 136))).toBe(MAX_OUTER_MEMBER_SIZE);
    const malformed = expect.objectContaining({ code: "ERR_TAR_MALFORMED" });
    expect(() => outerMemberHeader("vm5/big", MAX_OUTER_MEMBER_SIZE + 1, MTIME)).toThrow(malformed);
    expect(() => outerMemberHeader("vm5/big", -1, MTIME)).toThrow(malformed);
    expect(() => outerMemberHeader("vm5/big", 1, 1.5)).toThrow(malformed);
    expect(() => outerMemberTrailer(-1)).toThrow(malformed);
  });
});

describe("validateOuterMemberName", () => {
  it("accepts the member names of spec §2.2", () => {
    for (const n of [
      "backup-header",
      "backup-header.hmac",
      "qubes.xml.000.enc",
      "vm5/private.img.1000.enc",
      "dom0-home/user.000.enc",
      "x".repeat(100),
      `${"p".repeat(155)}/${"n".repeat(100)}`,
    ]) {
      expect(() => validateOuterMemberName(n)).not.toThrow();
    }
  });
  it("rejects unsafe or unrepresentable names with ERR_UNSAFE_PATH", () => {
    const unsafe = expect.objectContaining({ code: "ERR_UNSAFE_PATH" });
    for (const n of [
      "",
      "/vm5/a",
      "./backup-header",
      "vm5//a",
      "vm5/",
      "vm5/./a",
      "vm5/../a",
      "..",
      "vm5/é",
      "vm5/a\nb",
      "vm5/a\0b",
      "x".repeat(101),
      `${"p".repeat(156)}/n`,
      `p/${"n".repeat(101)}`,
    ]) {
      expect(() => validateOuterMemberName(n)).toThrow(unsafe);
      expect(() => outerMemberHeader(n, 1, 0)).toThrow(unsafe);
    }
  });
});
