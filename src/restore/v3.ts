/**
 * Reading format v3 backups (Qubes R2 final … R3.2, spec §5.1) with the same rule as v4: nothing
 * is decrypted, decompressed or parsed before it is authenticated.
 *
 *   backup-header          held as bytes
 *   backup-header.hmac     `openssl dgst` output: HMAC of the header keyed with the passphrase;
 *                          the digest is not known yet, so the allow-listed ones whose length
 *                          fits are tried (spec §3.7); then the header is parsed
 *   qubes.xml.000 + .hmac  authenticated, decrypted, decompressed, untarred, parsed (R3 core2)
 *   <file>.NNN + .hmac     each chunk is held until the HMAC member after it matches; the chunks
 *                          of a file are the pieces of one `openssl enc` stream (one salt, CBC
 *                          running across chunk boundaries), decrypted as they are released
 *
 * v3's HMAC is keyed with the raw passphrase (no KDF, spec §5.2): fine for reading old backups;
 * qbackup never writes v3. Nothing here runs openssl, so the passphrase is on no command line.
 */
import type { BackupHeader } from "../codec/backup-header/index.js";
import { HmacVerifier, headerHmacCandidates, parseDgstOutput } from "../codec/openssl-dgst/index.js";
import { SaltedDecryptor } from "../codec/openssl-enc/index.js";
import { QbackupError } from "../errors.js";
import { BACKUP_HEADER_HMAC_NAME, QUBES_XML_BASE, chunkPath, parseChunkName } from "../format/names.js";
import type { ChunkId, StoredChunks } from "./chunks.js";
import type { OuterMember, OuterReader } from "./outer-reader.js";

export const HMAC_SUFFIX = ".hmac";
const READ_PIECE = 1024 * 1024;

/** Authenticates the header with the digest its `.hmac` line implies, then parses it. */
export function authenticateHeaderV3(
  headerBytes: Buffer,
  hmacBytes: Buffer,
  passphrase: string,
  parse: (bytes: Buffer) => BackupHeader,
): BackupHeader {
  const expected = parseDgstOutput(hmacBytes);
  const key = Buffer.from(passphrase, "utf8");
  const digest = headerHmacCandidates(expected.length * 2).find((alg) => {
    try {
      new HmacVerifier(alg, key).update(headerBytes).verify(expected);
      return true;
    } catch {
      return false;
    }
  });
  if (digest === undefined) {
    throw new QbackupError("ERR_PASSPHRASE_WRONG", `${BACKUP_HEADER_HMAC_NAME} does not verify: wrong passphrase`, {
      hint: "or the backup header was altered",
    });
  }
  if (!/(?:^|\n)version=/.test(headerBytes.toString("latin1"))) {
    throw new QbackupError(
      "ERR_HEADER_UNSUPPORTED",
      "this is a format v2 backup (Qubes R2 beta/rc): qbackup does not read v2",
      {
        hint: "v2 stores each file as a GNU multi-volume tar whose 100 MB volumes are each encrypted (with openssl's -z zlib compression) on their own; qbackup has neither a multi-volume tar reader nor -z; by hand: verify each .hmac, `openssl enc -d -z -md md5` each volume, then `tar -xM` them in order",
      },
    );
  }
  const header = parse(headerBytes);
  if (header.version !== 3) throw new QbackupError("ERR_INTERNAL", `v3 reader got a version ${header.version} header`);
  if (header.hmacAlgorithm?.toLowerCase() !== digest) {
    throw new QbackupError(
      "ERR_HEADER_MALFORMED",
      `backup-header names hmac-algorithm ${header.hmacAlgorithm ?? "(none)"} but is authenticated with ${digest}`,
    );
  }
  return header;
}

/** Format v3 chunks: `<file>.NNN`, each followed by its `.hmac`, pieces of one `openssl enc` stream per file. */
export class HmacChunks implements StoredChunks {
  private readonly key: Buffer;

  constructor(
    private readonly header: BackupHeader,
    private readonly passphrase: string,
  ) {
    this.key = Buffer.from(passphrase, "utf8");
  }

  chunkOf(memberName: string): ChunkId {
    return parseV3ChunkName(memberName);
  }

  memberName(base: string, index: number): string {
    return chunkPath(base, index);
  }

  async *open(reader: OuterReader, member: OuterMember): AsyncGenerator<Buffer> {
    yield await this.openWhole(reader, member);
  }

  /** The chunk held in memory until the `.hmac` after it matches (v3 chunks are at most 100 MiB). */
  async openWhole(reader: OuterReader, member: OuterMember): Promise<Buffer> {
    const mac = new HmacVerifier(this.header.hmacAlgorithm ?? "", this.key);
    const bytes = Buffer.allocUnsafe(member.size);
    for (let filled = 0; filled < bytes.length;) {
      const piece = await reader.read(Math.min(READ_PIECE, bytes.length - filled));
      mac.update(piece);
      piece.copy(bytes, filled);
      filled += piece.length;
    }
    const hmacMember = await expectHmacOf(reader, member);
    mac.verify(parseDgstOutput(await reader.read(hmacMember.size)), `member ${member.name}`);
    return bytes;
  }

  async skip(reader: OuterReader, member: OuterMember): Promise<void> {
    await reader.skipRest();
    await expectHmacOf(reader, member);
    await reader.skipRest();
  }

  fileStream(chunks: AsyncIterable<Buffer>): AsyncIterable<Buffer> {
    return this.header.encrypted ? decrypt(chunks, this.header.cryptoAlgorithm ?? "", this.passphrase) : chunks;
  }

  lookAhead(): void {
    // no KDF to start early: an HMAC is checked at the speed the chunk is read
  }

  async fill(): Promise<void> {}
}

/** `vm5/private.img.003` → base `vm5/private.img`, index 3; a template's `vm1/..000` → `vm1/.`, 0. */
export function parseV3ChunkName(name: string): ChunkId {
  return parseChunkName(name, "", "v3");
}

/** Reads qubes.xml.000 and its .hmac: the authenticated (still encrypted, compressed) chunk. */
export async function readQubesXmlChunkV3(reader: OuterReader, chunks: HmacChunks): Promise<Buffer> {
  const name = chunkPath(QUBES_XML_BASE, 0);
  const member = await reader.next();
  if (member?.name !== name) {
    throw new QbackupError("ERR_TAR_MALFORMED", `expected member ${name}, found ${member?.name ?? "the end"}`, {
      hint: "a Qubes v3 backup starts with backup-header, backup-header.hmac and qubes.xml.000",
    });
  }
  return chunks.openWhole(reader, member);
}

async function expectHmacOf(reader: OuterReader, member: OuterMember): Promise<OuterMember> {
  const want = member.name + HMAC_SUFFIX;
  const next = await reader.next();
  if (next?.name !== want) {
    throw new QbackupError(
      "ERR_CHUNK_AUTH",
      `member ${member.name} is not followed by ${want} (found ${next?.name ?? "the end"})`,
      {
        hint: "every v3 chunk must be followed directly by its .hmac",
      },
    );
  }
  return next;
}

async function* decrypt(chunks: AsyncIterable<Buffer>, cipher: string, passphrase: string): AsyncGenerator<Buffer> {
  const decryptor = new SaltedDecryptor(cipher, Buffer.from(passphrase, "utf8"));
  for await (const chunk of chunks) {
    const plain = decryptor.update(chunk);
    if (plain.length > 0) yield plain;
  }
  const last = decryptor.final();
  if (last.length > 0) yield last;
}
