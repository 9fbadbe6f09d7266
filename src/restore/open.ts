/**
 * Opening a backup: the first three members, each authenticated before it is parsed.
 *   backup-header        held as bytes, not parsed yet
 *   backup-header.hmac   a scrypt container of the header ("backup-header!P"): decrypts to
 *                        exactly the header bytes, or the backup is refused
 *   (now the header is parsed, with the reference reader's rules and filter allowlist)
 *   qubes.xml.000.enc    authenticated, decompressed (bounded), untarred (one member), parsed
 * After this, the reader stands at the first data member.
 *
 * From a seekable backup, the KDF of qubes.xml.000.enc (and, for a restore, of the first data
 * chunks) runs while the header's own KDF does: its passphrase string needs the backup id, taken
 * for that purpose only from the header bytes before they are authenticated (a wrong guess just
 * wastes the KDF: the authenticated id is compared before any key is used).
 */
import { MAX_BACKUP_HEADER_BYTES, isValidBackupId, parseBackupHeader } from "../codec/backup-header/index.js";
import type { BackupHeader } from "../codec/backup-header/index.js";
import { MAX_QUBES_XML_BYTES, dom0UserOfBackupPath, parseQubesXml } from "../codec/qubes-xml/index.js";
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
  chunkPassphraseString,
  headerPassphraseString,
  parseChunkMemberName,
} from "../format/names.js";
import { findProgram } from "../runtime/filters.js";
import { limitBytes } from "../runtime/streams.js";
import type { ByteSource } from "../transport/source.js";
import { openSealedMember, withMemberName } from "./authenticate.js";
import { decompress, decompressionFor } from "./decompress.js";
import type { Decompression } from "./decompress.js";
import { KeyDerivation } from "./kdf-ahead.js";
import { OuterReader } from "./outer-reader.js";

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
  backupId: string;
  decompression: Decompression;
  manifest: ParsedQubesXml;
  /** Included qubes, in manifest order; dom0 (if its home is included) last. */
  qubes: BackupQubeInfo[];
  reader: OuterReader;
  /** Key derivation for the members that follow, with the limit and look-ahead of this backup. */
  keys: KeyDerivation;
}

export async function openBackup(source: ByteSource, options: OpenOptions): Promise<OpenedBackup> {
  const maxChunk = (options.maxChunkSize ?? MAX_CHUNK_SIZE) + CONTAINER_OVERHEAD;
  const reader = new OuterReader(source, (name) =>
    name === BACKUP_HEADER_NAME || name.endsWith(".hmac")
      ? MAX_HMAC_MEMBER
      : name === chunkMemberName(QUBES_XML_BASE, 0)
        ? MAX_QUBES_XML_MEMBER
        : name.endsWith(ENC_SUFFIX)
          ? maxChunk
          : MAX_HMAC_MEMBER,
  );

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
  const keys = new KeyDerivation(reader, options.kdfLimits, options.jobs ?? 1, options.lookAhead ?? 1);
  if (!hmac.subarray(0, 6).equals(Buffer.from("scrypt"))) {
    throw new QbackupError(
      "ERR_HEADER_UNSUPPORTED",
      "backup-header.hmac is not a scrypt container: this is a format v3 or v2 backup",
      {
        hint: "qbackup reads format v4 (Qubes R4.x) backups; v3/v2 support is planned",
      },
    );
  }
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

  const header = parseBackupHeader(headerBytes, {
    ...(options.forcedCompressionFilter === undefined
      ? {}
      : { forcedCompressionFilter: options.forcedCompressionFilter }),
    isFilterInstalled: (name) => findProgram(name) !== undefined,
  });
  if (header.version !== 4) {
    throw new QbackupError("ERR_HEADER_UNSUPPORTED", `backup format version ${header.version} is not supported here`, {
      hint:
        header.version === 1
          ? "format v1 backups are plain directories"
          : "qbackup reads format v4 (Qubes R4.x) backups",
    });
  }
  const backupId = header.backupId;
  if (backupId === undefined) throw new QbackupError("ERR_HEADER_MALFORMED", "backup-header: no backup-id");
  const decompression = decompressionFor(header);

  const xmlName = chunkMemberName(QUBES_XML_BASE, 0);
  const xmlMember = await expectMember(reader, xmlName);
  keys.target((name) => chunkPassphrase(backupId, name, options.passphrase));
  const xmlChunk = await openSealedMember(
    reader,
    xmlMember,
    chunkPassphraseString(backupId, QUBES_XML_BASE, 0, options.passphrase),
    keys,
  );
  const manifest = parseQubesXml(await untarQubesXml(xmlChunk, decompression));
  return { header, backupId, decompression, manifest, qubes: includedQubes(manifest), reader, keys };
}

/** The passphrase string of a chunk member of backup `backupId`; undefined for other members. */
export function chunkPassphrase(backupId: string, memberName: string, passphrase: string): Buffer | undefined {
  if (!memberName.endsWith(ENC_SUFFIX)) return undefined;
  try {
    const { base, index } = parseChunkMemberName(memberName);
    return chunkPassphraseString(backupId, base, index, passphrase);
  } catch {
    return undefined; // not a chunk name: the reader reports it when it gets there
  }
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
    throw new QbackupError("ERR_TAR_MALFORMED", `backup ends before ${name}`, { hint: "is this a Qubes backup?" });
  if (member.name !== name) {
    throw new QbackupError("ERR_TAR_MALFORMED", `expected member ${name}, found ${member.name}`, {
      hint: "a Qubes v4 backup starts with backup-header, backup-header.hmac and qubes.xml.000.enc",
    });
  }
  return member;
}

async function untarQubesXml(chunk: Buffer, decompression: Decompression): Promise<Buffer> {
  const tooLarge = () =>
    new QbackupError("ERR_QUBES_XML", `qubes.xml archive expands to more than ${MAX_QUBES_XML_BYTES} bytes`);
  const plain = limitBytes(
    decompress(oneBuffer(chunk), decompression, "qubes.xml"),
    MAX_QUBES_XML_BYTES + 64 * 1024,
    tooLarge,
  );
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
