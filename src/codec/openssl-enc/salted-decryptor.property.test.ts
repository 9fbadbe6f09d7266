/**
 * Property tests of SaltedDecryptor (spec §5.1): random data encrypted with node:crypto the way
 * `openssl enc -md md5` does ("Salted__" ‖ salt ‖ ciphertext, key and IV from an independent
 * EVP_BytesToKey(MD5) written here) decrypts to the same bytes for every allow-listed cipher, any
 * cipher-name case, any passphrase and any piece sizes; and any input at all either decrypts or
 * fails with QbackupError ERR_CHUNK_AUTH, never another exception.
 */
import { createCipheriv, createHash, getCipherInfo } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { cutInPieces } from "../../../test/support/byte-source.js";
import { QbackupError } from "../../errors.js";
import { CIPHER_SIZES } from "../backup-header/index.js";
import { SALTED_MAGIC, SALT_BYTES, SaltedDecryptor } from "./index.js";

const ROUND_TRIP_RUNS = 300;
const GARBAGE_RUNS = 500;
const MAX_DATA_BYTES = 5000;
const MAX_PASSPHRASE_BYTES = 40;
const MAX_PIECE_BYTES = 700;
const MAX_EDITS = 3;
/** Every cipher the allow-list admits (spec §3.6). */
const CIPHERS = Object.keys(CIPHER_SIZES);

/** EVP_BytesToKey with MD5 and one iteration: D_i = MD5(D_{i-1} ‖ pass ‖ salt), key ‖ iv = D_1 ‖ D_2 ‖ … */
function bytesToKey(pass: Uint8Array, salt: Uint8Array, keyBytes: number, ivBytes: number): Buffer {
  const out: Buffer[] = [];
  let have = 0;
  let prev = Buffer.alloc(0);
  while (have < keyBytes + ivBytes) {
    prev = createHash("md5").update(prev).update(pass).update(salt).digest();
    out.push(prev);
    have += prev.length;
  }
  return Buffer.concat(out).subarray(0, keyBytes + ivBytes);
}

function opensslEnc(cipher: string, pass: Uint8Array, salt: Uint8Array, data: Uint8Array): Buffer {
  // Key and IV lengths from OpenSSL itself, not from the allow-list the decryptor uses.
  const info = getCipherInfo(cipher);
  if (info === undefined || info.ivLength === undefined) throw new Error(`node:crypto does not know ${cipher}`);
  const keyIv = bytesToKey(pass, salt, info.keyLength, info.ivLength);
  const c = createCipheriv(cipher, keyIv.subarray(0, info.keyLength), keyIv.subarray(info.keyLength));
  return Buffer.concat([SALTED_MAGIC, salt, c.update(data), c.final()]);
}

/** Decrypts `stream` fed in pieces; empty pieces in between must not matter. */
function decrypt(cipher: string, pass: Uint8Array, stream: Buffer, sizes: readonly number[]): Buffer {
  const d = new SaltedDecryptor(cipher, pass);
  const parts = cutInPieces(stream, sizes).flatMap((p) => [d.update(p), d.update(Buffer.alloc(0))]);
  parts.push(d.final());
  return Buffer.concat(parts);
}

const cipherArb = fc
  .record({ name: fc.constantFrom(...CIPHERS), upper: fc.boolean() })
  .map(({ name, upper }) => (upper ? name.toUpperCase() : name));
const piecesArb = fc.array(fc.integer({ min: 1, max: MAX_PIECE_BYTES }), { minLength: 1, maxLength: 5 });
const dataArb = fc.oneof(
  fc.uint8Array({ maxLength: 40 }),
  fc.integer({ min: 0, max: MAX_DATA_BYTES }).chain((n) => fc.uint8Array({ minLength: n, maxLength: n })),
);

describe("SaltedDecryptor", () => {
  it("decrypts what openssl-enc-style node:crypto encryption produced, in any pieces", () => {
    const arb = fc.record({
      cipher: cipherArb,
      pass: fc.uint8Array({ maxLength: MAX_PASSPHRASE_BYTES }),
      salt: fc.uint8Array({ minLength: SALT_BYTES, maxLength: SALT_BYTES }),
      data: dataArb,
      pieces: piecesArb,
    });
    fc.assert(
      fc.property(arb, ({ cipher, pass, salt, data, pieces }) => {
        const stream = opensslEnc(cipher.toLowerCase(), pass, salt, data);
        expect(decrypt(cipher, pass, stream, pieces).equals(Buffer.from(data))).toBe(true);
      }),
      { numRuns: ROUND_TRIP_RUNS },
    );
  });

  it("any input decrypts or fails with ERR_CHUNK_AUTH, never another exception", () => {
    type Edit = { at: number; xor: number } | { cut: number };
    const edit: fc.Arbitrary<Edit> = fc.oneof(
      fc.record({ at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }),
      fc.record({ cut: fc.nat() }),
    );
    const input = fc.oneof(
      fc.uint8Array({ maxLength: 100 }).map((b) => Buffer.from(b)),
      fc
        .record({
          cipher: cipherArb,
          salt: fc.uint8Array({ minLength: SALT_BYTES, maxLength: SALT_BYTES }),
          data: dataArb,
          edits: fc.array(edit, { maxLength: MAX_EDITS }),
        })
        .map(({ cipher, salt, data, edits }) => {
          let b = opensslEnc(cipher.toLowerCase(), Buffer.from("p"), salt, data);
          for (const e of edits) {
            if ("cut" in e) b = b.subarray(0, e.cut % (b.length + 1));
            else if (b.length > 0) b[e.at % b.length] = (b[e.at % b.length] ?? 0) ^ e.xor;
          }
          return b;
        }),
    );
    fc.assert(
      fc.property(cipherArb, fc.uint8Array({ maxLength: 8 }), input, piecesArb, (cipher, pass, stream, pieces) => {
        try {
          decrypt(cipher, pass, stream, pieces);
        } catch (err) {
          if (!(err instanceof QbackupError)) throw err;
          expect(err.code).toBe("ERR_CHUNK_AUTH");
        }
      }),
      { numRuns: GARBAGE_RUNS },
    );
  });
});
