import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { paddingFor } from "./header.js";
import { HoleScanner } from "./sparse.js";
import type { Region } from "./sparse.js";
import {
  sparseStoredName,
  volumeArchiveHeader,
  volumeArchiveTrailer,
  volumeDataSize,
  volumeMemberSize,
} from "./volume.js";
import type { VolumeArchiveSpec } from "./volume.js";

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const MTIME = 1700000000;
const SPEC_MAP = "5\n0\n1048576\n17825792\n1572864\n41951232\n4096\n62914560\n524288\n67108864\n0\n";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "qb-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
let counter = 0;

function tar(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync("tar", args, { env: { ...process.env, LC_ALL: "C", TZ: "UTC" }, encoding: "utf8" });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Non-zero random bytes (no all-zero 512-byte block). */
function dataBytes(n: number): Buffer {
  const b = randomBytes(n);
  for (let i = 0; i < n; i++) if (b[i] === 0) b[i] = 1;
  return b;
}

function withData(size: number, pieces: ReadonlyArray<readonly [offset: number, length: number]>): Buffer {
  const img = Buffer.alloc(size);
  for (const [offset, length] of pieces) dataBytes(length).copy(img, offset);
  return img;
}

function scan(img: Buffer, granularity = 4096): Region[] {
  const s = new HoleScanner(granularity);
  for (let off = 0; off < img.length; off += MiB) s.push(img.subarray(off, off + MiB));
  return s.finish();
}

/**
 * Writes the archive to a sparse-capable file: header, the region bytes from `readRegion`, trailer.
 * `skipData` seeks over region bytes instead (they read back as zeros).
 */
function writeArchive(spec: VolumeArchiveSpec, readRegion: (r: Region) => Buffer, skipData = false): string {
  const file = path.join(tmp, `vol${counter++}.tar`);
  const fd = fs.openSync(file, "w");
  try {
    let pos = 0;
    const put = (b: Buffer): void => {
      fs.writeSync(fd, b, 0, b.length, pos);
      pos += b.length;
    };
    put(volumeArchiveHeader(spec));
    for (const r of spec.regions) {
      if (skipData) pos += r.length;
      else put(readRegion(r));
    }
    put(volumeArchiveTrailer(spec));
    fs.ftruncateSync(fd, pos);
  } finally {
    fs.closeSync(fd);
  }
  return file;
}

/** Extracts with `tar -xf` and `tar -xvvf`, checks silence, the -vv line, and returns the file paths. */
function extractBoth(archive: string, spec: VolumeArchiveSpec): string[] {
  const out: string[] = [];
  for (const flags of ["-xf", "-xvvf"]) {
    const dest = path.join(tmp, `out${counter++}`);
    fs.mkdirSync(dest);
    const r = tar([flags, archive, "-C", dest, spec.name]); // asking for the effective name must find it
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    if (flags === "-xvvf") {
      const first = r.stdout.split("\n")[0] ?? "";
      const mode = spec.mode === 0o644 ? "-rw-r--r--" : "-rw-------";
      expect(first.split(/ +/u).slice(0, 3)).toEqual([mode, "0/0", String(spec.realSize)]);
      expect(first.endsWith(` ${spec.name}`)).toBe(true);
      const members = r.stdout.split("\n").filter((l) => l !== "" && !l.includes("Creating directory:"));
      expect(members).toHaveLength(1); // exactly one member, under its effective name
    }
    const file = path.join(dest, spec.name);
    expect(fs.statSync(file).size).toBe(spec.realSize);
    expect(fs.statSync(file).mtimeMs).toBe(spec.mtime * 1000);
    expect(fs.statSync(file).mode & 0o7777).toBe(spec.mode);
    out.push(file);
  }
  return out;
}

function roundTrip(name: string, img: Buffer, mode = 0o644, granularity = 4096): string[] {
  const spec: VolumeArchiveSpec = { name, realSize: img.length, regions: scan(img, granularity), mode, mtime: MTIME };
  const archive = writeArchive(spec, (r) => img.subarray(r.offset, r.offset + r.length));
  const member = volumeMemberSize(spec);
  expect(fs.statSync(archive).size).toBe(1024 + 512 + member + paddingFor(member) + 1024);
  const files = extractBoth(archive, spec);
  for (const f of files) expect(fs.readFileSync(f).equals(img)).toBe(true);
  return files;
}

describe("volume archive (pax + GNU sparse 1.0)", () => {
  it("has the tarwriter layout for the golden shape", () => {
    const img = withData(64 * MiB, [
      [0, MiB],
      [17 * MiB, 1.5 * MiB],
      [40 * MiB + 8 * KiB, 4 * KiB],
      [60 * MiB, 512 * KiB],
    ]);
    const regions = scan(img, 512);
    const spec: VolumeArchiveSpec = { name: "vm5/private.img", realSize: img.length, regions, mode: 0o644, mtime: 0 };
    const h = volumeArchiveHeader(spec);
    expect(h.length).toBe(4 * 512); // pax header, records, ustar header, map
    expect(h.subarray(0, 15).toString("latin1")).toBe("././@PaxHeader\0");
    expect(h.subarray(100, 108).toString("latin1")).toBe("0000000\0");
    expect(String.fromCharCode(h[156] ?? 0)).toBe("x");
    const records =
      "22 GNU.sparse.major=1\n22 GNU.sparse.minor=0\n" +
      "35 GNU.sparse.name=vm5/private.img\n32 GNU.sparse.realsize=67108864\n";
    expect(h.subarray(512, 1024).toString("latin1")).toBe(records.padEnd(512, "\0"));
    expect(parseInt(h.subarray(124, 136).toString("latin1"), 8)).toBe(records.length);
    const u = h.subarray(1024, 1536);
    expect(u.subarray(0, 32).toString("latin1")).toBe("vm5/GNUSparseFile.0/private.img\0");
    expect(String.fromCharCode(u[156] ?? 0)).toBe("0");
    expect(parseInt(u.subarray(124, 136).toString("latin1"), 8)).toBe(512 + 3 * MiB + 4096);
    expect(volumeDataSize(regions)).toBe(3 * MiB + 4096);
    expect(h.subarray(1536).toString("latin1")).toBe(SPEC_MAP.padEnd(512, "\0"));
    expect(volumeArchiveTrailer(spec).length).toBe(1024); // data is block-aligned here
  });

  it("GNU tar restores the golden shape byte-identically, holes kept", () => {
    const img = withData(64 * MiB, [
      [0, MiB],
      [17 * MiB, 1.5 * MiB],
      [40 * MiB + 8 * KiB, 4 * KiB],
      [60 * MiB, 512 * KiB],
    ]);
    for (const f of roundTrip("vm5/private.img", img)) expect(fs.statSync(f).blocks * 512).toBeLessThan(8 * MiB);
  });

  it("GNU tar restores a file without holes", () => {
    roundTrip("vm7/root.img", dataBytes(2 * MiB), 0o600);
  });

  it("GNU tar restores a file ending in data at a size that is not a multiple of 512", () => {
    const img = withData(5 * MiB + 123, [
      [4096, 10000],
      [5 * MiB - 700, 823],
    ]);
    const spec = scan(img);
    expect(spec.at(-1)).toEqual({ offset: 5 * MiB - 4096, length: 4096 + 123 });
    roundTrip("vm5/odd.img", img);
  });

  it("pads the last region: without that padding GNU tar warns (control for the stderr checks)", () => {
    const spec: VolumeArchiveSpec = {
      name: "vm5/t.img",
      realSize: 5000,
      regions: [{ offset: 4096, length: 904 }],
      mode: 0o644,
      mtime: MTIME,
    };
    expect(volumeArchiveTrailer(spec).length).toBe(paddingFor(904) + 1024);
    const file = path.join(tmp, "unpadded.tar");
    fs.writeFileSync(file, Buffer.concat([volumeArchiveHeader(spec), dataBytes(904), Buffer.alloc(1024)]));
    const dest = path.join(tmp, `out${counter++}`);
    fs.mkdirSync(dest);
    expect(tar(["-xf", file, "-C", dest]).stderr).toContain("A lone zero block");
  });

  it("GNU tar restores an all-zero file and an empty file", () => {
    for (const f of roundTrip("vm5/zero.img", Buffer.alloc(10 * MiB))) expect(fs.statSync(f).blocks).toBeLessThan(64);
    roundTrip("vm5/empty.img", Buffer.alloc(0));
    roundTrip("top-level.img", withData(8192, [[0, 100]])); // no directory: "./GNUSparseFile.0/..."
  });

  it("GNU tar restores a file whose map spans several blocks", () => {
    const pieces: Array<[number, number]> = [];
    for (let off = 0; off < 4 * MiB; off += 8 * KiB) pieces.push([off + 512, 512]);
    const img = withData(4 * MiB + 100, pieces);
    const regions = scan(img, 512);
    expect(regions).toHaveLength(513);
    expect(volumeArchiveHeader({ name: "m", realSize: img.length, regions, mode: 0, mtime: 0 }).length).toBeGreaterThan(
      4 * 512,
    );
    roundTrip("vm5/many.img", img, 0o644, 512);
  });

  it("GNU tar restores a sparse file over 8 GiB apparent size", () => {
    const realSize = 9 * GiB + 4096;
    const pieces = new Map<number, Buffer>([
      [0, dataBytes(4096)],
      [5 * GiB, dataBytes(64 * KiB)],
      [8 * GiB + 512, dataBytes(1000)],
    ]);
    const regions: Region[] = [...pieces].map(([offset, b]) => ({ offset, length: b.length }));
    regions.push({ offset: realSize, length: 0 });
    const spec: VolumeArchiveSpec = { name: "vm9/private.img", realSize, regions, mode: 0o644, mtime: MTIME };
    expect(volumeArchiveHeader(spec).subarray(512, 1024).toString("latin1")).toContain(
      `34 GNU.sparse.realsize=${realSize}\n`,
    );
    const archive = writeArchive(spec, (r) => pieces.get(r.offset) ?? Buffer.alloc(0));
    for (const file of extractBoth(archive, spec)) {
      expect(fs.statSync(file).blocks * 512).toBeLessThan(8 * MiB);
      const fd = fs.openSync(file, "r");
      try {
        for (const [offset, b] of pieces) {
          const got = Buffer.alloc(b.length + 512);
          fs.readSync(fd, got, 0, got.length, offset);
          expect(got.subarray(0, b.length).equals(b)).toBe(true);
          expect(got.subarray(b.length).every((x) => x === 0)).toBe(true); // hole after it
        }
      } finally {
        fs.closeSync(fd);
      }
    }
  });

  it("puts the member size in a pax record when the member data is 8 GiB or more", () => {
    const realSize = 8 * GiB + 8192;
    const spec: VolumeArchiveSpec = {
      name: "vm9/full.img",
      realSize,
      regions: [{ offset: 0, length: realSize }],
      mode: 0o644,
      mtime: MTIME,
    };
    const h = volumeArchiveHeader(spec);
    const memberSize = 512 + realSize;
    expect(h.subarray(512, 1024).toString("latin1")).toContain(`19 size=${memberSize}\n`);
    expect(h[1024 + 124]).toBe(0x80); // base-256 in the ustar field, exact value in pax
    // The archive file is sparse (region bytes skipped, they read as zeros): GNU tar lists it by seeking.
    const archive = writeArchive(spec, () => Buffer.alloc(0), true);
    const r = tar(["-tvvf", archive]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.stdout.split("\n")[0]?.split(/ +/u).slice(0, 3)).toEqual(["-rw-r--r--", "0/0", String(realSize)]);
  });

  it("rejects bad specs", () => {
    const base: VolumeArchiveSpec = {
      name: "vm5/a.img",
      realSize: 10,
      regions: [{ offset: 0, length: 10 }],
      mode: 0o644,
      mtime: 0,
    };
    const unsafe = expect.objectContaining({ code: "ERR_UNSAFE_PATH" });
    const malformed = expect.objectContaining({ code: "ERR_TAR_MALFORMED" });
    for (const name of ["/vm5/a.img", "vm5/../a.img", "", "vm5//a"]) {
      expect(() => volumeArchiveHeader({ ...base, name })).toThrow(unsafe);
    }
    expect(() => volumeArchiveHeader({ ...base, realSize: 11 })).toThrow(malformed);
    expect(() => volumeArchiveHeader({ ...base, regions: [] })).toThrow(malformed);
    expect(() => volumeArchiveHeader({ ...base, mtime: 1.5 })).toThrow(malformed);
    expect(() => volumeArchiveHeader({ ...base, mtime: -1 })).toThrow(malformed);
    expect(() => volumeArchiveTrailer({ ...base, realSize: 9 })).toThrow(malformed);
    expect(sparseStoredName("vm5/private.img")).toBe("vm5/GNUSparseFile.0/private.img");
    expect(sparseStoredName("private.img")).toBe("./GNUSparseFile.0/private.img");
  });
});
