/**
 * Fuzz targets: the parsers that see bytes before (or without) authentication. Each takes one
 * input and may only ever throw a QbackupError (not ERR_INTERNAL); anything else is a crash. A few
 * oracles also throw a plain Error when a reader breaks a promise its API makes (a read longer than
 * asked, data pieces out of order). Choices a target makes about how to read an input (piece
 * sizes, how much to read) come from a PRNG seeded by the input itself, so an input always replays
 * the same way.
 */
import { parseBackupHeader } from "../src/codec/backup-header/index.js";
import type { ParseHeaderOptions } from "../src/codec/backup-header/index.js";
import { parseDgstOutput } from "../src/codec/openssl-dgst/index.js";
import { parseQubesXml, parseQubesXmlCore2 } from "../src/codec/qubes-xml/index.js";
import { BLOCK_SIZE, headerChecksum, paddingFor, readInnerTar } from "../src/codec/tar/index.js";
import type { InnerTarLimits } from "../src/codec/tar/index.js";
import { OuterReader } from "../src/restore/outer-reader.js";
import type { OuterMember } from "../src/restore/outer-reader.js";
import type { ByteSource } from "../src/transport/source.js";
import { Rng, hash32, isExpectedError } from "./engine.js";
import type { TargetSpec } from "./engine.js";

/** Bytes a target reads at most from one input (in-memory inputs are far smaller anyway). */
const MAX_READ_BYTES = 1024 * 1024;
const MAX_MEMBERS = 1000;
const MAX_ENTRIES = 1000;
/** Outer member size limits, like the restore layer's: small text members, larger chunks. */
const MAX_SMALL_MEMBER = 4096;
const MAX_XML_MEMBER = 1024 * 1024;
const MAX_CHUNK_MEMBER = 100 * 1024 * 1024;
const MAX_READ_PIECE = 4096;
const MAX_PEEK = 4;
/** Most backups are read from files; the rest from pipes (no look-ahead, no re-reads). */
const SEEKABLE_SHARE = 0.75;
const PEEK_BYTES = 128;
/** Half the inner-tar inputs run with these, to reach every limit check. */
const SMALL_INNER_LIMITS: InnerTarLimits = {
  maxPaxBytes: 600,
  maxLongNameBytes: 200,
  maxSparseRegions: 5,
  maxEntries: 3,
};

/** Header field offsets (ustar, old GNU sparse entries, isextended, realsize). */
const TAR_FIELDS = [
  0, 100, 108, 116, 124, 136, 148, 156, 157, 257, 263, 265, 297, 329, 337, 345, 386, 398, 410, 422, 434, 482, 483, 504,
];
const TAR_CHECKSUM_AT = 148;
const TAR_SIZE_AT = 124;
const TAR_SIZE_WIDTH = 12;
const TAR_TYPEFLAG_AT = 156;
const TAR_MAGIC_AT = 257;

function oracle(message: string): Error {
  return new Error(`oracle: ${message}`);
}

/** A PRNG that depends only on the input, for the target's own choices. */
function inputRng(data: Buffer): Rng {
  return new Rng(hash32(data.toString("latin1")));
}

function hasUstarMagic(block: Buffer): boolean {
  return block.toString("latin1", TAR_MAGIC_AT, TAR_MAGIC_AT + 5) === "ustar";
}

/** Recomputes the checksum of every 512-byte block that carries the ustar magic (in place). */
export function fixTarChecksums(data: Buffer): Buffer {
  for (let at = 0; at + BLOCK_SIZE <= data.length; at += BLOCK_SIZE) {
    const block = data.subarray(at, at + BLOCK_SIZE);
    if (!hasUstarMagic(block)) continue;
    block.write(`${headerChecksum(block).toString(8).padStart(6, "0")}\0 `, TAR_CHECKSUM_AT, "latin1");
  }
  return data;
}

/** A pax record `<length> <key=value>\n` whose length is right. */
function paxRecord(body: Buffer): Buffer {
  let length = body.length + 2;
  while (String(length).length + body.length + 2 !== length) length = String(length).length + body.length + 2;
  return Buffer.concat([Buffer.from(`${length} `, "latin1"), body, Buffer.from("\n")]);
}

/**
 * Rewrites the data of every pax header ('x', 'g') found on a block boundary as records with
 * correct lengths, and its size field to match, so that mutated keys and values reach the code
 * that interprets them instead of failing the record-length check. Then fixes the checksums.
 */
export function fixPaxRecords(data: Buffer): Buffer {
  const out: Buffer[] = [];
  let at = 0;
  while (at + BLOCK_SIZE <= data.length) {
    const header = Buffer.from(data.subarray(at, at + BLOCK_SIZE));
    at += BLOCK_SIZE;
    const size = parseInt(header.toString("latin1", TAR_SIZE_AT, TAR_SIZE_AT + TAR_SIZE_WIDTH), 8);
    const type = String.fromCharCode(header[TAR_TYPEFLAG_AT]!);
    if (!hasUstarMagic(header) || (type !== "x" && type !== "g") || !(size >= 0)) {
      out.push(header);
      continue;
    }
    const text = data.subarray(at, at + size);
    at += size + paddingFor(size);
    const records: Buffer[] = [];
    for (let start = 0; start < text.length;) {
      let end = text.indexOf(0x0a, start);
      if (end < 0) end = text.length;
      const line = text.subarray(start, end);
      const space = line.indexOf(0x20);
      const body = space > 0 && /^[0-9]+$/.test(line.toString("latin1", 0, space)) ? line.subarray(space + 1) : line;
      if (body.length > 0) records.push(paxRecord(body));
      start = end + 1;
    }
    const fixed = Buffer.concat(records);
    header.write(fixed.length.toString(8).padStart(TAR_SIZE_WIDTH - 1, "0"), TAR_SIZE_AT, "latin1");
    out.push(header, fixed, Buffer.alloc(paddingFor(fixed.length)));
  }
  out.push(data.subarray(at));
  return fixTarChecksums(Buffer.concat(out));
}

/** The ByteSource of a backup held in memory: a file (seekable, with pread) or a pipe. */
class MemorySource implements ByteSource {
  readonly description = "fuzz input";
  bytesRead = 0;
  private position = 0;
  // An arrow function: OuterReader calls it detached from the source.
  readonly pread?: (position: number, length: number) => Promise<Buffer>;

  constructor(
    private readonly data: Buffer,
    readonly seekable: boolean,
  ) {
    if (seekable) {
      this.pread = async (position, length) => {
        this.check("pread", position, length);
        const out = this.data.subarray(position, position + length);
        this.bytesRead += out.length;
        return out;
      };
    }
  }

  private check(what: string, ...values: number[]): void {
    for (const v of values) if (!Number.isSafeInteger(v) || v < 0) throw oracle(`${what}(${values.join(", ")})`);
  }

  async read(length: number): Promise<Buffer> {
    this.check("read", length);
    const out = this.data.subarray(this.position, this.position + length);
    this.position += out.length;
    this.bytesRead += out.length;
    return out;
  }

  async skip(length: number): Promise<number> {
    this.check("skip", length);
    const n = Math.min(length, this.data.length - this.position);
    this.position += n;
    return n;
  }

  async close(): Promise<void> {}
}

function outerSizeLimit(name: string): number {
  if (name === "backup-header" || name.endsWith(".hmac")) return MAX_SMALL_MEMBER;
  if (name.startsWith("qubes.xml")) return MAX_XML_MEMBER;
  return MAX_CHUNK_MEMBER;
}

/** Same name, size and data offset. */
function sameMember(a: OuterMember, b: OuterMember): boolean {
  return a.name === b.name && a.size === b.size && a.offset === b.offset;
}

/**
 * (a) The outer archive reader, from a file or a pipe: every member read whole, in part or
 * skipped, with look-ahead and positional re-reads where the source allows them. Oracles: what
 * look-ahead announced is what the reader then returns, and positional reads return the bytes
 * that streaming returned.
 */
async function outerTar(data: Buffer): Promise<void> {
  const rng = inputRng(data);
  const source = new MemorySource(data, rng.chance(SEEKABLE_SHARE));
  const reader = new OuterReader(source, outerSizeLimit);
  let total = 0;
  let members = 0;
  let announced: OuterMember[] = [];
  for (let m = await reader.next(); m !== null && members < MAX_MEMBERS; m = await reader.next()) {
    members++;
    if (m.size > outerSizeLimit(m.name)) throw oracle(`member ${m.name} of ${m.size} bytes passed its limit`);
    const expected = announced.shift();
    if (expected !== undefined && !sameMember(expected, m)) {
      throw oracle(`peekAhead announced ${JSON.stringify(expected)}, next() returned ${JSON.stringify(m)}`);
    }
    if (rng.chance(0.3)) {
      announced = await reader.peekAhead(1 + rng.below(MAX_PEEK));
      for (const ahead of announced) {
        const bytes = await reader.peekData(ahead, PEEK_BYTES);
        if (bytes !== undefined && bytes.length > Math.min(PEEK_BYTES, ahead.size)) throw oracle("peekData too long");
      }
    }
    const mode = rng.below(3); // 0: read it all, 1: read some, 2: skip it
    const want = mode === 0 ? m.size : mode === 1 ? rng.below(m.size + 1) : 0;
    const pieces: Buffer[] = [];
    let got = 0;
    while (got < want && total < MAX_READ_BYTES) {
      const ask = 1 + rng.below(MAX_READ_PIECE);
      const piece = await reader.read(ask);
      if (piece.length === 0 || piece.length > ask) throw oracle(`read(${ask}) returned ${piece.length} bytes`);
      pieces.push(Buffer.from(piece));
      got += piece.length;
      total += piece.length;
    }
    if (mode === 0 && got > m.size) throw oracle(`read ${got} bytes of a ${m.size}-byte member`);
    if (mode === 0 && (await reader.read(1)).length !== 0) throw oracle("read past the end of a member");
    if (!reader.rereadable) continue;
    if (!Buffer.concat(pieces).equals(await reader.reread(m, 0, got))) throw oracle("reread differs from read");
    if (rng.chance(0.3)) {
      const offset = rng.below(m.size + 1);
      const length = rng.below(Math.min(m.size - offset, MAX_READ_PIECE) + 1);
      const again = await reader.reread(m, offset, length);
      if (again.length !== length) throw oracle(`reread of ${length} bytes returned ${again.length}`);
    }
  }
  await source.close();
}

/** (b) The backup-header parser, plain and with the options restore can pass. */
const HEADER_OPTIONS: readonly ParseHeaderOptions[] = [
  {},
  { forcedCompressionFilter: "gzip" },
  { isFilterInstalled: () => true },
  { forcedCompressionFilter: "zstd", isFilterInstalled: (name) => name === "zstd" },
];

async function backupHeader(data: Buffer): Promise<void> {
  let refused: unknown;
  for (const options of HEADER_OPTIONS) {
    let version: number;
    try {
      version = parseBackupHeader(data, options).version;
    } catch (err) {
      if (!isExpectedError(err)) throw err;
      refused ??= err;
      continue;
    }
    if (!Number.isInteger(version) || version < 1 || version > 4) throw oracle(`version ${version} accepted`);
  }
  if (refused !== undefined) throw refused;
}

/** The input in pieces of random sizes (some empty), as a decompressor would hand them over. */
async function* pieces(data: Buffer, rng: Rng): AsyncGenerator<Uint8Array> {
  let at = 0;
  while (at < data.length) {
    const n = rng.chance(0.05) ? 0 : 1 + rng.below(rng.chance(0.5) ? 16 : 2 * BLOCK_SIZE);
    yield data.subarray(at, at + n);
    at += n;
  }
}

/** (c) The inner archive reader: every entry, its data read (now and then only in part) and checked. */
async function innerTar(data: Buffer): Promise<void> {
  const rng = inputRng(data);
  const limits = rng.chance(0.5) ? {} : SMALL_INNER_LIMITS;
  let total = 0;
  let entries = 0;
  for await (const { entry, data: content } of readInnerTar(pieces(data, rng), limits)) {
    if (++entries > MAX_ENTRIES) return;
    if (entry.path === "" || entry.path.endsWith("/")) throw oracle(`entry path ${JSON.stringify(entry.path)}`);
    if (!Number.isSafeInteger(entry.size) || entry.size < 0) throw oracle(`entry size ${entry.size}`);
    const partial = rng.chance(0.25);
    let end = 0;
    for await (const piece of content) {
      if (piece.bytes.length === 0) throw oracle("empty data piece");
      if (piece.offset < end) throw oracle(`piece at ${piece.offset} overlaps the previous one ending at ${end}`);
      end = piece.offset + piece.bytes.length;
      if (end > entry.size) throw oracle(`piece ends at ${end}, past the entry size ${entry.size}`);
      total += piece.bytes.length;
      if (total > MAX_READ_BYTES) return;
      if (partial && rng.chance(0.5)) break;
    }
  }
}

/** (d), (e) The qubes.xml readers. */
async function qubesXmlCore3(data: Buffer): Promise<void> {
  parseQubesXml(data);
}

async function qubesXmlCore2(data: Buffer): Promise<void> {
  parseQubesXmlCore2(data);
}

/** (f) The `.hmac` file parser. */
async function dgst(data: Buffer): Promise<void> {
  const digest = parseDgstOutput(data);
  if (digest.length === 0) throw oracle("empty digest accepted");
}

const TAR_DICTIONARY = [
  "ustar\u000000",
  "ustar  \u0000",
  "././@PaxHeader",
  "././@LongLink",
  "GNUSparseFile.0/",
  "backup-header",
  "qubes.xml.000.enc",
  ".hmac",
  "../",
  "//",
  "x",
  "g",
  "L",
  "K",
  "S",
  "5",
  "2",
  "1",
];
const PAX_DICTIONARY = [
  "path=",
  "linkpath=",
  "size=",
  "mtime=",
  "uid=",
  "gid=",
  "uname=",
  "gname=",
  "GNU.sparse.major=1\n",
  "GNU.sparse.minor=0\n",
  "GNU.sparse.name=",
  "GNU.sparse.realsize=",
  "GNU.sparse.size=",
  "GNU.sparse.numblocks=",
  "GNU.sparse.map=",
  "GNU.sparse.offset=",
  "GNU.sparse.numbytes=",
  "30 mtime=1700000000.123456789\n",
];
const XML_DICTIONARY = [
  "<?xml version='1.0' encoding='UTF-8'?>",
  "<![CDATA[",
  "]]>",
  "<!DOCTYPE",
  "<!--",
  "-->",
  "&amp;",
  "&#0;",
  "&#x10FFFF;",
  'xmlns="urn:x"',
  "True",
  "False",
];
const CORE3_DICTIONARY = [
  ...XML_DICTIONARY,
  "<qubes>",
  "</qubes>",
  '<label id="label-1" color="0xcc0000">red</label>',
  '<domain id="domain-5" class="AppVM">',
  '<domain id="domain-0" class="AdminVM">',
  '<property name="',
  '<feature name="backup-content">1</feature>',
  '<feature name="backup-path">',
  '<feature name="backup-size">',
  '<volume name="private" pool="p" size="1" save_on_stop="True" vid="v"/>',
  '<device backend-domain="sys-usb" id="1-1" required="yes"><option name="k">v</option></device>',
  "<devices class=",
  '<tag name="t"/>',
  "template",
  "label",
  "qid",
  "uuid",
];
const CORE2_DICTIONARY = [
  ...XML_DICTIONARY,
  "<QubesVmCollection ",
  "</QubesVmCollection>",
  "<QubesAppVm ",
  "<QubesAdminVm ",
  "<QubesTemplateVm ",
  "<QubesTemplateHVm ",
  "<QubesHVm ",
  "<QubesNetVm ",
  "<QubesProxyVm ",
  ' qid="5"',
  ' template_qid="1"',
  ' netvm_qid="none"',
  ' backup_content="True"',
  ' backup_path="vm5"',
  " services=\"{'meminfo-writer': True}\"",
  " pcidevs=\"['00:1f.2']\"",
  ' label="red"',
  ' name="work"',
  ' default_template="1"',
];

export const TARGETS: Readonly<Record<string, TargetSpec>> = {
  "outer-tar": {
    name: "outer-tar",
    run: outerTar,
    dictionary: TAR_DICTIONARY,
    blockFields: TAR_FIELDS,
    fixup: fixTarChecksums,
  },
  "backup-header": {
    name: "backup-header",
    run: backupHeader,
    maxLen: 4200,
    dictionary: [
      "version=",
      "encrypted=",
      "compressed=",
      "compression-filter=",
      "crypto-algorithm=",
      "hmac-algorithm=",
      "backup-id=",
      "True",
      "False",
      "gzip",
      "zstd",
      "scrypt",
      "SHA512",
      "aes-256-cbc",
      "20240102T030405-4242",
      "\r\n",
      "\u000b",
    ],
  },
  "inner-tar": {
    name: "inner-tar",
    run: innerTar,
    dictionary: [...TAR_DICTIONARY, ...PAX_DICTIONARY],
    blockFields: TAR_FIELDS,
    fixup: fixPaxRecords,
  },
  "qubes-xml-core3": { name: "qubes-xml-core3", run: qubesXmlCore3, dictionary: CORE3_DICTIONARY },
  "qubes-xml-core2": { name: "qubes-xml-core2", run: qubesXmlCore2, dictionary: CORE2_DICTIONARY },
  "openssl-dgst": {
    name: "openssl-dgst",
    run: dgst,
    maxLen: 8192,
    dictionary: ["(stdin)= ", "SHA2-512(stdin)= ", "HMAC-SHA512(", ")= ", "\n", "\r\n", "= "],
  },
};

export const TARGET_NAMES: readonly string[] = Object.keys(TARGETS);
