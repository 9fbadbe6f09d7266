/**
 * The Tarsnap `scrypt enc` file container, format version 0 (spec §4.6): header encode/parse, a streaming
 * sealer and a streaming opener that releases no plaintext before the final MAC is verified.
 * Hand-written on node:crypto because no maintained npm package implements this container.
 *
 * Layout: "scrypt" | 0x00 | logN | r (u32be) | p (u32be) | salt[32] | SHA-256(0..47)[0..15]
 *         | HMAC(K_mac, 0..63) | AES-256-CTR(K_enc, iv 0) ciphertext | HMAC(K_mac, 0..95+n)
 */

import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { Cipher, Decipher, Hmac } from "node:crypto";
import { QbackupError } from "../../errors.js";
import {
  DEFAULT_KDF_LIMITS,
  ENC_KEY_SIZE,
  MAC_KEY_SIZE,
  checkKdfLimits,
  deriveKeys,
  validateScryptParams,
} from "./params.js";
import type { ContainerKeys, KdfLimits, ScryptParams } from "./params.js";

export const CONTAINER_MAGIC = Buffer.from("scrypt", "latin1");
export const CONTAINER_FORMAT_VERSION = 0;
export const SALT_SIZE = 32;
export const HEADER_CHECKSUM_SIZE = 16;
export const HEADER_SIGNATURE_SIZE = 32;
/** Bytes 0..63: magic, version, parameters, salt, checksum (everything before the signature). */
export const CONTAINER_HEADER_PREFIX_SIZE = 64;
/** Bytes 0..95: the prefix plus the header signature. */
export const CONTAINER_HEADER_SIZE = 96;
export const CONTAINER_MAC_SIZE = 32;
export const CONTAINER_OVERHEAD = CONTAINER_HEADER_SIZE + CONTAINER_MAC_SIZE;

// Field offsets inside the header.
const OFF_VERSION = 6;
const OFF_LOG_N = 7;
const OFF_R = 8;
const OFF_P = 12;
const OFF_SALT = 16;
const OFF_CHECKSUM = OFF_SALT + SALT_SIZE; // 48
const OFF_SIGNATURE = CONTAINER_HEADER_PREFIX_SIZE; // 64

const CIPHER = "aes-256-ctr";
const CTR_IV = Buffer.alloc(16); // 128-bit big-endian counter starting at zero
const MAC_ALGORITHM = "sha256";
/** updateInPlace/decryptInPlace work through the buffer in slices of this size to bound extra memory. */
const IN_PLACE_SLICE_BYTES = 64 * 1024;

export interface ContainerHeaderInfo {
  params: ScryptParams;
  salt: Buffer;
}

function headerChecksum(first48: Uint8Array): Buffer {
  return createHash("sha256").update(first48).digest().subarray(0, HEADER_CHECKSUM_SIZE);
}

function internal(message: string): QbackupError {
  return new QbackupError("ERR_INTERNAL", `scrypt container: ${message}`);
}

function checkKeys(keys: ContainerKeys): void {
  if (keys.encKey.length !== ENC_KEY_SIZE || keys.macKey.length !== MAC_KEY_SIZE) {
    throw internal(`keys must be ${ENC_KEY_SIZE} + ${MAC_KEY_SIZE} bytes`);
  }
}

/** Bytes 0..63 of a container: magic, version, parameters, salt and checksum. */
export function encodeContainerHeaderPrefix(params: ScryptParams, salt: Uint8Array): Buffer {
  validateScryptParams(params);
  if (salt.length !== SALT_SIZE) throw internal(`salt must be ${SALT_SIZE} bytes, got ${salt.length}`);
  const out = Buffer.alloc(CONTAINER_HEADER_PREFIX_SIZE);
  CONTAINER_MAGIC.copy(out, 0);
  out[OFF_VERSION] = CONTAINER_FORMAT_VERSION;
  out[OFF_LOG_N] = params.logN;
  out.writeUInt32BE(params.r, OFF_R);
  out.writeUInt32BE(params.p, OFF_P);
  out.set(salt, OFF_SALT);
  headerChecksum(out.subarray(0, OFF_CHECKSUM)).copy(out, OFF_CHECKSUM);
  return out;
}

/**
 * Parse and check the first 64 bytes, in the order of `scrypt dec`: magic, version 0, checksum,
 * then parameter sanity (1≤logN≤63, r,p≠0, r·p<2^30). Does not apply resource limits.
 */
export function parseContainerHeader(first64: Uint8Array): ContainerHeaderInfo {
  const b = Buffer.from(first64.buffer, first64.byteOffset, first64.byteLength);
  if (b.length < CONTAINER_HEADER_PREFIX_SIZE) {
    throw new QbackupError(
      "ERR_SCRYPT_FORMAT",
      `scrypt container: header needs ${CONTAINER_HEADER_PREFIX_SIZE} bytes, got ${b.length}`,
    );
  }
  if (!b.subarray(0, CONTAINER_MAGIC.length).equals(CONTAINER_MAGIC)) {
    throw new QbackupError("ERR_SCRYPT_FORMAT", "scrypt container: bad magic (not a scrypt-encrypted file)");
  }
  if (b[OFF_VERSION] !== CONTAINER_FORMAT_VERSION) {
    throw new QbackupError("ERR_SCRYPT_FORMAT", `scrypt container: unsupported format version ${b[OFF_VERSION]}`);
  }
  const expected = headerChecksum(b.subarray(0, OFF_CHECKSUM));
  if (!timingSafeEqual(expected, b.subarray(OFF_CHECKSUM, OFF_CHECKSUM + HEADER_CHECKSUM_SIZE))) {
    throw new QbackupError("ERR_SCRYPT_HEADER_CHECKSUM", "scrypt container: header checksum mismatch");
  }
  const params: ScryptParams = {
    logN: b[OFF_LOG_N] as number,
    r: b.readUInt32BE(OFF_R),
    p: b.readUInt32BE(OFF_P),
  };
  validateScryptParams(params);
  return { params, salt: Buffer.from(b.subarray(OFF_SALT, OFF_SALT + SALT_SIZE)) };
}

/** Encrypt (or decrypt: CTR is symmetric) `buf` in place, slice by slice. */
function ctrInPlace(c: Cipher | Decipher, buf: Uint8Array): void {
  for (let off = 0; off < buf.length; off += IN_PLACE_SLICE_BYTES) {
    const slice = buf.subarray(off, Math.min(off + IN_PLACE_SLICE_BYTES, buf.length));
    const out = c.update(slice);
    if (out.length !== slice.length) throw internal("ctr cipher returned an unexpected length");
    slice.set(out);
  }
}

type SealerState = "new" | "body" | "done";

/** Streaming sealer: header(), then update() any number of times, then final(). */
export class ContainerSealer {
  readonly params: ScryptParams;
  readonly salt: Buffer;
  readonly #keys: ContainerKeys;
  readonly #cipher: Cipher;
  readonly #mac: Hmac;
  #state: SealerState = "new";

  private constructor(keys: ContainerKeys, params: ScryptParams, salt: Uint8Array) {
    validateScryptParams(params);
    checkKeys(keys);
    if (salt.length !== SALT_SIZE) throw internal(`salt must be ${SALT_SIZE} bytes, got ${salt.length}`);
    this.params = { logN: params.logN, r: params.r, p: params.p };
    this.salt = Buffer.from(salt);
    this.#keys = keys;
    this.#cipher = createCipheriv(CIPHER, keys.encKey, CTR_IV);
    this.#mac = createHmac(MAC_ALGORITHM, keys.macKey);
  }

  /** Derive keys from the passphrase (random salt by default) and return a sealer. */
  static async create(passphrase: Uint8Array, params: ScryptParams, salt?: Uint8Array): Promise<ContainerSealer> {
    validateScryptParams(params);
    const s = salt ?? randomBytes(SALT_SIZE);
    if (s.length !== SALT_SIZE) throw internal(`salt must be ${SALT_SIZE} bytes, got ${s.length}`);
    const keys = await deriveKeys(passphrase, s, params);
    return new ContainerSealer(keys, params, s);
  }

  /** Create from keys derived earlier (lets a pipeline run the KDF ahead of time). */
  static fromKeys(keys: ContainerKeys, params: ScryptParams, salt: Uint8Array): ContainerSealer {
    return new ContainerSealer(keys, params, salt);
  }

  /** The 96 header bytes; must be called first, exactly once. */
  header(): Buffer {
    if (this.#state !== "new") throw internal("header() must be called first and only once");
    const prefix = encodeContainerHeaderPrefix(this.params, this.salt);
    const signature = createHmac(MAC_ALGORITHM, this.#keys.macKey).update(prefix).digest();
    const header = Buffer.concat([prefix, signature]);
    this.#mac.update(header);
    this.#state = "body";
    return header;
  }

  /** Ciphertext of the same length as `plain`. */
  update(plain: Uint8Array): Buffer {
    if (this.#state !== "body") throw internal("update() is only allowed between header() and final()");
    const ct = this.#cipher.update(plain);
    this.#mac.update(ct);
    return ct;
  }

  /** Encrypt `buf` in place (saves a copy of a large chunk). */
  updateInPlace(buf: Uint8Array): void {
    if (this.#state !== "body") throw internal("updateInPlace() is only allowed between header() and final()");
    ctrInPlace(this.#cipher, buf);
    this.#mac.update(buf);
  }

  /** The 32-byte MAC over header and ciphertext; ends the container. */
  final(): Buffer {
    if (this.#state !== "body") throw internal("final() is only allowed once, after header()");
    this.#cipher.final();
    this.#state = "done";
    return this.#mac.digest();
  }
}

/** One-shot seal: header ‖ ciphertext ‖ MAC (plain.length + 128 bytes). */
export async function seal(
  plain: Uint8Array,
  passphrase: Uint8Array,
  params: ScryptParams,
  salt?: Uint8Array,
): Promise<Buffer> {
  const sealer = await ContainerSealer.create(passphrase, params, salt);
  const out = Buffer.allocUnsafe(plain.length + CONTAINER_OVERHEAD);
  sealer.header().copy(out, 0);
  const body = out.subarray(CONTAINER_HEADER_SIZE, CONTAINER_HEADER_SIZE + plain.length);
  body.set(plain);
  sealer.updateInPlace(body);
  sealer.final().copy(out, CONTAINER_HEADER_SIZE + plain.length);
  return out;
}

type OpenerState = "authenticating" | "verified" | "failed";

/**
 * Streaming opener. Releases NO plaintext before the final MAC verified: feed all ciphertext to
 * authenticate(), then verify() the trailing MAC, then decrypt() the same ciphertext again, in order.
 */
export class ContainerOpener {
  readonly params: ScryptParams;
  readonly salt: Buffer;
  readonly #encKey: Buffer;
  readonly #mac: Hmac;
  #decipher: Decipher | undefined;
  #state: OpenerState = "authenticating";
  #authenticated = 0;
  #decrypted = 0;

  private constructor(info: ContainerHeaderInfo, keys: ContainerKeys, header96: Uint8Array) {
    this.params = info.params;
    this.salt = info.salt;
    this.#encKey = keys.encKey;
    this.#mac = createHmac(MAC_ALGORITHM, keys.macKey).update(header96);
  }

  /** Parses the 96-byte header, checks limits BEFORE the KDF, runs the KDF, checks the header signature. */
  static async create(
    header96: Uint8Array,
    passphrase: Uint8Array,
    limits: KdfLimits = DEFAULT_KDF_LIMITS,
  ): Promise<ContainerOpener> {
    if (header96.length > CONTAINER_HEADER_SIZE) {
      throw internal(`opener takes exactly the ${CONTAINER_HEADER_SIZE} header bytes, got ${header96.length}`);
    }
    const info = parseContainerHeader(header96);
    if (header96.length < CONTAINER_HEADER_SIZE) {
      throw new QbackupError(
        "ERR_SCRYPT_FORMAT",
        `scrypt container: header needs ${CONTAINER_HEADER_SIZE} bytes, got ${header96.length}`,
      );
    }
    checkKdfLimits(info.params, limits);
    const keys = await deriveKeys(passphrase, info.salt, info.params);
    const header = Buffer.from(header96); // own copy: the caller may reuse its buffer
    const expected = createHmac(MAC_ALGORITHM, keys.macKey).update(header.subarray(0, OFF_SIGNATURE)).digest();
    if (!timingSafeEqual(expected, header.subarray(OFF_SIGNATURE, OFF_SIGNATURE + HEADER_SIGNATURE_SIZE))) {
      throw new QbackupError("ERR_PASSPHRASE_WRONG", "scrypt container: passphrase is incorrect");
    }
    return new ContainerOpener(info, keys, header);
  }

  /** Bytes fed to authenticate() so far. */
  get authenticatedBytes(): number {
    return this.#authenticated;
  }

  /** True once verify() succeeded. */
  get verified(): boolean {
    return this.#state === "verified";
  }

  /** Feed all ciphertext, in order, before verify(). */
  authenticate(ciphertext: Uint8Array): void {
    if (this.#state !== "authenticating") throw internal("authenticate() is only allowed before verify()");
    this.#mac.update(ciphertext);
    this.#authenticated += ciphertext.length;
  }

  /** Compare the trailing 32-byte MAC; throws ERR_CHUNK_AUTH. After success decrypt() is allowed. */
  verify(mac32: Uint8Array): void {
    if (this.#state !== "authenticating") throw internal("verify() is only allowed once");
    this.#state = "failed";
    const expected = this.#mac.digest();
    if (mac32.length !== CONTAINER_MAC_SIZE || !timingSafeEqual(expected, mac32)) {
      throw new QbackupError("ERR_CHUNK_AUTH", "scrypt container: authentication failed (data corrupted or altered)");
    }
    this.#decipher = createDecipheriv(CIPHER, this.#encKey, CTR_IV);
    this.#state = "verified";
  }

  #checkDecrypt(n: number): Decipher {
    if (this.#state !== "verified" || this.#decipher === undefined) {
      throw internal("decrypt() before the container was verified");
    }
    if (this.#decrypted + n > this.#authenticated) {
      throw internal("decrypt() got more bytes than were authenticated");
    }
    this.#decrypted += n;
    return this.#decipher;
  }

  /**
   * Plaintext of the next ciphertext piece; the pieces must be the authenticated ciphertext again,
   * in order (the CTR position advances).
   */
  decrypt(ciphertext: Uint8Array): Buffer {
    return this.#checkDecrypt(ciphertext.length).update(ciphertext);
  }

  /** Like decrypt(), but overwrites `buf` with its plaintext. */
  decryptInPlace(buf: Uint8Array): void {
    ctrInPlace(this.#checkDecrypt(buf.length), buf);
  }
}

/**
 * One-shot open of a whole container. Order: length ≥ 128, magic, version, checksum, params, limits,
 * KDF, signature, final MAC, then decryption.
 */
export async function open(
  container: Uint8Array,
  passphrase: Uint8Array,
  limits: KdfLimits = DEFAULT_KDF_LIMITS,
): Promise<Buffer> {
  if (container.length < CONTAINER_OVERHEAD) {
    throw new QbackupError(
      "ERR_SCRYPT_FORMAT",
      `scrypt container: ${container.length} bytes is shorter than the minimum ${CONTAINER_OVERHEAD}`,
    );
  }
  const macAt = container.length - CONTAINER_MAC_SIZE;
  const opener = await ContainerOpener.create(container.subarray(0, CONTAINER_HEADER_SIZE), passphrase, limits);
  const ciphertext = container.subarray(CONTAINER_HEADER_SIZE, macAt);
  opener.authenticate(ciphertext);
  opener.verify(container.subarray(macAt));
  return opener.decrypt(ciphertext);
}
