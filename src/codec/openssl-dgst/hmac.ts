/**
 * HMAC of v2/v3 chunks and headers, keyed with the raw passphrase bytes exactly as `openssl dgst
 * -<alg> -hmac <passphrase>` does (spec §5.1, §5.2), checked in constant time. The digest names a
 * v3 header may carry are allow-listed (spec §3.6); node:crypto does the hashing.
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import type { Hmac } from "node:crypto";
import { QbackupError } from "../../errors.js";
import { DIGEST_OUTPUT_BYTES } from "../backup-header/allowlists.js";

function hasOwn(record: object, key: string): boolean {
  return Object.prototype.hasOwnProperty.call(record, key);
}

/** Lower-case digest name and output size; unknown → ERR_HEADER_UNSUPPORTED. */
export function hmacDigest(algorithm: string): { name: string; outputBytes: number } {
  const name = algorithm.toLowerCase();
  const outputBytes = hasOwn(DIGEST_OUTPUT_BYTES, name) ? DIGEST_OUTPUT_BYTES[name] : undefined;
  if (outputBytes === undefined) {
    throw new QbackupError("ERR_HEADER_UNSUPPORTED", `hmac-algorithm ${JSON.stringify(algorithm)} is not supported`, {
      hint: `supported: ${Object.keys(DIGEST_OUTPUT_BYTES).join(", ")}`,
    });
  }
  return { name, outputBytes };
}

/**
 * The allow-listed digests whose hex output has `hexLength` digits, best guess first (sha512, the
 * R2/R3 default). The header names its algorithm only inside itself, so before it is authenticated
 * a reader tries these (spec §3.7).
 */
export function headerHmacCandidates(hexLength: number): string[] {
  return Object.entries(DIGEST_OUTPUT_BYTES)
    .filter(([, bytes]) => bytes * 2 === hexLength)
    .map(([name]) => name);
}

/** HMAC over data fed in pieces, then compared with the stated digest in constant time. */
export class HmacVerifier {
  /** Lower-case digest name. */
  readonly algorithm: string;
  readonly outputBytes: number;
  private readonly hmac: Hmac;
  private done = false;

  constructor(algorithm: string, key: Uint8Array) {
    const d = hmacDigest(algorithm);
    this.algorithm = d.name;
    this.outputBytes = d.outputBytes;
    this.hmac = createHmac(d.name, key);
  }

  update(piece: Uint8Array): this {
    if (this.done) throw new QbackupError("ERR_INTERNAL", "hmac: update() after verify()");
    this.hmac.update(piece);
    return this;
  }

  /**
   * Throws ERR_CHUNK_AUTH unless `expected` is this HMAC. A wrong-length digest is compared against
   * the computed one anyway (then refused), so timing says nothing about where the bytes differ.
   */
  verify(expected: Uint8Array, what = "data"): void {
    if (this.done) throw new QbackupError("ERR_INTERNAL", "hmac: verify() called twice");
    this.done = true;
    const actual = this.hmac.digest();
    const sameLength = expected.byteLength === actual.length;
    const equal = timingSafeEqual(actual, sameLength ? expected : actual) && sameLength;
    if (!equal) {
      throw new QbackupError("ERR_CHUNK_AUTH", `${what}: hmac-${this.algorithm} mismatch: wrong passphrase or damaged`);
    }
  }
}
