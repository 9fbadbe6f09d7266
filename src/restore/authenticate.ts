/**
 * Authentication: a sealed member becomes plaintext only after its whole container was checked.
 * The scrypt header is read first and its parameters are bounded before the KDF runs (they come
 * from unauthenticated bytes); the ciphertext is MACed while it is read and held, still
 * encrypted, until the final MAC matches; only then is it decrypted, in place, and released.
 */
import { CONTAINER_HEADER_SIZE, CONTAINER_MAC_SIZE, CONTAINER_OVERHEAD } from "../codec/scrypt/index.js";
import { QbackupError } from "../errors.js";
import type { KeyDerivation } from "./kdf-ahead.js";
import type { OuterMember, OuterReader } from "./outer-reader.js";

const READ_PIECE = 1024 * 1024;

/**
 * Reads the current member from `reader` and returns its authenticated plaintext. The key comes
 * from `keys`: derived now, or earlier from a look-ahead read of the very same header bytes.
 */
export async function openSealedMember(
  reader: OuterReader,
  member: OuterMember,
  passphraseString: Buffer,
  keys: KeyDerivation,
): Promise<Buffer> {
  if (member.size < CONTAINER_OVERHEAD) {
    throw new QbackupError(
      "ERR_SCRYPT_FORMAT",
      `member ${member.name} is ${member.size} bytes, too short for a scrypt container`,
    );
  }
  try {
    const header = await reader.read(CONTAINER_HEADER_SIZE);
    const opener = await keys.opener(member.name, header, passphraseString);
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
