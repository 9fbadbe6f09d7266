/**
 * Disk-image layout: where the ext2/3/4 filesystem sits inside a restored qube volume.
 * An AppVM's private.img is a bare filesystem; a template's or standalone qube's root.img has a
 * partition table (GPT, or MBR with optional logical partitions) whose Linux partition holds ext4.
 * Pure: every byte comes through the caller's `ReadAt`, and no read goes past the image's end.
 * Hand-written because the on-disk structures needed are small and fixed (MBR, EBR chain, GPT
 * header and entries, filesystem magics); a partitioning library would bring native code or I/O.
 * Sectors are assumed to be 512 bytes (what Qubes volumes use); 4096-byte-sector GPT is refused.
 */

import { QbackupError } from "../errors.js";

/** Reads exactly `length` bytes at `offset` (fewer only at the end of the image). */
export type ReadAt = (offset: number, length: number) => Promise<Buffer>;

export type FilesystemKind =
  "ext2" | "ext3" | "ext4" | "xfs" | "btrfs" | "vfat" | "ntfs" | "swap" | "luks" | "lvm2" | "iso9660" | "unknown";

export interface Located {
  /** Byte offset of the filesystem's first byte inside the image. */
  offset: number;
  /** Bytes available to it: the partition's size, or the whole image's size. */
  size: number;
  kind: FilesystemKind;
  /** "whole image" or "partition N (GPT|MBR, type …)"; "GPT backup" when the backup header was used. */
  where: string;
}

export const SECTOR_SIZE = 512;

const MBR_SIGNATURE_OFFSET = 510;
const MBR_ENTRIES_OFFSET = 446;
const MBR_ENTRY_SIZE = 16;
const MBR_PRIMARY_COUNT = 4;
const MBR_TYPE_GPT_PROTECTIVE = 0xee;
const MBR_TYPE_LINUX = 0x83;
const MBR_EXTENDED_TYPES: ReadonlySet<number> = new Set([0x05, 0x0f, 0x85]);
/** Logical partitions followed in one extended partition before the chain is called malformed. */
export const MAX_LOGICAL_PARTITIONS = 128;

const GPT_SIGNATURE = "EFI PART";
const GPT_HEADER_MIN_SIZE = 92;
export const MAX_GPT_ENTRIES = 1024;
const GPT_ENTRY_MIN_SIZE = 128;
const GPT_ENTRY_MAX_SIZE = 4096;
const GPT_ENTRY_SIZE_ALIGN = 8;
/** A GPT written for 4096-byte sectors has its header here instead of at 512. */
const LARGE_SECTOR_SIZE = 4096;

const EXT_SUPERBLOCK_OFFSET = 1024;
const EXT_SUPERBLOCK_SIZE = 1024;
const EXT_MAGIC = 0xef53;
/** ext block size is 1024 << s_log_block_size; the kernel and e2fsprogs stop at 64 KiB. */
const EXT_MAX_LOG_BLOCK_SIZE = 6;
const EXT_MAX_REV_LEVEL = 1;
const EXT_COMPAT_HAS_JOURNAL = 0x4;
const EXT_INCOMPAT_JOURNAL_DEV = 0x8;
const EXT_INCOMPAT_64BIT = 0x80;
/** Feature bits an ext3 filesystem may carry (filetype, recover, meta_bg / sparse_super, large_file, btree_dir). */
const EXT3_INCOMPAT_SUPPORTED = 0x2 | 0x4 | 0x10;
const EXT3_RO_COMPAT_SUPPORTED = 0x1 | 0x2 | 0x4;

/** Bytes at the start of a volume that hold every magic checked by `probeHead`. */
const PROBE_HEAD_SIZE = 4096;
const SWAP_PAGE_SIZES = [4096, 8192, 16384, 65536];
const ISO9660_MAGIC_OFFSET = 0x8001;
const BTRFS_MAGIC_OFFSET = 0x10040;
const LVM2_LABEL_SECTORS = 4;
/** How much of the image start must be zero to call it blank (an AppVM never started). */
const BLANK_CHECK_SIZE = 65536;
/** Partitions named in a "no ext filesystem" message before it says "and N more". */
const MAX_LISTED_PARTITIONS = 16;

/** Finds the ext2/3/4 filesystem: the whole image if it starts with one, else the partition (MBR or GPT) holding it. */
export async function locateExtFilesystem(read: ReadAt, imageSize: number, what: string): Promise<Located> {
  if (!Number.isSafeInteger(imageSize) || imageSize < 0) {
    throw new QbackupError("ERR_INTERNAL", `${what}: invalid image size ${imageSize}`);
  }
  const image = new BoundedReader(read, imageSize);

  const head = await image.bytes(0, PROBE_HEAD_SIZE);
  const wholeKind = await probe(image, head, 0, imageSize);
  // A GPT's entry array covers the ext magic's position (byte 1080), so a GPT header wins.
  if (isExt(wholeKind) && !hasGptSignature(image, head)) {
    checkExtSuperblock(head, imageSize, "whole image", what);
    return { offset: 0, size: imageSize, kind: wholeKind, where: "whole image" };
  }

  const table = await readPartitionTable(image, head, wholeKind, what);
  if (table === undefined) {
    if (wholeKind !== "unknown") {
      throw new QbackupError("ERR_UNSUPPORTED_FS", `${what}: no ext2/3/4 filesystem: whole image is ${wholeKind}`);
    }
    if (await isBlank(image)) {
      throw new QbackupError("ERR_UNSUPPORTED_FS", `${what}: no ext2/3/4 filesystem: the image starts blank`, {
        hint: "a qube that was never started has an empty private volume",
      });
    }
    throw new QbackupError(
      "ERR_UNSUPPORTED_FS",
      `${what}: no ext2/3/4 filesystem: no superblock at byte 1024, no partition table, no other known filesystem`,
      {
        hint: "if the volume held ext4, its superblock is damaged: restore the qube and try e2fsck -b 32768 on the image",
      },
    );
  }

  // Linux-typed partitions first, each group in table order; the first with ext magic wins.
  const order = [...table.partitions.filter((p) => p.linux), ...table.partitions.filter((p) => !p.linux)];
  const found = new Map<Partition, FilesystemKind>();
  for (const part of order) {
    const volume = image.upTo(part.offset + part.size);
    const partHead = await volume.bytes(part.offset, PROBE_HEAD_SIZE);
    const kind = await probe(volume, partHead, part.offset, part.size);
    if (isExt(kind)) {
      checkExtSuperblock(partHead, part.size, part.where, what);
      return { offset: part.offset, size: part.size, kind, where: part.where };
    }
    found.set(part, kind);
  }

  if (table.partitions.length === 0) {
    throw new QbackupError(
      "ERR_UNSUPPORTED_FS",
      `${what}: no ext2/3/4 filesystem: the ${table.scheme} has no partitions`,
    );
  }
  const listed = table.partitions.slice(0, MAX_LISTED_PARTITIONS).map((p) => {
    const kind = found.get(p) ?? "unknown";
    return kind === "unknown" ? `${p.where} has no known filesystem` : `${p.where} is ${kind}`;
  });
  const more = table.partitions.length - listed.length;
  if (more > 0) listed.push(`and ${more} more`);
  throw new QbackupError("ERR_UNSUPPORTED_FS", `${what}: no ext2/3/4 filesystem: ${listed.join(", ")}`);
}

/**
 * What filesystem (if any) starts at `offset` (by its magic numbers). `size`, when given, is how many
 * bytes belong to the volume there; nothing past it is read. Without it, reads rely on `read`
 * returning short at the image's end.
 */
export async function detectFilesystem(read: ReadAt, offset: number, size?: number): Promise<FilesystemKind> {
  const limit = size === undefined ? Number.MAX_SAFE_INTEGER : offset + size;
  const reader = new BoundedReader(read, limit);
  const head = await reader.bytes(offset, PROBE_HEAD_SIZE);
  return probe(reader, head, offset, limit - offset);
}

// ---------------------------------------------------------------------------------------------
// reading

/** Reads through the caller's callback, never past `end`; short results are zero-padded. */
class BoundedReader {
  constructor(
    private readonly read: ReadAt,
    readonly end: number,
  ) {}

  async bytes(offset: number, length: number): Promise<Buffer> {
    const out = Buffer.alloc(length);
    const available = Math.min(length, this.end - offset);
    if (offset < 0 || available <= 0) return out;
    const got = await this.read(offset, available);
    got.copy(out, 0, 0, Math.min(got.length, available));
    return out;
  }

  /** The same reader, stopping at `end` too (a partition's end). */
  upTo(end: number): BoundedReader {
    return new BoundedReader(this.read, Math.min(end, this.end));
  }
}

async function isBlank(image: BoundedReader): Promise<boolean> {
  const buf = await image.bytes(0, Math.min(BLANK_CHECK_SIZE, image.end));
  return buf.every((b) => b === 0);
}

// ---------------------------------------------------------------------------------------------
// filesystem magics

function isExt(kind: FilesystemKind): kind is "ext2" | "ext3" | "ext4" {
  return kind === "ext2" || kind === "ext3" || kind === "ext4";
}

/** `head` is the first PROBE_HEAD_SIZE bytes at `offset` (zero-padded); `size` bytes belong to the volume. */
async function probe(reader: BoundedReader, head: Buffer, offset: number, size: number): Promise<FilesystemKind> {
  const ext = extKind(head, size);
  if (ext !== undefined) return ext;
  if (head.toString("latin1", 0, 4) === "XFSB") return "xfs";
  if (head.toString("latin1", 0, 6) === "LUKS\xba\xbe") return "luks";
  if (head.toString("latin1", 3, 11) === "NTFS    ") return "ntfs";
  if (isFatBootSector(head)) return "vfat";
  for (let sector = 0; sector < LVM2_LABEL_SECTORS; sector++) {
    const at = sector * SECTOR_SIZE;
    if (
      head.toString("latin1", at, at + 8) === "LABELONE" &&
      head.toString("latin1", at + 24, at + 32) === "LVM2 001"
    ) {
      return "lvm2";
    }
  }
  for (const page of SWAP_PAGE_SIZES) {
    if (page > size) break;
    const magic = page <= head.length ? head.subarray(page - 10, page) : await reader.bytes(offset + page - 10, 10);
    const text = magic.toString("latin1");
    if (text === "SWAPSPACE2" || text === "SWAP-SPACE") return "swap";
  }
  if (size >= BTRFS_MAGIC_OFFSET + 8) {
    const magic = await reader.bytes(offset + BTRFS_MAGIC_OFFSET, 8);
    if (magic.toString("latin1") === "_BHRfS_M") return "btrfs";
  }
  if (size >= ISO9660_MAGIC_OFFSET + 5) {
    const magic = await reader.bytes(offset + ISO9660_MAGIC_OFFSET, 5);
    if (magic.toString("latin1") === "CD001") return "iso9660";
  }
  return "unknown";
}

/** ext2/3/4 by the superblock magic, then by feature flags the way blkid tells them apart. */
function extKind(head: Buffer, size: number): "ext2" | "ext3" | "ext4" | undefined {
  if (size < EXT_SUPERBLOCK_OFFSET + EXT_SUPERBLOCK_SIZE) return undefined;
  const sb = head.subarray(EXT_SUPERBLOCK_OFFSET, EXT_SUPERBLOCK_OFFSET + EXT_SUPERBLOCK_SIZE);
  if (sb.readUInt16LE(56) !== EXT_MAGIC) return undefined;
  if (sb.readUInt32LE(76) === 0) return "ext2"; // revision 0 has no feature fields
  const compat = sb.readUInt32LE(0x5c);
  const incompat = sb.readUInt32LE(0x60);
  const roCompat = sb.readUInt32LE(0x64);
  if ((incompat & ~EXT3_INCOMPAT_SUPPORTED) !== 0 || (roCompat & ~EXT3_RO_COMPAT_SUPPORTED) !== 0) return "ext4";
  return (compat & EXT_COMPAT_HAS_JOURNAL) !== 0 ? "ext3" : "ext2";
}

/** Throws unless the superblock's geometry fits in the `available` bytes of its volume. */
function checkExtSuperblock(head: Buffer, available: number, where: string, what: string): void {
  const sb = head.subarray(EXT_SUPERBLOCK_OFFSET, EXT_SUPERBLOCK_OFFSET + EXT_SUPERBLOCK_SIZE);
  const bad = (detail: string): QbackupError =>
    new QbackupError("ERR_IMAGE_MALFORMED", `${what}: ${where}: ext superblock ${detail}`);
  const rev = sb.readUInt32LE(76);
  if (rev > EXT_MAX_REV_LEVEL) throw bad(`revision ${rev} is unknown`);
  const logBlockSize = sb.readUInt32LE(24);
  if (logBlockSize > EXT_MAX_LOG_BLOCK_SIZE) throw bad(`log block size ${logBlockSize} is out of range (0..6)`);
  const blockSize = 1024 * 2 ** logBlockSize;
  const incompat = rev === 0 ? 0 : sb.readUInt32LE(0x60);
  if ((incompat & EXT_INCOMPAT_JOURNAL_DEV) !== 0) {
    throw new QbackupError("ERR_UNSUPPORTED_FS", `${what}: ${where} is an external ext journal, not a filesystem`);
  }
  const high = (incompat & EXT_INCOMPAT_64BIT) !== 0 ? sb.readUInt32LE(0x150) : 0;
  const blocks = high * 2 ** 32 + sb.readUInt32LE(4);
  if (blocks === 0) throw bad("has a block count of 0");
  const bytes = blocks * blockSize;
  if (bytes > available) {
    throw bad(`says ${blocks} blocks of ${blockSize} bytes (${bytes}) but only ${available} bytes are there`);
  }
}

/** A FAT boot sector: a jump instruction, a sane BPB and a "FAT" type string (FAT12/16 or FAT32 position). */
function isFatBootSector(head: Buffer): boolean {
  if (head[0] !== 0xeb && head[0] !== 0xe9) return false;
  const bytesPerSector = head.readUInt16LE(11);
  if (![512, 1024, 2048, 4096].includes(bytesPerSector)) return false;
  const perCluster = head[13];
  if (perCluster === 0 || (perCluster & (perCluster - 1)) !== 0) return false;
  return head.toString("latin1", 54, 57) === "FAT" || head.toString("latin1", 82, 85) === "FAT";
}

// ---------------------------------------------------------------------------------------------
// partition tables

interface Partition {
  offset: number;
  size: number;
  linux: boolean;
  where: string;
}

interface PartitionTable {
  scheme: "GPT" | "MBR";
  partitions: Partition[];
}

type Malformed = (detail: string) => QbackupError;

function hasGptSignature(image: BoundedReader, head: Buffer): boolean {
  return image.end >= 2 * SECTOR_SIZE && head.toString("latin1", SECTOR_SIZE, SECTOR_SIZE + 8) === GPT_SIGNATURE;
}

/** The image's partition table, or undefined when it has none (or starts with a non-ext filesystem). */
async function readPartitionTable(
  image: BoundedReader,
  head: Buffer,
  wholeKind: FilesystemKind,
  what: string,
): Promise<PartitionTable | undefined> {
  const malformed: Malformed = (detail) => new QbackupError("ERR_IMAGE_MALFORMED", `${what}: ${detail}`);
  const hasSignature = image.end >= SECTOR_SIZE && head.readUInt16LE(MBR_SIGNATURE_OFFSET) === 0xaa55;
  const entries = hasSignature ? mbrEntries(head.subarray(0, SECTOR_SIZE)) : undefined;
  const protective = entries?.some((e) => e.type === MBR_TYPE_GPT_PROTECTIVE) ?? false;
  if (protective || hasGptSignature(image, head)) return readGpt(image, head, what, malformed);
  // A FAT or NTFS boot sector also ends in 0x55AA: the filesystem wins over reading its code as a table.
  if (wholeKind !== "unknown" || entries === undefined) return undefined;
  if (entries.every((e) => e.type === 0)) return undefined;
  return readMbr(image, entries, malformed);
}

interface MbrEntry {
  type: number;
  start: number;
  count: number;
}

/** The four entries of an MBR or EBR sector, or undefined if a boot flag is not 0x00/0x80 (not a table). */
function mbrEntries(sector: Buffer): MbrEntry[] | undefined {
  const out: MbrEntry[] = [];
  for (let i = 0; i < MBR_PRIMARY_COUNT; i++) {
    const at = MBR_ENTRIES_OFFSET + i * MBR_ENTRY_SIZE;
    const status = sector[at];
    if (status !== 0x00 && status !== 0x80) return undefined;
    out.push({ type: sector[at + 4], start: sector.readUInt32LE(at + 8), count: sector.readUInt32LE(at + 12) });
  }
  return out;
}

const MBR_TYPE_NAMES: ReadonlyMap<number, string> = new Map([
  [0x01, "FAT12"],
  [0x04, "FAT16 <32M"],
  [0x05, "extended"],
  [0x06, "FAT16"],
  [0x07, "HPFS/NTFS/exFAT"],
  [0x0b, "FAT32"],
  [0x0c, "FAT32 LBA"],
  [0x0e, "FAT16 LBA"],
  [0x0f, "extended LBA"],
  [0x82, "Linux swap"],
  [0x83, "Linux"],
  [0x85, "Linux extended"],
  [0x8e, "Linux LVM"],
  [0xef, "EFI system"],
  [0xfd, "Linux raid autodetect"],
]);

function mbrWhere(number: number, type: number): string {
  const hex = `0x${type.toString(16).padStart(2, "0")}`;
  return `partition ${number} (MBR, ${MBR_TYPE_NAMES.get(type) ?? `type ${hex}`})`;
}

async function readMbr(image: BoundedReader, entries: MbrEntry[], malformed: Malformed): Promise<PartitionTable> {
  const partitions: Partition[] = [];
  let nextLogical = MBR_PRIMARY_COUNT + 1;
  for (const [i, e] of entries.entries()) {
    if (e.type === 0 || e.count === 0) continue;
    const where = mbrWhere(i + 1, e.type);
    const offset = e.start * SECTOR_SIZE;
    const size = e.count * SECTOR_SIZE;
    if (e.start === 0) throw malformed(`MBR: ${where} starts at sector 0, over the partition table`);
    if (offset + size > image.end) {
      throw malformed(`MBR: ${where} ends at byte ${offset + size}, past the image end (${image.end})`);
    }
    if (MBR_EXTENDED_TYPES.has(e.type)) {
      const logicals = await readEbrChain(image, offset, size, nextLogical, malformed);
      nextLogical += logicals.length;
      partitions.push(...logicals);
    } else {
      partitions.push({ offset, size, linux: e.type === MBR_TYPE_LINUX, where });
    }
  }
  return { scheme: "MBR", partitions };
}

/**
 * Logical partitions of the extended partition at [extStart, extStart + extSize): a chain of EBRs,
 * each holding one logical partition (relative to that EBR) and a link to the next EBR (relative to
 * the extended partition). Links must move forward and stay inside; the chain length is bounded.
 */
async function readEbrChain(
  image: BoundedReader,
  extStart: number,
  extSize: number,
  firstNumber: number,
  malformed: Malformed,
): Promise<Partition[]> {
  const out: Partition[] = [];
  let ebr: number | undefined = 0; // relative to extStart
  let previous = -1;
  for (let hop = 0; ebr !== undefined; hop++) {
    if (hop >= MAX_LOGICAL_PARTITIONS) {
      throw malformed(`MBR: extended partition chain is longer than ${MAX_LOGICAL_PARTITIONS} logical partitions`);
    }
    if (ebr <= previous) throw malformed(`MBR: extended partition chain loops back (EBR at byte ${extStart + ebr})`);
    if (ebr + SECTOR_SIZE > extSize) {
      throw malformed(`MBR: extended partition chain points outside the extended partition (byte ${extStart + ebr})`);
    }
    const sector = await image.bytes(extStart + ebr, SECTOR_SIZE);
    if (sector.readUInt16LE(MBR_SIGNATURE_OFFSET) !== 0xaa55) {
      throw malformed(`MBR: extended boot record at byte ${extStart + ebr} has no 0x55AA signature`);
    }
    const entries = mbrEntries(sector);
    if (entries === undefined)
      throw malformed(`MBR: extended boot record at byte ${extStart + ebr} has a bad boot flag`);
    const data = entries[0];
    const link = entries[1];
    if (data.type !== 0 && data.count !== 0 && !MBR_EXTENDED_TYPES.has(data.type)) {
      const where = mbrWhere(firstNumber + out.length, data.type);
      const rel = ebr + data.start * SECTOR_SIZE;
      const size = data.count * SECTOR_SIZE;
      if (data.start === 0) throw malformed(`MBR: ${where} starts over its own extended boot record`);
      if (rel + size > extSize) throw malformed(`MBR: ${where} extends past the end of its extended partition`);
      out.push({ offset: extStart + rel, size, linux: data.type === MBR_TYPE_LINUX, where });
    }
    previous = ebr;
    ebr = MBR_EXTENDED_TYPES.has(link.type) && link.count !== 0 ? link.start * SECTOR_SIZE : undefined;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// GPT

const GPT_TYPE_NAMES: ReadonlyMap<string, { name: string; linux: boolean }> = new Map([
  ["C12A7328-F81F-11D2-BA4B-00A0C93EC93B", { name: "EFI system", linux: false }],
  ["21686148-6449-6E6F-744E-656564454649", { name: "BIOS boot", linux: false }],
  ["E3C9E316-0B5C-4DB8-817D-F92DF00215AE", { name: "Microsoft reserved", linux: false }],
  ["EBD0A0A2-B9E5-4433-87C0-68B6B72699C7", { name: "Microsoft basic data", linux: false }],
  ["0657FD6D-A4AB-43C4-84E5-0933C84B4F4F", { name: "Linux swap", linux: false }],
  ["E6D6D379-F507-44C2-A23C-238F2A3DF928", { name: "Linux LVM", linux: false }],
  ["A19D880F-05FC-4D3B-A006-743F0F84911E", { name: "Linux RAID", linux: false }],
  ["CA7D7CCB-63ED-4C53-861C-1742536059CC", { name: "Linux LUKS", linux: false }],
  ["0FC63DAF-8483-4772-8E79-3D69D8477DE4", { name: "Linux filesystem", linux: true }],
  ["4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709", { name: "Linux root (x86-64)", linux: true }],
  ["44479540-F297-41B2-9AF7-D131D5F0458A", { name: "Linux root (x86)", linux: true }],
  ["B921B045-1DF0-41C3-AF44-4C6F280D3FAE", { name: "Linux root (ARM-64)", linux: true }],
  ["8484680C-9521-48C6-9C11-B0720656F69E", { name: "Linux /usr (x86-64)", linux: true }],
  ["933AC7E1-2EB4-4F13-B844-0E14E2AEF915", { name: "Linux home", linux: true }],
  ["3B8F8425-20E0-4F3B-907F-1A25A76F98E8", { name: "Linux server data", linux: true }],
  ["4D21B016-B534-45C2-A9FB-5C16E091FD2D", { name: "Linux variable data", linux: true }],
  ["7EC6F557-3BC5-4ACA-B293-16EF5DF639D1", { name: "Linux temporary data", linux: true }],
  ["BC13C2FF-59E6-4262-A352-B275FD6F7172", { name: "Linux extended boot", linux: true }],
]);

/** A GUID as text: the first three fields are little-endian on disk, the rest big-endian. */
export function formatGuid(b: Buffer): string {
  const hex = (from: number, to: number, reverse: boolean): string => {
    const part = Buffer.from(b.subarray(from, to));
    return (reverse ? part.reverse() : part).toString("hex");
  };
  return [hex(0, 4, true), hex(4, 6, true), hex(6, 8, true), hex(8, 10, false), hex(10, 16, false)]
    .join("-")
    .toUpperCase();
}

interface GptHeader {
  count: number;
  entrySize: number;
  firstUsable: bigint;
  lastUsable: bigint;
}

type Attempt<T> = { ok: true; value: T } | { ok: false; reason: string };

/**
 * The GPT: the primary header at LBA 1, or if it (or its entry array) fails its checks, a backup
 * header at the last LBA or at the primary's alternate-LBA field. Both bad: ERR_IMAGE_MALFORMED
 * naming what was wrong with the primary.
 */
async function readGpt(
  image: BoundedReader,
  head: Buffer,
  what: string,
  malformed: Malformed,
): Promise<PartitionTable> {
  const sectors = BigInt(Math.floor(image.end / SECTOR_SIZE));
  if (sectors < 3n) throw malformed("GPT: image too small for a GPT");
  if (!hasGptSignature(image, head)) {
    const large = await image.bytes(LARGE_SECTOR_SIZE, GPT_SIGNATURE.length);
    if (large.toString("latin1") === GPT_SIGNATURE) {
      throw new QbackupError("ERR_UNSUPPORTED_FS", `${what}: GPT for 4096-byte sectors is not supported (512 only)`);
    }
  }
  const primary = await readGptAt(image, 1n, sectors);
  if (primary.ok) return gptPartitions(primary.value, sectors, "GPT", malformed);

  const backups = [sectors - 1n];
  const alternate = head.subarray(SECTOR_SIZE, 2 * SECTOR_SIZE);
  if (alternate.toString("latin1", 0, 8) === GPT_SIGNATURE) {
    const lba = alternate.readBigUInt64LE(32);
    if (lba > 1n && lba < sectors - 1n) backups.push(lba);
  }
  for (const lba of backups) {
    const backup = await readGptAt(image, lba, sectors);
    if (backup.ok) return gptPartitions(backup.value, sectors, "GPT backup", malformed);
  }
  throw malformed(`GPT: ${primary.reason}, and no valid backup header`);
}

/** One GPT header at `lba` and its entry array, checked (signature, sizes, bounds, both CRC32s). */
async function readGptAt(
  image: BoundedReader,
  lba: bigint,
  sectors: bigint,
): Promise<Attempt<{ header: GptHeader; entries: Buffer }>> {
  const fail = (reason: string): Attempt<never> => ({ ok: false, reason: `header at LBA ${lba}: ${reason}` });
  const h = await image.bytes(Number(lba) * SECTOR_SIZE, SECTOR_SIZE);
  if (h.toString("latin1", 0, 8) !== GPT_SIGNATURE) return fail("no EFI PART signature");
  const headerSize = h.readUInt32LE(12);
  if (headerSize < GPT_HEADER_MIN_SIZE || headerSize > SECTOR_SIZE)
    return fail(`header size ${headerSize} out of range`);
  const stored = h.readUInt32LE(16);
  const copy = Buffer.from(h.subarray(0, headerSize));
  copy.writeUInt32LE(0, 16);
  if (crc32(copy) !== stored) return fail("header CRC32 mismatch");
  if (h.readBigUInt64LE(24) !== lba) return fail(`says it is at LBA ${h.readBigUInt64LE(24)}`);
  const firstUsable = h.readBigUInt64LE(40);
  const lastUsable = h.readBigUInt64LE(48);
  if (firstUsable > lastUsable || lastUsable >= sectors) {
    return fail(`usable LBAs ${firstUsable}..${lastUsable} do not fit the image (${sectors} sectors)`);
  }
  const entriesLba = h.readBigUInt64LE(72);
  const count = h.readUInt32LE(80);
  const entrySize = h.readUInt32LE(84);
  if (count > MAX_GPT_ENTRIES) return fail(`${count} partition entries (at most ${MAX_GPT_ENTRIES})`);
  if (entrySize < GPT_ENTRY_MIN_SIZE || entrySize > GPT_ENTRY_MAX_SIZE || entrySize % GPT_ENTRY_SIZE_ALIGN !== 0) {
    return fail(`partition entry size ${entrySize} is not a multiple of 8 in 128..4096`);
  }
  const arrayBytes = count * entrySize;
  const arraySectors = BigInt(Math.ceil(arrayBytes / SECTOR_SIZE));
  if (entriesLba < 1n || entriesLba + arraySectors > sectors) return fail("partition entry array is outside the image");
  if (lba >= entriesLba && lba < entriesLba + arraySectors) return fail("partition entry array overlaps the header");
  const entries = await image.bytes(Number(entriesLba) * SECTOR_SIZE, arrayBytes);
  if (crc32(entries) !== h.readUInt32LE(88)) return fail("partition entry array CRC32 mismatch");
  return {
    ok: true,
    value: {
      header: { count, entrySize, firstUsable, lastUsable },
      entries,
    },
  };
}

function gptPartitions(
  gpt: { header: GptHeader; entries: Buffer },
  sectors: bigint,
  scheme: "GPT" | "GPT backup",
  malformed: Malformed,
): PartitionTable {
  const { header, entries } = gpt;
  const partitions: Partition[] = [];
  for (let i = 0; i < header.count; i++) {
    const e = entries.subarray(i * header.entrySize, (i + 1) * header.entrySize);
    const typeBytes = e.subarray(0, 16);
    if (typeBytes.every((b) => b === 0)) continue;
    const guid = formatGuid(typeBytes);
    const known = GPT_TYPE_NAMES.get(guid);
    const where = `partition ${i + 1} (${scheme}, ${known?.name ?? `type ${guid}`})`;
    const first = e.readBigUInt64LE(32);
    const last = e.readBigUInt64LE(40);
    if (first > last || first < header.firstUsable || last > header.lastUsable || last >= sectors) {
      throw malformed(
        `GPT: ${where} spans LBAs ${first}..${last}, outside the usable ${header.firstUsable}..${header.lastUsable}`,
      );
    }
    partitions.push({
      offset: Number(first) * SECTOR_SIZE,
      size: Number(last - first + 1n) * SECTOR_SIZE,
      linux: known?.linux ?? false,
      where,
    });
  }
  return { scheme: "GPT", partitions };
}

// ---------------------------------------------------------------------------------------------
// CRC32

let crcTable: Uint32Array | undefined;

/** CRC-32 (IEEE, reflected) as GPT uses it; own table because zlib.crc32 needs Node 20.15 and engines allow 20.0. */
export function crc32(data: Uint8Array): number {
  if (crcTable === undefined) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (const byte of data) crc = (crcTable[(crc ^ byte) & 0xff] ?? 0) ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}
