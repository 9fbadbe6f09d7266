/**
 * Authentication: a sealed member becomes plaintext only after its whole container was checked.
 * The scrypt header is read first and its parameters are bounded before the KDF runs (they come
 * from unauthenticated bytes); then the ciphertext is MACed as it is read, and nothing of it is
 * released before the final MAC matches. Two ways to hold it meanwhile:
 *   - from a stream, the ciphertext is kept (still encrypted) and decrypted in place at the end;
 *   - from a file, nothing is kept: the first pass records a tag of every 1 MiB piece, and once
 *     the MAC matched, a second pass reads each piece again by position, requires the same tag (a
 *     source that changes between the passes gains nothing), decrypts and releases it. Memory
 *     then does not grow with the chunk size.
 */
import { createCipheriv, randomBytes, timingSafeEqual } from "node:crypto";
import { CONTAINER_HEADER_SIZE, CONTAINER_MAC_SIZE, CONTAINER_OVERHEAD } from "../codec/scrypt/index.js";
import { QbackupError } from "../errors.js";
import type { ContainerOpener } from "../codec/scrypt/index.js";
import { changedWhileRead } from "./kdf-ahead.js";
import type { KeyDerivation } from "./kdf-ahead.js";
import type { OuterMember, OuterReader } from "./outer-reader.js";

const READ_PIECE = 1024 * 1024;

/**
 * The first (from a stream, the only) pass over the current member: its header, the key (derived
 * now, or earlier from a look-ahead read of the very same header bytes), every ciphertext piece
 * MACed and shown to `onPiece`, then the final MAC checked. Returns the verified opener. With
 * `into`, the pieces are read by position into it (each valid only during its onPiece).
 */
async function authenticateMember(
  reader: OuterReader,
  member: OuterMember,
  passphraseString: Buffer,
  keys: KeyDerivation,
  onPiece: (piece: Buffer, offset: number) => void,
  into?: Buffer,
): Promise<ContainerOpener> {
  if (member.size < CONTAINER_OVERHEAD) {
    throw new QbackupError(
      "ERR_SCRYPT_FORMAT",
      `member ${member.name} is ${member.size} bytes, too short for a scrypt container`,
    );
  }
  try {
    const header = await reader.read(CONTAINER_HEADER_SIZE);
    const opener = await keys.opener(member.name, header, passphraseString);
    const ciphertextBytes = member.size - CONTAINER_OVERHEAD;
    for (let done = 0; done < ciphertextBytes;) {
      const length = Math.min(READ_PIECE, ciphertextBytes - done);
      const piece = into
        ? await reader.reread(member, CONTAINER_HEADER_SIZE + done, length, into)
        : await reader.read(length);
      opener.authenticate(piece);
      onPiece(piece, done);
      done += piece.length;
    }
    if (into) await reader.skip(ciphertextBytes);
    opener.verify(await reader.read(CONTAINER_MAC_SIZE));
    return opener;
  } catch (err) {
    throw withMemberName(err, member.name);
  }
}

/** Reads the current member from `reader` and returns its authenticated plaintext in one buffer. */
export async function openSealedMember(
  reader: OuterReader,
  member: OuterMember,
  passphraseString: Buffer,
  keys: KeyDerivation,
): Promise<Buffer> {
  const ciphertext = Buffer.allocUnsafe(Math.max(0, member.size - CONTAINER_OVERHEAD));
  const opener = await authenticateMember(reader, member, passphraseString, keys, (piece, offset) =>
    piece.copy(ciphertext, offset),
  );
  opener.decryptInPlace(ciphertext);
  return ciphertext;
}

/**
 * The authenticated plaintext of the current member, in pieces of at most 1 MiB: two passes when
 * the source can be read again by position (see the top of this file), otherwise one buffer.
 */
export async function* openSealedMemberPieces(
  reader: OuterReader,
  member: OuterMember,
  passphraseString: Buffer,
  keys: KeyDerivation,
): AsyncGenerator<Buffer> {
  if (!reader.rereadable) {
    yield await openSealedMember(reader, member, passphraseString, keys);
    return;
  }
  // both passes read into one buffer: each piece is done with before the next is read
  const buffer = Buffer.allocUnsafe(READ_PIECE);
  const tags = new PieceTags();
  const opener = await authenticateMember(
    reader,
    member,
    passphraseString,
    keys,
    (piece) => tags.record(piece),
    buffer,
  );
  const end = member.size - CONTAINER_MAC_SIZE;
  for (let i = 0, offset = CONTAINER_HEADER_SIZE; offset < end; i++) {
    const piece = await reader.reread(member, offset, Math.min(READ_PIECE, end - offset), buffer);
    if (!tags.matches(i, piece)) throw changedWhileRead(member.name);
    offset += piece.length;
    yield opener.decrypt(piece);
  }
}

/**
 * What the second pass checks each piece against: GMAC under a key of our own, drawn for this
 * member, with the piece's number as nonce. The storage never sees the key or a tag, so a piece
 * it changes between the passes keeps its tag with a probability of at most 2^-112 (GHASH over
 * 1 MiB is that close to universal); a tag costs a third of a SHA-256 digest here (0.15 against
 * 0.43 s per 600 MiB, twice per byte restored).
 */
class PieceTags {
  private readonly key = randomBytes(32);
  private readonly tags: Buffer[] = [];

  record(piece: Uint8Array): void {
    this.tags.push(this.tag(this.tags.length, piece));
  }

  /** Whether `piece` is, byte for byte, piece number `index` as recorded. */
  matches(index: number, piece: Uint8Array): boolean {
    const recorded = this.tags[index];
    return recorded !== undefined && timingSafeEqual(this.tag(index, piece), recorded);
  }

  private tag(index: number, piece: Uint8Array): Buffer {
    const nonce = Buffer.alloc(12);
    nonce.writeUInt32BE(index, 8);
    const gmac = createCipheriv("aes-256-gcm", this.key, nonce);
    gmac.setAAD(piece);
    gmac.final();
    return gmac.getAuthTag();
  }
}

/**
 * `scrypt container: …` → `member vm5/private.img.003.enc: …`, keeping code and hint. Other errors pass.
 * Every member's passphrase is `backup-id!name!passphrase`, and the header proved the passphrase right
 * first; so a member whose key does not open it was replaced, moved or taken from another backup.
 */
export function withMemberName(err: unknown, name: string): unknown {
  if (!(err instanceof QbackupError) || !err.message.startsWith("scrypt container: ")) return err;
  if (err.code === "ERR_PASSPHRASE_WRONG") {
    return new QbackupError(
      "ERR_CHUNK_AUTH",
      `member ${name}: its key does not open it: it was replaced, moved or taken from another backup`,
      { cause: err, hint: "the backup was altered" },
    );
  }
  const message = err.message.replace(/^scrypt container: /, "");
  const hint = err.hint ?? (err.code === "ERR_CHUNK_AUTH" ? "the backup was damaged or altered" : undefined);
  return new QbackupError(err.code, `member ${name}: ${message}`, { cause: err, ...(hint ? { hint } : {}) });
}
