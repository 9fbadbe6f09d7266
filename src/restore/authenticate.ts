/**
 * Authentication: a sealed member becomes plaintext only after its whole container was checked.
 * The scrypt header is read first and its parameters are bounded before the KDF runs (they come
 * from unauthenticated bytes); the ciphertext is MACed while it is read and held, still
 * encrypted, until the final MAC matches; only then is it decrypted, in place, and released.
 */
import {
  CONTAINER_HEADER_SIZE,
  CONTAINER_MAC_SIZE,
  CONTAINER_OVERHEAD,
  ContainerOpener,
} from "../codec/scrypt/index.js";
import type { KdfLimits } from "../codec/scrypt/index.js";
import { QbackupError } from "../errors.js";
import type { OuterMember, OuterReader } from "./outer-reader.js";

const READ_PIECE = 1024 * 1024;

/** A container header read ahead and its key derivation, started before the reader got there. */
export interface PreparedOpener {
  header: Buffer;
  opener: Promise<ContainerOpener>;
}

/**
 * Reads the current member from `reader` and returns its authenticated plaintext. With
 * `prepared`, the KDF already runs: the header read now must be byte-identical to the one it
 * was started from, so a source that changes between the two reads gains nothing.
 */
export async function openSealedMember(
  reader: OuterReader,
  member: OuterMember,
  passphraseString: Buffer,
  limits: KdfLimits,
  prepared?: PreparedOpener,
): Promise<Buffer> {
  if (member.size < CONTAINER_OVERHEAD) {
    throw new QbackupError(
      "ERR_SCRYPT_FORMAT",
      `member ${member.name} is ${member.size} bytes, too short for a scrypt container`,
    );
  }
  try {
    const header = await reader.read(CONTAINER_HEADER_SIZE);
    if (prepared && !prepared.header.equals(header)) {
      throw new QbackupError("ERR_CHUNK_AUTH", `member ${member.name} changed while it was being read`);
    }
    const opener = await (prepared?.opener ?? ContainerOpener.create(header, passphraseString, limits));
    const ciphertext = Buffer.allocUnsafe(member.size - CONTAINER_OVERHEAD);
    for (let filled = 0; filled < ciphertext.length;) {
      const piece = await reader.read(Math.min(READ_PIECE, ciphertext.length - filled));
      opener.authenticate(piece);
      piece.copy(ciphertext, filled);
      filled += piece.length;
    }
    opener.verify(await reader.read(CONTAINER_MAC_SIZE));
    opener.decryptInPlace(ciphertext);
    return ciphertext;
  } catch (err) {
    throw withMemberName(err, member.name);
  }
}

/** `scrypt container: …` → `member vm5/private.img.003.enc: …`, keeping code and hint. Other errors pass. */
export function withMemberName(err: unknown, name: string): unknown {
  if (!(err instanceof QbackupError) || !err.message.startsWith("scrypt container: ")) return err;
  const message = err.message.replace(/^scrypt container: /, "");
  const hint =
    err.hint ??
    (err.code === "ERR_PASSPHRASE_WRONG"
      ? "wrong passphrase, or the member was replaced"
      : err.code === "ERR_CHUNK_AUTH"
        ? "the backup was damaged or altered"
        : undefined);
  return new QbackupError(err.code, `member ${name}: ${message}`, { cause: err, ...(hint ? { hint } : {}) });
}
