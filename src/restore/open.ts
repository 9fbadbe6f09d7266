/**
 * Opening a backup: the first members, each authenticated before it is parsed.
 *   backup-header        held as bytes, not parsed yet
 *   backup-header.hmac   v4: a scrypt container of the header ("backup-header!P") that decrypts
 *                        to exactly the header bytes; v3: an HMAC line (v3.ts); otherwise the
 *                        backup is refused
 *   (now the header is parsed, with the reference reader's rules and filter allowlist)
 *   qubes.xml.000.enc    authenticated, decompressed (bounded), untarred (one member), parsed
 *                        (v3: qubes.xml.000 and its .hmac, decrypted too; R3's core2 format)
 * After this, the reader stands at the first data member, and `chunks` knows how to open it.
 *
 * From a seekable backup, the KDF of qubes.xml.000.enc (and, for a restore, of the first data
 * chunks) runs while the header's own KDF does: its passphrase string needs the backup id, taken
 * for that purpose only from the header bytes before they are authenticated (a wrong guess just
 * wastes the KDF: the authenticated id is compared before any key is used).
 */
import { MAX_BACKUP_HEADER_BYTES, isValidBackupId, parseBackupHeader } from "../codec/backup-header/index.js";
import type { BackupHeader } from "../codec/backup-header/index.js";
import {
  MAX_QUBES_XML_BYTES,
  dom0UserOfBackupPath,
  parseQubesXml,
  parseQubesXmlCore2,
} from "../codec/qubes-xml/index.js";
import type { ParsedDomain, ParsedQubesXml } from "../codec/qubes-xml/index.js";
import { CONTAINER_OVERHEAD, open } from "../codec/scrypt/index.js";
import type { KdfLimits } from "../codec/scrypt/index.js";
import { readInnerTar } from "../codec/tar/index.js";
import { QbackupError } from "../errors.js";
import {
  BACKUP_HEADER_HMAC_NAME,
  BACKUP_HEADER_NAME,
  ENC_SUFFIX,
  MAX_CHUNK_SIZE,
  QUBES_XML_BASE,
  chunkMemberName,
  chunkPath,
  headerPassphraseString,
} from "../format/names.js";
import { findProgram } from "../runtime/filters.js";
import { limitBytes } from "../runtime/streams.js";
import type { ByteSource } from "../transport/source.js";
import { withMemberName } from "./authenticate.js";
import { SealedChunks, chunkPassphrase } from "./chunks.js";
import type { StoredChunks } from "./chunks.js";
import { decompress, decompressionFor } from "./decompress.js";
import type { Decompression } from "./decompress.js";
import { KeyDerivation } from "./kdf-ahead.js";
import { OuterReader } from "./outer-reader.js";
import { HMAC_SUFFIX, HmacChunks, authenticateHeaderV3, readQubesXmlChunkV3 } from "./v3.js";

/** Any `.hmac` member, header's included, is at most this (the reference reader's check). */
export const MAX_HMAC_MEMBER = 4096;
/** qubes.xml must be one chunk of at most 1 MiB (+ the container), spec §2.5. */
export const MAX_QUBES_XML_MEMBER = 1024 * 1024 + CONTAINER_OVERHEAD;

export interface OpenOptions {
  passphrase: string;
  kdfLimits: KdfLimits;
  /** Like qvm-backup-restore -Z: use this filter whatever the header says. */
  forcedCompressionFilter?: string;
  /** Largest data chunk accepted (plaintext bytes); default Qubes' 100 MiB. */
  maxChunkSize?: number;
  /** Key derivations run at once (each holds 128·r·N bytes); default 1. */
  jobs?: number;
  /**
   * From a seekable backup: how many members after the header may have their KDFs started
   * before the reader gets there. Default 1 (qubes.xml only, what list needs); a restore reads
   * further ahead.
   */
  lookAhead?: number;
}

/** A qube (or dom0) whose data the backup holds. */
export interface BackupQubeInfo {
  name: string;
  klass: string;
  label: string;
  template: string | undefined;
  /** A qube name, null for none, or "default" for the host's default netvm (see netvmOf). */
  netvm: string | null;
  backupPath: string;
  backupSize: number;
  /** dom0's home: `backupPath` is `dom0-home/<user>`. */
  dom0User: string | undefined;
  domain: ParsedDomain;
}

export interface OpenedBackup {
  header: BackupHeader;
  /** v4's backup-id; v3 backups have none. */
  backupId: string | null;
  decompression: Decompression;
  manifest: ParsedQubesXml;
  /** Included qubes, in manifest order; dom0 (if its home is included) last. */
  qubes: BackupQubeInfo[];
  reader: OuterReader;
  /** How this format's data chunks are authenticated and turned into each file's stream. */
  chunks: StoredChunks;
}

export async function openBackup(source: ByteSource, options: OpenOptions): Promise<OpenedBackup> {
  const reader = new OuterReader(source, memberSizeLimits(options.maxChunkSize ?? MAX_CHUNK_SIZE));

  const headerMember = await expectMember(reader, BACKUP_HEADER_NAME);
  const headerBytes = await reader.read(headerMember.size);
  if (headerBytes.length > MAX_BACKUP_HEADER_BYTES) {
    throw new QbackupError(
      "ERR_HEADER_MALFORMED",
      `backup-header is ${headerBytes.length} bytes, more than ${MAX_BACKUP_HEADER_BYTES}`,
    );
  }
  const hmacMember = await expectMember(reader, BACKUP_HEADER_HMAC_NAME);
  const hmac = await reader.read(hmacMember.size);
  const parse = (bytes: Buffer) =>
    parseBackupHeader(bytes, {
      ...(options.forcedCompressionFilter === undefined
        ? {}
        : { forcedCompressionFilter: options.forcedCompressionFilter }),
      isFilterInstalled: (name) => findProgram(name) !== undefined,
    });
  return hmac.subarray(0, SCRYPT_MAGIC.length).equals(SCRYPT_MAGIC)
    ? openV4(reader, headerBytes, hmac, parse, options)
    : openV3(reader, headerBytes, hmac, parse, options);
}

/** The largest size each kind of member may have (a v4 or v3 chunk, qubes.xml, header, .hmac). */
export function memberSizeLimits(maxChunk: number): (name: string) => number {
  return (name) =>
    name === BACKUP_HEADER_NAME || name.endsWith(HMAC_SUFFIX)
      ? MAX_HMAC_MEMBER
      : name === chunkMemberName(QUBES_XML_BASE, 0) || name === chunkPath(QUBES_XML_BASE, 0)
        ? MAX_QUBES_XML_MEMBER
        : name.endsWith(ENC_SUFFIX)
          ? maxChunk + CONTAINER_OVERHEAD
          : /\.\d{3,}$/.test(name)
            ? maxChunk // a v3 chunk: a piece of an openssl stream
            : MAX_HMAC_MEMBER;
}

/** A v4 header's authenticator is a scrypt container; a v2/v3 one is `openssl dgst` text. */
const SCRYPT_MAGIC = Buffer.from("scrypt", "latin1");

async function openV4(
  reader: OuterReader,
  headerBytes: Buffer,
  hmac: Buffer,
  parse: (bytes: Buffer) => BackupHeader,
  options: OpenOptions,
): Promise<OpenedBackup> {
  const keys = new KeyDerivation(reader, options.kdfLimits, options.jobs ?? 1, options.lookAhead ?? 1);
  // the header's KDF goes first; qubes.xml's (and the next chunks') may start while it runs
  const headerCheck = keys.run(() => open(hmac, headerPassphraseString(options.passphrase), options.kdfLimits));
  headerCheck.catch(() => undefined); // awaited just below
  const claimedId = claimedBackupId(headerBytes);
  if (claimedId !== undefined) {
    keys.target((name) => chunkPassphrase(claimedId, name, options.passphrase));
    await keys.fill();
  }
  const authenticated = await headerCheck.catch((err: unknown) => {
    if (err instanceof QbackupError && err.code === "ERR_PASSPHRASE_WRONG") {
      throw new QbackupError("ERR_PASSPHRASE_WRONG", "backup-header.hmac does not verify: wrong passphrase", {
        hint: "or the backup header was replaced",
        cause: err,
      });
    }
    throw withMemberName(err, BACKUP_HEADER_HMAC_NAME);
  });
  if (!authenticated.equals(headerBytes)) {
    throw new QbackupError(
      "ERR_CHUNK_AUTH",
      "backup-header does not match its authenticated copy in backup-header.hmac",
      {
        hint: "the backup header was altered",
      },
    );
  }

  const header = parse(headerBytes);
  if (header.version !== 4) {
    throw new QbackupError(
      "ERR_HEADER_MALFORMED",
      `backup-header says version ${header.version} but is authenticated the version 4 way (scrypt)`,
    );
  }
  const backupId = header.backupId;
  if (backupId === undefined) throw new QbackupError("ERR_HEADER_MALFORMED", "backup-header: no backup-id");
  const decompression = decompressionFor(header);
  keys.target((name) => chunkPassphrase(backupId, name, options.passphrase));
  const chunks = new SealedChunks(backupId, options.passphrase, keys);

  const xmlMember = await expectMember(reader, chunkMemberName(QUBES_XML_BASE, 0));
  const xmlChunk = chunks.open(reader, xmlMember, { base: QUBES_XML_BASE, index: 0 });
  const manifest = parseQubesXml(await untarQubesXml(xmlChunk, decompression));
  return { header, backupId, decompression, manifest, qubes: includedQubes(manifest), reader, chunks };
}

async function openV3(
  reader: OuterReader,
  headerBytes: Buffer,
  hmac: Buffer,
  parse: (bytes: Buffer) => BackupHeader,
  options: OpenOptions,
): Promise<OpenedBackup> {
  const header = authenticateHeaderV3(headerBytes, hmac, options.passphrase, parse);
  const decompression = decompressionFor(header);
  const chunks = new HmacChunks(header, options.passphrase);
  const xmlChunk = await readQubesXmlChunkV3(reader, chunks);
  const xml = await untarQubesXml(chunks.fileStream(oneBuffer(xmlChunk)), decompression);
  const manifest = parseQubesXmlCore2(xml);
  return { header, backupId: null, decompression, manifest, qubes: includedQubes(manifest), reader, chunks };
}

/**
 * The backup id the header claims before it is authenticated. Used only to start early KDFs;
 * a key derived from a wrong claim is never used (KeyDerivation matches passphrase strings).
 */
function claimedBackupId(headerBytes: Buffer): string | undefined {
  const m = /(?:^|\n)backup-id=([^\n]*)\n/.exec(headerBytes.toString("latin1"));
  return m !== null && isValidBackupId(m[1]!) ? m[1] : undefined;
}

async function expectMember(reader: OuterReader, name: string) {
  const member = await reader.next();
  if (member === null)
    throw new QbackupError("ERR_MISSING", `backup ends before ${name}`, { hint: "is this a Qubes backup?" });
  if (member.name !== name) {
    throw new QbackupError("ERR_TAR_MALFORMED", `expected member ${name}, found ${member.name}`, {
      hint: "a Qubes v4 backup starts with backup-header, backup-header.hmac and qubes.xml.000.enc",
    });
  }
  return member;
}

async function untarQubesXml(stored: AsyncIterable<Buffer>, decompression: Decompression): Promise<Buffer> {
  const tooLarge = () =>
    new QbackupError("ERR_QUBES_XML", `qubes.xml archive expands to more than ${MAX_QUBES_XML_BYTES} bytes`);
  const plain = limitBytes(decompress(stored, decompression, "qubes.xml"), MAX_QUBES_XML_BYTES + 64 * 1024, tooLarge);
  let xml: Buffer | undefined;
  for await (const { entry, data } of readInnerTar(plain)) {
    if (xml !== undefined || entry.path !== QUBES_XML_BASE || entry.type !== "file") {
      throw new QbackupError(
        "ERR_QUBES_XML",
        `qubes.xml archive holds ${JSON.stringify(entry.path)}, expected only qubes.xml`,
      );
    }
    if (entry.size > MAX_QUBES_XML_BYTES) throw tooLarge();
    const content = Buffer.alloc(entry.size);
    for await (const piece of data) piece.bytes.copy(content, piece.offset);
    xml = content;
  }
  if (xml === undefined) throw new QbackupError("ERR_QUBES_XML", "qubes.xml archive is empty");
  return xml;
}

/**
 * The netvm property as the reference reader sees it: an empty element means "no netvm" (null);
 * no element means the host's default, written as "default" (a name no qube can have).
 */
export function netvmOf(d: ParsedDomain): string | null {
  if (d.klass === "AdminVM") return null;
  return "netvm" in d.properties ? (d.properties["netvm"] ?? null) : "default";
}

async function* oneBuffer(b: Buffer): AsyncGenerator<Buffer> {
  yield b;
}

function includedQubes(manifest: ParsedQubesXml): BackupQubeInfo[] {
  const out: BackupQubeInfo[] = [];
  for (const d of manifest.domains) {
    if (!d.included || d.backupPath === undefined) continue;
    const dom0User = d.klass === "AdminVM" ? dom0UserOfBackupPath(d.backupPath) : undefined;
    const netvm = netvmOf(d);
    out.push({
      name: d.name,
      klass: d.klass,
      label: d.label,
      template: d.template,
      netvm,
      backupPath: d.backupPath,
      backupSize: d.backupSize,
      dom0User,
      domain: d,
    });
  }
  return out.sort((a, b) => Number(a.dom0User !== undefined) - Number(b.dom0User !== undefined));
}
