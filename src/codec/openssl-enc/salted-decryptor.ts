/**
 * Streaming decryption of an `openssl enc` salted stream, the per-file encryption of format v3
 * (spec §5.1): "Salted__" ‖ 8-byte salt ‖ ciphertext, key and IV from EVP_BytesToKey(MD5), PKCS#7
 * padding at the very end for CBC. Decrypt side only: v3 is never written (spec §0.1, §5.2).
 * Hand-written framing on node:crypto (no package reads this 16-byte header); the cipher is OpenSSL's.
 *
 * Nothing here authenticates anything: in v3 only the per-chunk HMACs (openssl-dgst) protect the
 * ciphertext, so a caller MUST verify each chunk's HMAC before feeding it here. A wrong passphrase
 * or damaged data shows as a padding error from final() for CBC, but as silent garbage for the
 * stream modes (CTR/CFB/OFB).
 */
import { createDecipheriv } from "node:crypto";
import type { Decipher } from "node:crypto";
import { QbackupError } from "../../errors.js";
import { CIPHER_SIZES } from "../backup-header/allowlists.js";
import type { CipherSizes } from "../backup-header/allowlists.js";
import { evpBytesToKey } from "./evp-bytes-to-key.js";

/** The 8 bytes every salted `openssl enc` stream starts with. */
export const SALTED_MAGIC: Buffer = Buffer.from("Salted__", "latin1");
export const SALT_BYTES = 8;
/** Magic plus salt, before the first ciphertext byte. */
export const SALTED_HEADER_BYTES = SALTED_MAGIC.length + SALT_BYTES;
/** Only CBC carries padding; the other allow-listed modes are stream modes. */
const PADDED_MODE_SUFFIX = "-cbc";
const WHAT = "openssl enc stream";

function hasOwn(record: object, key: string): boolean {
  return Object.prototype.hasOwnProperty.call(record, key);
}

/** Key and IV sizes of an allow-listed cipher (case-insensitive); unknown → ERR_HEADER_UNSUPPORTED. */
export function cipherSizes(cipherName: string): CipherSizes & { name: string } {
  const name = cipherName.toLowerCase();
  const sizes = hasOwn(CIPHER_SIZES, name) ? CIPHER_SIZES[name] : undefined;
  if (sizes === undefined) {
    throw new QbackupError(
      "ERR_HEADER_UNSUPPORTED",
      `crypto-algorithm ${JSON.stringify(cipherName)} is not supported`,
      {
        hint: "supported: aes-128/192/256 in cbc, ctr, cfb or ofb mode",
      },
    );
  }
  return { name, keyBytes: sizes.keyBytes, ivBytes: sizes.ivBytes };
}

/**
 * Decrypts one salted stream fed in pieces of any size (the 16-byte header may arrive split).
 * Memory stays bounded by the largest piece: nothing is accumulated beyond the header.
 */
export class SaltedDecryptor {
  /** Lower-case cipher name, as node:crypto and openssl know it. */
  readonly cipherName: string;
  private readonly sizes: CipherSizes;
  private readonly padded: boolean;
  private passphrase: Buffer;
  private readonly header = Buffer.alloc(SALTED_HEADER_BYTES);
  private headerFill = 0;
  private decipher: Decipher | undefined;
  private done = false;

  constructor(cipherName: string, passphrase: Uint8Array) {
    const c = cipherSizes(cipherName);
    this.cipherName = c.name;
    this.sizes = c;
    this.padded = c.name.endsWith(PADDED_MODE_SUFFIX);
    this.passphrase = Buffer.from(passphrase); // a copy: the caller may wipe theirs
  }

  /** Plaintext for this piece (possibly empty: CBC holds back up to one block until final()). */
  update(piece: Uint8Array): Buffer {
    if (this.done) throw new QbackupError("ERR_INTERNAL", `${WHAT}: update() after final()`);
    let data = Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength);
    if (this.decipher === undefined) {
      const take = Math.min(SALTED_HEADER_BYTES - this.headerFill, data.length);
      data.copy(this.header, this.headerFill, 0, take);
      const before = this.headerFill;
      this.headerFill += take;
      data = data.subarray(take);
      this.checkMagic(before);
      if (this.headerFill < SALTED_HEADER_BYTES) return Buffer.alloc(0);
      this.startDecipher();
    }
    return data.length === 0 ? Buffer.alloc(0) : this.decipher!.update(data);
  }

  /** The last plaintext bytes; checks the header was complete and, for CBC, the padding. */
  final(): Buffer {
    if (this.done) throw new QbackupError("ERR_INTERNAL", `${WHAT}: final() called twice`);
    this.done = true;
    if (this.decipher === undefined) {
      this.wipePassphrase();
      throw new QbackupError(
        "ERR_CHUNK_AUTH",
        `${WHAT}: truncated: ${this.headerFill} bytes, shorter than the ${SALTED_HEADER_BYTES}-byte salt header`,
      );
    }
    try {
      return this.decipher.final();
    } catch (err) {
      // CBC only: "bad decrypt" (padding) or "wrong final block length" (not whole blocks).
      throw new QbackupError(
        "ERR_CHUNK_AUTH",
        `${WHAT}: does not decrypt (${this.padded ? "bad padding or length" : "cipher error"}): wrong passphrase or damaged data`,
        { cause: err },
      );
    }
  }

  /** Refuse as soon as the bytes seen so far differ from "Salted__". */
  private checkMagic(from: number): void {
    const end = Math.min(this.headerFill, SALTED_MAGIC.length);
    for (let i = from; i < end; i++) {
      if (this.header[i] !== SALTED_MAGIC[i]) {
        this.done = true;
        this.wipePassphrase();
        throw new QbackupError(
          "ERR_CHUNK_AUTH",
          `${WHAT}: does not start with "Salted__" (not encrypted with openssl enc, or damaged)`,
        );
      }
    }
  }

  private startDecipher(): void {
    const salt = this.header.subarray(SALTED_MAGIC.length, SALTED_HEADER_BYTES);
    const { key, iv } = evpBytesToKey(this.passphrase, salt, this.sizes.keyBytes, this.sizes.ivBytes);
    this.wipePassphrase();
    this.decipher = createDecipheriv(this.cipherName, key, iv);
    this.decipher.setAutoPadding(this.padded);
    key.fill(0);
    iv.fill(0);
  }

  private wipePassphrase(): void {
    this.passphrase.fill(0);
    this.passphrase = Buffer.alloc(0);
  }
}
