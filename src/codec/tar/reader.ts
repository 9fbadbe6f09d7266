/**
 * Strict, streaming reader of an inner archive (spec §4.3, §7): ustar, pax, old GNU and v7 headers,
 * GNU 'L'/'K' long names, files, directories, symlinks, hardlinks, and GNU sparse members (old GNU
 * 'S' with extension blocks, pax 0.0, 0.1 and 1.0). Every size is bounded, every error is a typed
 * one-line ERR_TAR_MALFORMED, and the end-of-archive marker is required.
 * Hand-written: tar-stream, node-tar and modern-tar all mishandle GNU sparse members (stack notes).
 */

import { QbackupError, isQbackupError } from "../../errors.js";
import { ByteSource } from "./byte-source.js";
import {
  decodeHeader,
  decodeHeaderIdentity,
  decodeOldGnuSparseExtension,
  decodePaxRecordList,
  decodeUtf8,
} from "./decode.js";
import type { DecodedHeader } from "./decode.js";
import { BLOCK_SIZE, paddingFor } from "./header.js";
import type { PaxRecord } from "./pax.js";
import { isAllZero } from "./sparse.js";
import type { Region } from "./sparse.js";
import {
  PAX_SPARSE_NUMBYTES,
  PAX_SPARSE_OFFSET,
  SparseMap10Parser,
  parseDecimal,
  sparseMapFromPax00,
  sparseMapFromPax01,
  validateSparseMap,
} from "./sparse-read.js";

export type InnerEntryType = "file" | "directory" | "symlink" | "hardlink";

export interface InnerEntry {
  /** effective name: pax path / GNU.sparse.name / GNU 'L' long name / prefix+name; no trailing '/' */
  path: string;
  type: InnerEntryType;
  /** apparent (real) size for files (expanded size for sparse files); 0 otherwise */
  size: number;
  /** permission bits (& 07777) */
  mode: number;
  /** seconds since the epoch, integer (fractional pax mtime floored) */
  mtime: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  /** symlink target / hardlink target (pax linkpath / GNU 'K' / ustar linkname) */
  linkname?: string;
  sparse: boolean;
}

/** A piece of file content at an absolute offset; holes are simply the offsets never covered. */
export interface DataPiece {
  offset: number;
  bytes: Buffer;
}

export interface InnerTarLimits {
  /** largest pax extended header ('x' or 'g') data accepted, checked before it is read */
  maxPaxBytes: number;
  /** largest GNU 'L'/'K' long name data */
  maxLongNameBytes: number;
  /** most regions in one sparse map */
  maxSparseRegions: number;
  /** most entries (files, directories, links) in one archive */
  maxEntries: number;
}

export const DEFAULT_INNER_TAR_LIMITS: Readonly<InnerTarLimits> = Object.freeze({
  maxPaxBytes: 1024 * 1024,
  maxLongNameBytes: 64 * 1024,
  maxSparseRegions: 1_000_000,
  maxEntries: 10_000_000,
});

export interface InnerTarItem {
  entry: InnerEntry;
  /** Pieces in increasing offset order, never overlapping, all < entry.size; iterate at most once. */
  data: AsyncIterable<DataPiece>;
}

/** Bytes checked per read when verifying that everything after the end marker is zero. */
const TRAILER_READ_SIZE = 64 * 1024;
const MODE_BITS = 0o7777;
/** Typeflags this reader handles: entries, then extended headers (pax local/global, GNU long names). */
const KNOWN_TYPEFLAGS = new Set(["0", "\0", "S", "5", "2", "1", "x", "g", "L", "K"]);
const PAX_SPARSE_KEYS = [
  "GNU.sparse.major",
  "GNU.sparse.minor",
  "GNU.sparse.name",
  "GNU.sparse.realsize",
  "GNU.sparse.size",
  "GNU.sparse.numblocks",
  "GNU.sparse.map",
  PAX_SPARSE_OFFSET,
  PAX_SPARSE_NUMBYTES,
];

function malformed(message: string): QbackupError {
  return new QbackupError("ERR_TAR_MALFORMED", `inner tar: ${message}`);
}

/** The stream ended early: after authentication that means data is missing (a chunk was dropped). */
function truncated(where: string): QbackupError {
  return new QbackupError("ERR_MISSING", `inner tar: archive truncated ${where}`);
}

/** Runs a decoder, prefixing its ERR_TAR_MALFORMED message with `context`. */
function withContext<T>(context: string, decode: () => T): T {
  try {
    return decode();
  } catch (err) {
    if (isQbackupError(err, "ERR_TAR_MALFORMED")) throw malformed(`${context}: ${err.message}`);
    throw err;
  }
}

function named(path: string): string {
  return JSON.stringify(path);
}

function resolveLimits(partial: Partial<InnerTarLimits>): InnerTarLimits {
  const limits: InnerTarLimits = {
    maxPaxBytes: partial.maxPaxBytes ?? DEFAULT_INNER_TAR_LIMITS.maxPaxBytes,
    maxLongNameBytes: partial.maxLongNameBytes ?? DEFAULT_INNER_TAR_LIMITS.maxLongNameBytes,
    maxSparseRegions: partial.maxSparseRegions ?? DEFAULT_INNER_TAR_LIMITS.maxSparseRegions,
    maxEntries: partial.maxEntries ?? DEFAULT_INNER_TAR_LIMITS.maxEntries,
  };
  for (const [key, value] of Object.entries(limits)) {
    if (!Number.isSafeInteger(value) || value <= 0) {
      throw new QbackupError("ERR_INTERNAL", `inner tar: limit ${key} must be a positive integer, got ${value}`);
    }
  }
  return limits;
}

/**
 * The stored bytes of one member after its header (and, for sparse 1.0, its map): pieces placed at
 * their file offsets through the region list, then the rest of the stored bytes and the padding.
 */
class EntryData implements AsyncIterable<DataPiece> {
  private regionIndex = 0;
  private inRegion = 0;
  private finished = false;
  private iterated = false;
  private detached = false;
  private failure: unknown;

  constructor(
    private readonly src: ByteSource,
    private readonly regions: readonly Region[],
    /** stored bytes still to come (Σ region lengths for files; anything for other types) */
    private remaining: number,
    private readonly padding: number,
    private readonly path: string,
  ) {}

  [Symbol.asyncIterator](): AsyncIterator<DataPiece, undefined> {
    if (this.iterated) throw new QbackupError("ERR_INTERNAL", `inner tar: data of ${named(this.path)} read twice`);
    this.iterated = true;
    return {
      next: async (): Promise<IteratorResult<DataPiece, undefined>> => {
        if (this.detached) {
          throw new QbackupError("ERR_INTERNAL", `inner tar: data of ${named(this.path)} read after the next entry`);
        }
        const piece = await this.guarded(() => this.nextPiece());
        return piece === undefined ? { done: true, value: undefined } : { done: false, value: piece };
      },
      return: async (): Promise<IteratorResult<DataPiece, undefined>> => ({ done: true, value: undefined }),
    };
  }

  /** Skips whatever the consumer did not read; afterwards the data can no longer be read. */
  async drain(): Promise<void> {
    this.detached = true;
    await this.guarded(() => this.finish());
  }

  private async guarded<T>(step: () => Promise<T>): Promise<T> {
    if (this.failure !== undefined) throw this.failure;
    try {
      return await step();
    } catch (err) {
      this.failure = err;
      throw err;
    }
  }

  private async nextPiece(): Promise<DataPiece | undefined> {
    if (this.finished) return undefined;
    let region = this.regions[this.regionIndex];
    while (region !== undefined && this.inRegion === region.length) {
      this.regionIndex++;
      this.inRegion = 0;
      region = this.regions[this.regionIndex];
    }
    if (region === undefined) {
      await this.finish();
      return undefined;
    }
    const bytes = await this.src.readUpTo(region.length - this.inRegion);
    if (bytes.length === 0) throw truncated(`in the data of ${named(this.path)}`);
    const piece = { offset: region.offset + this.inRegion, bytes };
    this.inRegion += bytes.length;
    this.remaining -= bytes.length;
    return piece;
  }

  private async finish(): Promise<void> {
    if (this.finished) return;
    const rest = this.remaining + this.padding;
    if ((await this.src.skip(rest)) < rest) throw truncated(`in the data of ${named(this.path)}`);
    this.remaining = 0;
    this.finished = true;
  }
}

/** Extended headers collected for the next entry. */
interface PendingMeta {
  pax?: PaxRecord[];
  longName?: string;
  longLink?: string;
}

function hasMeta(meta: PendingMeta): boolean {
  return meta.pax !== undefined || meta.longName !== undefined || meta.longLink !== undefined;
}

/** Reads `size` bytes of a meta member (pax, long name) plus padding; the limit is checked first. */
async function readMetaData(src: ByteSource, size: number, limit: number, what: string): Promise<Buffer> {
  if (size > limit) throw malformed(`${what} of ${size} bytes exceeds the limit of ${limit}`);
  const data = await src.readExact(size);
  if (data.length < size) throw truncated(`in a ${what}`);
  const pad = paddingFor(size);
  if ((await src.skip(pad)) < pad) throw truncated(`in a ${what}`);
  return data;
}

/** GNU 'L'/'K' data: the name, then NUL termination (everything after the first NUL must be NUL). */
function longNameText(data: Buffer, what: string): string {
  const nul = data.indexOf(0);
  const text = nul === -1 ? data : data.subarray(0, nul);
  if (nul !== -1 && !isAllZero(data.subarray(nul))) throw malformed(`${what} contains NUL`);
  return withContext(what, () => decodeUtf8(text, "name"));
}

function describeTypeflag(flag: string): string {
  const c = flag.charCodeAt(0);
  return c > 0x20 && c < 0x7f ? `'${flag}'` : `0x${c.toString(16).padStart(2, "0")}`;
}

/** pax values that fall back to the header field when absent or empty (an empty value deletes). */
function paxValue(pax: ReadonlyMap<string, string>, key: string): string | undefined {
  const v = pax.get(key);
  return v === undefined || v === "" ? undefined : v;
}

function paxInteger(pax: ReadonlyMap<string, string>, key: string, what: string): number | undefined {
  const v = paxValue(pax, key);
  return v === undefined ? undefined : parseDecimal(v, `inner tar: ${what}: pax ${key}`);
}

/** pax mtime "[-]seconds[.fraction]" floored to whole seconds. */
function paxMtime(value: string, what: string): number {
  const m = /^(-?)([0-9]{1,16})(?:\.([0-9]+))?$/u.exec(value);
  if (m === null) throw malformed(`${what}: bad pax mtime ${JSON.stringify(value)}`);
  const whole = Number(m[2]);
  if (!Number.isSafeInteger(whole)) throw malformed(`${what}: pax mtime out of range`);
  const fractional = /[1-9]/u.test(m[3] ?? "");
  return m[1] === "-" ? -whole - (fractional ? 1 : 0) : whole;
}

/** Name precedence: GNU.sparse.name, pax path, GNU 'L' long name, then the header's (prefix/)name. */
function rawEntryName(pax: ReadonlyMap<string, string>, meta: PendingMeta, headerName: string): string {
  return paxValue(pax, "GNU.sparse.name") ?? paxValue(pax, "path") ?? meta.longName ?? headerName;
}

interface EntryLayout {
  entry: InnerEntry;
  /** where the stored bytes go, in order */
  regions: Region[];
  /** stored bytes after the header (for sparse 1.0: still including the map) */
  storedSize: number;
  /** pax sparse 1.0: map at the start of the data */
  mapInData: boolean;
}

function entryType(h: DecodedHeader, rawPath: string, path: string): InnerEntryType {
  switch (h.typeflag) {
    case "0":
    case "\0":
      // Old archives have no directory type: a regular member whose name ends in '/' is a directory.
      return rawPath.endsWith("/") && (h.typeflag === "\0" || h.format === "v7") ? "directory" : "file";
    case "S":
      return "file";
    case "5":
      return "directory";
    case "2":
      return "symlink";
    case "1":
      return "hardlink";
    default:
      throw malformed(`unsupported entry type ${describeTypeflag(h.typeflag)} for ${named(path)}`);
  }
}

/** Name, type, metadata and (except the 1.0 map, read later) sparse layout of one entry. */
function layoutEntry(h: DecodedHeader, meta: PendingMeta, limits: InnerTarLimits): EntryLayout {
  const records = meta.pax ?? [];
  const pax = new Map(records);
  const rawPath = rawEntryName(pax, meta, h.name);
  const path = rawPath.replace(/\/+$/u, "");
  if (rawPath.includes("\0")) throw malformed(`entry name ${named(rawPath)} contains NUL`);
  if (path === "") throw malformed(`empty entry name ${named(rawPath)}`);
  const what = named(path);
  const type = entryType(h, rawPath, path);

  const storedSize = paxInteger(pax, "size", what) ?? h.size;
  const mtimeText = paxValue(pax, "mtime");
  const entry: InnerEntry = {
    path,
    type,
    size: type === "file" ? storedSize : 0,
    mode: h.mode & MODE_BITS,
    mtime: mtimeText === undefined ? h.mtime : paxMtime(mtimeText, what),
    uid: paxInteger(pax, "uid", what) ?? h.uid,
    gid: paxInteger(pax, "gid", what) ?? h.gid,
    uname: paxValue(pax, "uname") ?? h.uname,
    gname: paxValue(pax, "gname") ?? h.gname,
    sparse: false,
  };
  if (type === "symlink" || type === "hardlink") {
    const linkname = paxValue(pax, "linkpath") ?? meta.longLink ?? h.linkname;
    if (linkname === "") throw malformed(`${what}: link without a target`);
    if (linkname.includes("\0")) throw malformed(`${what}: link target contains NUL`);
    entry.linkname = linkname;
  }

  const paxSparse = PAX_SPARSE_KEYS.some((k) => pax.has(k));
  if (h.typeflag !== "S" && !paxSparse) {
    return {
      entry,
      regions: type === "file" && storedSize > 0 ? [{ offset: 0, length: storedSize }] : [],
      storedSize,
      mapInData: false,
    };
  }
  if (type !== "file") throw malformed(`${what}: sparse map on a ${type} entry`);
  entry.sparse = true;
  const sparseWhat = `inner tar: ${what}`;

  if (h.typeflag === "S") {
    if (h.oldGnuSparse === undefined) throw malformed(`${what}: sparse entry 'S' without an old GNU header`);
    entry.size = paxInteger(pax, "GNU.sparse.realsize", what) ?? h.oldGnuSparse.realSize;
    return { entry, regions: [...h.oldGnuSparse.regions], storedSize, mapInData: false };
  }
  const major = pax.get("GNU.sparse.major");
  const minor = pax.get("GNU.sparse.minor");
  let regions: Region[] = [];
  let mapInData = false;
  if (major !== undefined || minor !== undefined) {
    if (major !== "1" || minor !== "0") {
      throw malformed(`${what}: unsupported sparse version ${String(major)}.${String(minor)}`);
    }
    mapInData = true;
  } else if (pax.has("GNU.sparse.map")) {
    regions = sparseMapFromPax01(pax.get("GNU.sparse.map") ?? "", limits.maxSparseRegions, sparseWhat);
  } else if (pax.has(PAX_SPARSE_OFFSET) || pax.has(PAX_SPARSE_NUMBYTES)) {
    regions = sparseMapFromPax00(records, limits.maxSparseRegions, sparseWhat);
  } else {
    throw malformed(`${what}: pax sparse records without a sparse map`);
  }
  const realSize =
    paxInteger(pax, mapInData ? "GNU.sparse.realsize" : "GNU.sparse.size", what) ??
    paxInteger(pax, mapInData ? "GNU.sparse.size" : "GNU.sparse.realsize", what);
  if (realSize === undefined) throw malformed(`${what}: sparse entry without a real size`);
  entry.size = realSize;
  const numblocks = paxInteger(pax, "GNU.sparse.numblocks", what);
  if (!mapInData && numblocks !== undefined && numblocks !== regions.length) {
    throw malformed(`${what}: GNU.sparse.numblocks ${numblocks} does not match the ${regions.length} map entries`);
  }
  return { entry, regions, storedSize, mapInData };
}

/** Reads the old GNU extension blocks that follow an 'S' header, appending their entries. */
async function readOldGnuExtensions(
  src: ByteSource,
  regions: Region[],
  limits: InnerTarLimits,
  what: string,
): Promise<void> {
  let more = true;
  while (more) {
    const block = await src.readExact(BLOCK_SIZE);
    if (block.length < BLOCK_SIZE) throw truncated(`in the sparse map of ${what}`);
    const ext = withContext(`${what}: sparse extension block`, () => decodeOldGnuSparseExtension(block));
    if (ext.regions.length === 0) throw malformed(`${what}: empty sparse extension block`);
    if (regions.length + ext.regions.length > limits.maxSparseRegions) {
      throw malformed(`${what}: sparse map has more than ${limits.maxSparseRegions} regions`);
    }
    regions.push(...ext.regions);
    more = ext.isExtended;
  }
}

/** Reads a pax sparse 1.0 map from the start of the member data; returns the map's byte count. */
async function readSparseMap10(
  src: ByteSource,
  layout: EntryLayout,
  limits: InnerTarLimits,
  what: string,
): Promise<number> {
  const parser = new SparseMap10Parser(limits.maxSparseRegions, `inner tar: ${what}`);
  let done = false;
  while (!done) {
    if (parser.bytesUsed + BLOCK_SIZE > layout.storedSize)
      throw malformed(`${what}: sparse map runs past the member data`);
    const block = await src.readExact(BLOCK_SIZE);
    if (block.length < BLOCK_SIZE) throw truncated(`in the sparse map of ${what}`);
    done = parser.push(block);
  }
  layout.regions = parser.regions;
  return parser.bytesUsed;
}

/**
 * After the first zero block: a second zero block, then only zeros until the end of the stream.
 * One tolerated exception, REF-W's qubes.tarwriter (spec §4.3): it does not pad a last region
 * that is not a multiple of 512 and then writes 1024 zeros, so the second block comes up short by
 * exactly the padding the previous member's data took from it.
 */
async function readEndOfArchive(src: ByteSource, lastPadding: number): Promise<void> {
  const second = await src.readExact(BLOCK_SIZE);
  if (!isAllZero(second)) throw malformed("data after end of archive");
  if (second.length < BLOCK_SIZE) {
    if (lastPadding > 0 && second.length === BLOCK_SIZE - lastPadding) return;
    throw truncated("inside the end-of-archive marker");
  }
  for (;;) {
    const rest = await src.readUpTo(TRAILER_READ_SIZE);
    if (rest.length === 0) return;
    if (!isAllZero(rest)) throw malformed("data after end of archive");
  }
}

/**
 * Reads an inner archive entry by entry. Pull-based: read (or skip) an entry's `data` before asking
 * for the next entry; data not read is skipped then, and can no longer be read. Ends after the
 * end-of-archive marker once the rest of the stream is checked to be zeros.
 */
export async function* readInnerTar(
  source: AsyncIterable<Uint8Array>,
  limits: Partial<InnerTarLimits> = {},
): AsyncGenerator<InnerTarItem, void, undefined> {
  const lim = resolveLimits(limits);
  const src = new ByteSource(source);
  let entries = 0;
  let lastPadding = 0;
  let meta: PendingMeta = {};
  let current: EntryData | undefined;
  try {
    for (;;) {
      if (current !== undefined) {
        await current.drain();
        current = undefined;
      }
      const at = src.position;
      const block = await src.readExact(BLOCK_SIZE);
      if (block.length === 0) throw truncated("(no end-of-archive marker)");
      if (block.length < BLOCK_SIZE) throw truncated(`inside the header at byte ${at}`);
      const id = withContext(`header at byte ${at}`, () => decodeHeaderIdentity(block));
      if (id !== "zero" && !KNOWN_TYPEFLAGS.has(id.typeflag)) {
        const name = rawEntryName(new Map(meta.pax ?? []), meta, id.name).replace(/\/+$/u, "");
        throw malformed(`unsupported entry type ${describeTypeflag(id.typeflag)} for ${named(name)}`);
      }
      const h = withContext(`header at byte ${at}`, () => decodeHeader(block));
      if (h === "zero") {
        if (hasMeta(meta)) throw malformed("extended header not followed by an entry");
        await readEndOfArchive(src, lastPadding);
        return;
      }
      switch (h.typeflag) {
        case "x":
          if (meta.pax !== undefined) throw malformed(`two pax headers in a row at byte ${at}`);
          {
            const data = await readMetaData(src, h.size, lim.maxPaxBytes, "pax header");
            meta.pax = withContext(`pax header at byte ${at}`, () => decodePaxRecordList(data));
          }
          lastPadding = paddingFor(h.size);
          continue;
        case "g":
          // Global headers are checked for form and otherwise ignored.
          {
            const data = await readMetaData(src, h.size, lim.maxPaxBytes, "global pax header");
            withContext(`global pax header at byte ${at}`, () => decodePaxRecordList(data));
          }
          lastPadding = paddingFor(h.size);
          continue;
        case "L":
          if (meta.longName !== undefined) throw malformed(`two GNU long names in a row at byte ${at}`);
          meta.longName = longNameText(
            await readMetaData(src, h.size, lim.maxLongNameBytes, "GNU long name"),
            "GNU long name",
          );
          lastPadding = paddingFor(h.size);
          continue;
        case "K":
          if (meta.longLink !== undefined) throw malformed(`two GNU long link names in a row at byte ${at}`);
          meta.longLink = longNameText(
            await readMetaData(src, h.size, lim.maxLongNameBytes, "GNU long link name"),
            "GNU long link name",
          );
          lastPadding = paddingFor(h.size);
          continue;
        default:
          break;
      }

      const layout = layoutEntry(h, meta, lim);
      meta = {};
      const what = named(layout.entry.path);
      if (++entries > lim.maxEntries) throw malformed(`more than ${lim.maxEntries} entries`);
      let storedLeft = layout.storedSize;
      if (h.oldGnuSparse !== undefined && h.oldGnuSparse.isExtended) {
        await readOldGnuExtensions(src, layout.regions, lim, what);
      }
      if (layout.mapInData) storedLeft -= await readSparseMap10(src, layout, lim, what);
      if (layout.entry.sparse) validateSparseMap(layout.regions, layout.entry.size, storedLeft, `inner tar: ${what}`);
      lastPadding = paddingFor(layout.storedSize);
      current = new EntryData(src, layout.regions, storedLeft, lastPadding, layout.entry.path);
      yield { entry: layout.entry, data: current };
    }
  } finally {
    await src.close();
  }
}
