/**
 * Tests for the disk-image layout finder, on images built by the real tools (mke2fs, sfdisk,
 * mkfs.vfat, mkswap) in a temporary folder, plus hand-made broken tables and random garbage.
 */

import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as zlib from "node:zlib";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { QbackupError } from "../errors.js";
import {
  MAX_LOGICAL_PARTITIONS,
  SECTOR_SIZE,
  crc32,
  detectFilesystem,
  formatGuid,
  locateExtFilesystem,
} from "./layout.js";
import type { Located, ReadAt } from "./layout.js";

const MiB = 1024 * 1024;
const GPT_LINUX = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
const GPT_MS_DATA = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7";

function withSbin(): NodeJS.ProcessEnv {
  return { ...process.env, PATH: `${process.env.PATH ?? ""}:/usr/sbin:/sbin` };
}

function run(tool: string, args: string[], input?: string): string {
  return execFileSync(tool, args, { input, env: withSbin(), stdio: ["pipe", "pipe", "pipe"] }).toString();
}

// sfdisk (fdisk) and mkfs.vfat (dosfstools) are required: .ci/run installs them

/** A reader over a buffer that fails the test (with a plain Error) on any read outside the image. */
function bufferReader(image: Buffer): { read: ReadAt; reads: () => number } {
  let count = 0;
  const read: ReadAt = async (offset, length) => {
    count++;
    if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length <= 0) {
      throw new Error(`bad read ${offset}+${length}`);
    }
    if (offset + length > image.length) throw new Error(`read ${offset}+${length} past end ${image.length}`);
    return image.subarray(offset, offset + length);
  };
  return { read, reads: () => count };
}

async function locateBuffer(image: Buffer, what = "vm1/root.img"): Promise<Located> {
  return locateExtFilesystem(bufferReader(image).read, image.length, what);
}

async function locateFile(file: string, what = "vm1/root.img"): Promise<Located> {
  return locateBuffer(fs.readFileSync(file), what);
}

async function rejection(p: Promise<unknown>): Promise<QbackupError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof QbackupError) return err;
    throw err;
  }
  throw new Error("expected a rejection");
}

interface SfdiskPartition {
  node: string;
  start: number;
  size: number;
  type: string;
}

function sfdiskPartitions(file: string): SfdiskPartition[] {
  const parsed = JSON.parse(run("sfdisk", ["--json", file])) as { partitiontable: { partitions: SfdiskPartition[] } };
  return parsed.partitiontable.partitions;
}

function partitionNumber(p: SfdiskPartition): number {
  return Number(/(\d+)$/.exec(p.node)?.[1]);
}

/** mke2fs into the byte range of one partition, as `-E offset=` on a regular file allows. */
function mkextAt(file: string, type: string, p: SfdiskPartition): void {
  run("mke2fs", [
    "-q",
    "-F",
    "-t",
    type,
    "-E",
    `offset=${p.start * SECTOR_SIZE},nodiscard`,
    file,
    `${Math.floor((p.size * SECTOR_SIZE) / 1024)}k`,
  ]);
}

function writeAt(file: string, offset: number, data: Buffer): void {
  const fd = fs.openSync(file, "r+");
  try {
    fs.writeSync(fd, data, 0, data.length, offset);
  } finally {
    fs.closeSync(fd);
  }
}

function xfsMagic(): Buffer {
  return Buffer.from("XFSB", "latin1");
}

/** Fixes both GPT headers' CRCs (entry array and header), so mutations get past the checksums. */
function fixGptCrcs(image: Buffer): void {
  const sectors = Math.floor(image.length / SECTOR_SIZE);
  for (const lba of [1, sectors - 1]) {
    const h = image.subarray(lba * SECTOR_SIZE, (lba + 1) * SECTOR_SIZE);
    if (h.toString("latin1", 0, 8) !== "EFI PART") continue;
    const size = h.readUInt32LE(12);
    const entriesLba = Number(h.readBigUInt64LE(72));
    const bytes = h.readUInt32LE(80) * h.readUInt32LE(84);
    if (size < 92 || size > 512 || bytes > 4 * MiB || (entriesLba + 1) * SECTOR_SIZE + bytes > image.length) continue;
    h.writeUInt32LE(zlib.crc32(image.subarray(entriesLba * SECTOR_SIZE, entriesLba * SECTOR_SIZE + bytes)), 88);
    h.writeUInt32LE(0, 16);
    h.writeUInt32LE(zlib.crc32(h.subarray(0, size)), 16);
  }
}

/** One MBR/EBR sector with the given entries and the 0x55AA signature. */
function mbrSector(entries: { type: number; start: number; count: number }[]): Buffer {
  const s = Buffer.alloc(SECTOR_SIZE);
  entries.forEach((e, i) => {
    const at = 446 + 16 * i;
    s[at + 4] = e.type;
    s.writeUInt32LE(e.start, at + 8);
    s.writeUInt32LE(e.count, at + 12);
  });
  s.writeUInt16LE(0xaa55, 510);
  return s;
}

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "qb-"));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function newImage(name: string, size: number): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, "");
  fs.truncateSync(file, size);
  return file;
}

/** 64 MiB laid out like a template's root.img: partition 1 EFI system (32 MiB), partition 2 Linux. */
function newTemplateGpt(name: string): string {
  const file = newImage(name, 64 * MiB);
  run("sfdisk", ["-q", file], "label: gpt\n,32M,U\n,,L\n");
  return file;
}

/** newTemplateGpt with an ext4 filesystem made in partition 2. */
function templateGptWithExt4(name: string): { file: string; p2: SfdiskPartition } {
  const file = newTemplateGpt(name);
  const p2 = sfdiskPartitions(file)[1];
  if (p2 === undefined) throw new Error("sfdisk made no partition 2");
  mkextAt(file, "ext4", p2);
  return { file, p2 };
}

describe("whole-image ext (an AppVM's private.img)", () => {
  for (const type of ["ext2", "ext3", "ext4"] as const) {
    it(`finds a bare ${type} made by mke2fs at offset 0`, async () => {
      const file = newImage(`${type}.img`, 8 * MiB);
      run("mke2fs", ["-q", "-F", "-t", type, file]);
      expect(await locateFile(file)).toEqual({ offset: 0, size: 8 * MiB, kind: type, where: "whole image" });
      const image = fs.readFileSync(file);
      expect(await detectFilesystem(bufferReader(image).read, 0)).toBe(type);
    });
  }

  it("rejects an ext superblock claiming more blocks than the image holds (truncated image)", async () => {
    const file = newImage("short.img", 8 * MiB);
    run("mke2fs", ["-q", "-F", "-t", "ext4", file]);
    fs.truncateSync(file, 4 * MiB);
    const err = await rejection(locateFile(file, "vm2/private.img"));
    expect(err.code).toBe("ERR_IMAGE_MALFORMED");
    expect(err.message).toBe(
      "vm2/private.img: whole image: ext superblock says 8192 blocks of 1024 bytes (8388608) but only 4194304 bytes are there",
    );
  });

  it("rejects an ext superblock with an impossible block size", async () => {
    const file = newImage("bigblock.img", 8 * MiB);
    run("mke2fs", ["-q", "-F", "-t", "ext4", file]);
    const image = fs.readFileSync(file);
    image.writeUInt32LE(7, 1024 + 24);
    const err = await rejection(locateBuffer(image));
    expect(err.code).toBe("ERR_IMAGE_MALFORMED");
    expect(err.message).toContain("log block size 7 is out of range");
  });

  it("calls an all-zero image blank, with a hint about never-started qubes", async () => {
    const err = await rejection(locateBuffer(Buffer.alloc(2 * MiB), "vm3/private.img"));
    expect(err.code).toBe("ERR_UNSUPPORTED_FS");
    expect(err.message).toBe("vm3/private.img: no ext2/3/4 filesystem: the image starts blank");
    expect(err.hint).toContain("never started");
  });

  it("names a whole-image swap made by mkswap", async () => {
    const file = newImage("swap.img", 4 * MiB);
    run("mkswap", ["-q", file]);
    const err = await rejection(locateFile(file, "vm4/volatile.img"));
    expect(err.code).toBe("ERR_UNSUPPORTED_FS");
    expect(err.message).toBe("vm4/volatile.img: no ext2/3/4 filesystem: whole image is swap");
  });

  it("names a whole-image vfat (its boot sector's 0x55AA is not read as an MBR)", async () => {
    const file = newImage("fat.img", 8 * MiB);
    run("mkfs.vfat", [file]);
    const err = await rejection(locateFile(file));
    expect(err.code).toBe("ERR_UNSUPPORTED_FS");
    expect(err.message).toBe("vm1/root.img: no ext2/3/4 filesystem: whole image is vfat");
  });
});

describe("detectFilesystem by magic", () => {
  const cases: [string, (b: Buffer) => void][] = [
    ["xfs", (b) => xfsMagic().copy(b, 0)],
    ["btrfs", (b) => b.write("_BHRfS_M", 0x10040, "latin1")],
    ["luks", (b) => Buffer.from("LUKS\xba\xbe", "latin1").copy(b, 0)],
    ["ntfs", (b) => b.write("NTFS    ", 3, "latin1")],
    ["iso9660", (b) => b.write("CD001", 0x8001, "latin1")],
    ["swap", (b) => b.write("SWAPSPACE2", 65536 - 10, "latin1")],
    [
      "lvm2",
      (b) => {
        b.write("LABELONE", 512, "latin1");
        b.write("LVM2 001", 512 + 24, "latin1");
      },
    ],
    ["unknown", () => undefined],
  ];
  for (const [kind, write] of cases) {
    it(`detects ${kind} at an offset`, async () => {
      const image = Buffer.alloc(3 * MiB);
      const volume = Buffer.alloc(MiB);
      write(volume);
      volume.copy(image, MiB);
      expect(await detectFilesystem(bufferReader(image).read, MiB, MiB)).toBe(kind);
      expect(await detectFilesystem(bufferReader(image).read, MiB)).toBe(kind);
    });
  }

  it("does not look for a magic past the volume's given size", async () => {
    const image = Buffer.alloc(MiB);
    image.write("_BHRfS_M", 0x10040, "latin1");
    expect(await detectFilesystem(bufferReader(image).read, 0, 0x10000)).toBe("unknown");
    expect(await detectFilesystem(bufferReader(image).read, 0)).toBe("btrfs");
  });
});

describe("GPT images made by sfdisk (a template's root.img)", () => {
  it("finds ext4 in partition 2 at the offset sfdisk reports; vfat in partition 1 is passed over", async () => {
    const file = newTemplateGpt("gpt.img");
    const parts = sfdiskPartitions(file);
    const p2 = parts.find((p) => partitionNumber(p) === 2);
    if (p2 === undefined) throw new Error("sfdisk made no partition 2");
    run("mkfs.vfat", ["--offset", String(parts[0]?.start), file, String((32 * MiB) / 1024)]);
    mkextAt(file, "ext4", p2);
    expect(await locateFile(file)).toEqual({
      offset: p2.start * SECTOR_SIZE,
      size: p2.size * SECTOR_SIZE,
      kind: "ext4",
      where: "partition 2 (GPT, Linux filesystem)",
    });
    expect(p2.type).toBe(GPT_LINUX);
  });

  it("names every partition's filesystem when none is ext", async () => {
    const file = newTemplateGpt("gpt-noext.img");
    const [p1, p2] = sfdiskPartitions(file);
    if (p1 === undefined || p2 === undefined) throw new Error("sfdisk made too few partitions");
    run("mkfs.vfat", ["--offset", String(p1.start), file, String((p1.size * SECTOR_SIZE) / 1024)]);
    writeAt(file, p2.start * SECTOR_SIZE, xfsMagic());
    const err = await rejection(locateFile(file));
    expect(err.code).toBe("ERR_UNSUPPORTED_FS");
    expect(err.message).toBe(
      "vm1/root.img: no ext2/3/4 filesystem: partition 1 (GPT, EFI system) is vfat, partition 2 (GPT, Linux filesystem) is xfs",
    );
  });

  it("prefers a Linux-typed partition, but takes ext from any partition if no Linux one has it", async () => {
    const file = newImage("gpt-pref.img", 64 * MiB);
    run("sfdisk", ["-q", file], `label: gpt\n,16M,${GPT_MS_DATA}\n,16M,L\n,,L\n`);
    const [p1, p2, p3] = sfdiskPartitions(file);
    if (p1 === undefined || p2 === undefined || p3 === undefined) throw new Error("sfdisk made too few partitions");
    mkextAt(file, "ext2", p1);
    mkextAt(file, "ext3", p3);
    const chosen = await locateFile(file);
    expect(chosen).toMatchObject({ offset: p3.start * SECTOR_SIZE, kind: "ext3" });
    expect(chosen.where).toBe("partition 3 (GPT, Linux filesystem)");

    writeAt(file, p3.start * SECTOR_SIZE + 1024 + 56, Buffer.alloc(2)); // wipe partition 3's ext magic
    const fallback = await locateFile(file);
    expect(fallback).toMatchObject({ offset: p1.start * SECTOR_SIZE, kind: "ext2" });
    expect(fallback.where).toBe("partition 1 (GPT, Microsoft basic data)");
  });

  it("uses the backup header when the primary's CRC is corrupt; malformed when both are", async () => {
    const { file, p2 } = templateGptWithExt4("gpt-crc.img");
    const image = fs.readFileSync(file);
    image[SECTOR_SIZE + 16] ^= 0xff; // primary header CRC
    expect(await locateBuffer(image)).toEqual({
      offset: p2.start * SECTOR_SIZE,
      size: p2.size * SECTOR_SIZE,
      kind: "ext4",
      where: "partition 2 (GPT backup, Linux filesystem)",
    });

    image[image.length - SECTOR_SIZE + 16] ^= 0xff; // backup header CRC
    const err = await rejection(locateBuffer(image));
    expect(err.code).toBe("ERR_IMAGE_MALFORMED");
    expect(err.message).toBe("vm1/root.img: GPT: header at LBA 1: header CRC32 mismatch, and no valid backup header");
  });

  it("uses the backup when the primary entry array is corrupt", async () => {
    const { file } = templateGptWithExt4("gpt-entries.img");
    const image = fs.readFileSync(file);
    image[2 * SECTOR_SIZE + 128 + 32] ^= 0x01; // partition 2's first LBA in the primary array
    expect((await locateBuffer(image)).where).toBe("partition 2 (GPT backup, Linux filesystem)");
  });

  it("handles an image grown after partitioning (backup header no longer at the end)", async () => {
    const { file, p2 } = templateGptWithExt4("gpt-grown.img");
    fs.truncateSync(file, 96 * MiB);
    const image = fs.readFileSync(file);
    expect((await locateBuffer(image)).where).toBe("partition 2 (GPT, Linux filesystem)");
    image[SECTOR_SIZE + 16] ^= 0xff; // primary CRC: the backup is found through its alternate-LBA field
    expect(await locateBuffer(image)).toMatchObject({
      offset: p2.start * SECTOR_SIZE,
      where: "partition 2 (GPT backup, Linux filesystem)",
    });
  });

  it("refuses a GPT whose partitions lie past a truncated image's end", async () => {
    const file = newTemplateGpt("gpt-trunc.img");
    fs.truncateSync(file, 48 * MiB);
    const err = await rejection(locateFile(file));
    expect(err.code).toBe("ERR_IMAGE_MALFORMED");
    expect(err.message).toContain("do not fit the image");
  });

  it("refuses a partition entry outside the usable LBAs, even with correct CRCs", async () => {
    const file = newTemplateGpt("gpt-bounds.img");
    const image = fs.readFileSync(file);
    const total = BigInt(image.length / SECTOR_SIZE);
    for (const entries of [2, Number(total) - 33]) image.writeBigUInt64LE(total + 5n, entries * SECTOR_SIZE + 128 + 40);
    fixGptCrcs(image);
    const err = await rejection(locateBuffer(image));
    expect(err.code).toBe("ERR_IMAGE_MALFORMED");
    expect(err.message).toMatch(
      /^vm1\/root\.img: GPT: partition 2 \(GPT, Linux filesystem\) spans LBAs \d+\.\.131077, outside/,
    );
  });
});

describe("MBR images made by sfdisk", () => {
  it("finds ext4 in a logical partition inside an extended one", async () => {
    const file = newImage("mbr.img", 32 * MiB);
    run("sfdisk", ["-q", file], "label: dos\n,4M,c\n,,E\n,4M,L\n,,L\n");
    const parts = sfdiskPartitions(file);
    const p6 = parts.find((p) => partitionNumber(p) === 6);
    const p5 = parts.find((p) => partitionNumber(p) === 5);
    if (p5 === undefined || p6 === undefined) throw new Error("sfdisk made no logical partitions");
    writeAt(file, p5.start * SECTOR_SIZE, xfsMagic());
    mkextAt(file, "ext4", p6);
    expect(await locateFile(file)).toEqual({
      offset: p6.start * SECTOR_SIZE,
      size: p6.size * SECTOR_SIZE,
      kind: "ext4",
      where: "partition 6 (MBR, Linux)",
    });
  });

  it("lists primary and logical partitions when none holds ext", async () => {
    const file = newImage("mbr-noext.img", 32 * MiB);
    run("sfdisk", ["-q", file], "label: dos\n,4M,c\n,,E\n,4M,82\n");
    const parts = sfdiskPartitions(file);
    const p5 = parts.find((p) => partitionNumber(p) === 5);
    if (p5 === undefined) throw new Error("sfdisk made no logical partition");
    const swap = newImage("swap-part.img", p5.size * SECTOR_SIZE);
    run("mkswap", ["-q", swap]);
    writeAt(file, p5.start * SECTOR_SIZE, fs.readFileSync(swap).subarray(0, 8192));
    const err = await rejection(locateFile(file));
    expect(err.code).toBe("ERR_UNSUPPORTED_FS");
    expect(err.message).toBe(
      "vm1/root.img: no ext2/3/4 filesystem: partition 1 (MBR, FAT32 LBA) has no known filesystem, partition 5 (MBR, Linux swap) is swap",
    );
  });
});

describe("hand-made broken MBR chains", () => {
  const EXT_START = 2048; // sectors

  function extendedImage(): Buffer {
    const image = Buffer.alloc(4 * MiB);
    mbrSector([{ type: 0x05, start: EXT_START, count: 4096 }]).copy(image, 0);
    return image;
  }

  it("rejects an EBR that links to itself, without hanging", async () => {
    const image = extendedImage();
    mbrSector([
      { type: 0x83, start: 1, count: 100 },
      { type: 0x05, start: 0, count: 101 },
    ]).copy(image, EXT_START * SECTOR_SIZE);
    const err = await rejection(locateBuffer(image));
    expect(err.code).toBe("ERR_IMAGE_MALFORMED");
    expect(err.message).toBe(
      `vm1/root.img: MBR: extended partition chain loops back (EBR at byte ${EXT_START * SECTOR_SIZE})`,
    );
  });

  it("rejects a chain that jumps backwards", async () => {
    const image = extendedImage();
    mbrSector([
      { type: 0x83, start: 1, count: 10 },
      { type: 0x05, start: 100, count: 20 },
    ]).copy(image, EXT_START * SECTOR_SIZE);
    mbrSector([
      { type: 0x83, start: 1, count: 10 },
      { type: 0x05, start: 50, count: 20 },
    ]).copy(image, (EXT_START + 100) * SECTOR_SIZE);
    mbrSector([
      { type: 0x83, start: 1, count: 10 },
      { type: 0x05, start: 100, count: 20 },
    ]).copy(image, (EXT_START + 50) * SECTOR_SIZE);
    expect((await rejection(locateBuffer(image))).code).toBe("ERR_IMAGE_MALFORMED");
  });

  it(`stops a forward chain after ${MAX_LOGICAL_PARTITIONS} logical partitions`, async () => {
    const image = extendedImage();
    for (let i = 0; i < MAX_LOGICAL_PARTITIONS + 10; i++) {
      mbrSector([
        { type: 0x83, start: 1, count: 2 },
        { type: 0x05, start: (i + 1) * 3, count: 3 },
      ]).copy(image, (EXT_START + i * 3) * SECTOR_SIZE);
    }
    const err = await rejection(locateBuffer(image));
    expect(err.code).toBe("ERR_IMAGE_MALFORMED");
    expect(err.message).toContain(`longer than ${MAX_LOGICAL_PARTITIONS} logical partitions`);
  });

  it("rejects a primary partition past the image end and a logical one past its extended partition", async () => {
    const image = Buffer.alloc(4 * MiB);
    mbrSector([{ type: 0x83, start: 2048, count: 8192 }]).copy(image, 0);
    const err = await rejection(locateBuffer(image));
    expect(err.code).toBe("ERR_IMAGE_MALFORMED");
    expect(err.message).toBe(
      "vm1/root.img: MBR: partition 1 (MBR, Linux) ends at byte 5242880, past the image end (4194304)",
    );

    const ext = extendedImage();
    mbrSector([{ type: 0x83, start: 4000, count: 200 }]).copy(ext, EXT_START * SECTOR_SIZE);
    expect((await rejection(locateBuffer(ext))).message).toContain("extends past the end of its extended partition");
  });

  it("refuses a GPT laid out for 4096-byte sectors", async () => {
    const image = Buffer.alloc(4 * MiB);
    mbrSector([{ type: 0xee, start: 1, count: 1023 }]).copy(image, 0);
    image.write("EFI PART", 4096, "latin1");
    const err = await rejection(locateBuffer(image));
    expect(err.code).toBe("ERR_UNSUPPORTED_FS");
    expect(err.message).toContain("4096-byte sectors is not supported");
  });
});

describe("helpers", () => {
  it("crc32 agrees with zlib", () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), (data) => crc32(data) === zlib.crc32(data)));
  });

  it("formats GUIDs with the mixed-endian layout", () => {
    const bytes = Buffer.from("af3dc60f838472478e793d69d8477de4", "hex");
    expect(formatGuid(bytes)).toBe(GPT_LINUX);
  });
});

describe("random and mutated images", () => {
  /** Resolves inside the image or throws one of the two image codes; never reads out of bounds. */
  async function checkOutcome(image: Buffer): Promise<void> {
    const { read } = bufferReader(image);
    try {
      const found = await locateExtFilesystem(read, image.length, "fuzz.img");
      expect(found.offset + found.size).toBeLessThanOrEqual(image.length);
      expect(found.offset % SECTOR_SIZE).toBe(0);
      expect(["ext2", "ext3", "ext4"]).toContain(found.kind);
    } catch (err) {
      if (!(err instanceof QbackupError)) throw err;
      expect(["ERR_UNSUPPORTED_FS", "ERR_IMAGE_MALFORMED"]).toContain(err.code);
    }
  }

  it("random bytes", async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 80_000 }), async (bytes) => checkOutcome(Buffer.from(bytes))),
      { numRuns: 200 },
    );
  });

  it("random MBR/EBR tables", async () => {
    const entry = fc.record({
      type: fc.constantFrom(0x00, 0x05, 0x0f, 0x85, 0x83, 0x07, 0xee, 0x42),
      start: fc.nat({ max: 300 }),
      count: fc.nat({ max: 300 }),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.array(entry, { maxLength: 4 }), { minLength: 1, maxLength: 40 }),
        async (sectors) => {
          const image = Buffer.alloc(256 * SECTOR_SIZE);
          sectors.forEach((entries, i) => mbrSector(entries).copy(image, ((i * 7) % 256) * SECTOR_SIZE));
          await checkOutcome(image);
        },
      ),
      { numRuns: 200 },
    );
  });

  it("mutated sfdisk GPT and MBR images (CRCs fixed up after mutation)", async () => {
    const bases: Buffer[] = [];
    for (const [name, script] of [
      ["fz-gpt.img", "label: gpt\n,1M,L\n,,L\n"],
      ["fz-mbr.img", "label: dos\n,1M,L\n,,E\n,1M,L\n,,L\n"],
    ] as const) {
      const file = newImage(name, 4 * MiB);
      run("sfdisk", ["-q", file], script);
      const p = sfdiskPartitions(file).at(-1);
      if (p !== undefined) mkextAt(file, "ext4", p);
      const base = fs.readFileSync(file);
      expect((await locateBuffer(base)).offset).toBe((p?.start ?? 0) * SECTOR_SIZE); // unmutated: found
      bases.push(base);
    }
    const hot = fc.oneof(fc.integer({ min: 0, max: 34 * SECTOR_SIZE - 1 }), fc.integer({ min: 0, max: 4 * MiB - 1 }));
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(0, 1),
        fc.array(fc.tuple(hot, fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }),
        fc.boolean(),
        async (which, writes, fix) => {
          const image = Buffer.from(bases[which] ?? Buffer.alloc(0));
          for (const [at, value] of writes) image[at] = value;
          if (fix) fixGptCrcs(image);
          await checkOutcome(image);
        },
      ),
      { numRuns: 200 },
    );
  });
});
