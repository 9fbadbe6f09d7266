/**
 * OpenSSL's EVP_BytesToKey with MD5 and one iteration: the key derivation of `openssl enc` as Qubes
 * R2/R3 ran it (OpenSSL 1.0 default; spec §5.1). Hand-written because node:crypto has no binding
 * for it and it is three lines of MD5.
 *
 *   D1 = MD5(pass ‖ salt), Di = MD5(D(i-1) ‖ pass ‖ salt);  key ‖ iv = first bytes of D1 ‖ D2 ‖ …
 */
import { createHash } from "node:crypto";
import { QbackupError } from "../../errors.js";

/** The digest `openssl enc -md md5` uses; also what OpenSSL < 1.1 used without `-md`. */
export const EVP_DIGEST = "md5";
/** More than any cipher needs (aes-256: 32 + 16): a bound, so a bad argument cannot loop for long. */
export const MAX_DERIVED_BYTES = 256;

export interface DerivedKey {
  key: Buffer;
  iv: Buffer;
}

export function evpBytesToKey(pass: Uint8Array, salt: Uint8Array, keyBytes: number, ivBytes: number): DerivedKey {
  for (const [name, n] of [
    ["key length", keyBytes],
    ["iv length", ivBytes],
  ] as const) {
    if (!Number.isSafeInteger(n) || n < 0) throw new QbackupError("ERR_INTERNAL", `evpBytesToKey: bad ${name} ${n}`);
  }
  const total = keyBytes + ivBytes;
  if (total > MAX_DERIVED_BYTES) {
    throw new QbackupError("ERR_INTERNAL", `evpBytesToKey: ${total} bytes asked, more than ${MAX_DERIVED_BYTES}`);
  }
  const blocks: Buffer[] = [];
  let have = 0;
  let previous: Buffer | undefined;
  while (have < total) {
    const h = createHash(EVP_DIGEST);
    if (previous !== undefined) h.update(previous);
    previous = h.update(pass).update(salt).digest();
    blocks.push(previous);
    have += previous.length;
  }
  const material = Buffer.concat(blocks);
  const out = { key: Buffer.from(material.subarray(0, keyBytes)), iv: Buffer.from(material.subarray(keyBytes, total)) };
  material.fill(0);
  for (const b of blocks) b.fill(0);
  return out;
}
