/**
 * SaltedDecryptor against the real `openssl enc -e … -md md5 -pass file:PASSFILE` (the passphrase
 * never goes on argv): every size fed in random piece sizes, three ciphers, and the failure modes
 * (wrong passphrase, truncation, missing magic, unknown cipher).
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SALTED_HEADER_BYTES, SALTED_MAGIC, SaltedDecryptor, cipherSizes } from "./index.js";

const PASSPHRASE = "interop pass ' \" \\ é 日本 ✓";
const WRONG = "interop pass ' \" \\ é 日本 ✗";
const SIZES = [0, 1, 15, 16, 17, 1024 * 1024 + 3];
const CIPHERS = ["aes-256-cbc", "aes-128-cbc", "aes-256-ctr"];
/** Fixed salts make the padding outcome of the failure tests deterministic. */
const FIXED_SALT = "0011223344556677";

let tmp: string;
let passFile: string;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "qb-"));
  passFile = path.join(tmp, "pass");
  fs.writeFileSync(passFile, `${PASSPHRASE}\n`);
});

afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** xorshift32: reproducible data and piece sizes. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

function pseudoRandomBytes(n: number, seed: number): Buffer {
  const next = rng(seed);
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = next() & 0xff;
  return b;
}

/**
 * `openssl enc -e -<cipher> -md md5 -pass file:…`. With `-S`, OpenSSL 3 leaves out "Salted__" and
 * the salt, so they are put back here (what OpenSSL 1.0, R3's, wrote in every case).
 */
function opensslEncrypt(cipher: string, plain: Buffer, opts: { salt?: string } = {}): Buffer {
  const args = ["enc", "-e", `-${cipher}`, "-md", "md5", "-pass", `file:${passFile}`];
  if (opts.salt !== undefined) args.push("-S", opts.salt);
  const r = spawnSync("openssl", args, { input: plain, maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`openssl enc failed: ${r.stderr.toString()}`);
  if (opts.salt === undefined) return r.stdout;
  if (r.stdout.subarray(0, SALTED_MAGIC.length).equals(SALTED_MAGIC)) return r.stdout;
  return Buffer.concat([SALTED_MAGIC, Buffer.from(opts.salt, "hex"), r.stdout]);
}

/** Byte equality without vitest's per-element diffing (slow on MiB buffers). */
function expectSameBytes(actual: Buffer, expected: Buffer): void {
  expect(actual.length).toBe(expected.length);
  expect(actual.equals(expected)).toBe(true);
}

/** Feed `data` in random pieces (sometimes 1–3 bytes, so the salt header arrives split). */
function decryptInPieces(cipher: string, data: Buffer, seed: number, pass = PASSPHRASE): Buffer {
  const next = rng(seed);
  const d = new SaltedDecryptor(cipher, Buffer.from(pass));
  const out: Buffer[] = [];
  let off = 0;
  while (off < data.length) {
    const r = next();
    const n = r % 4 === 0 ? 1 + (r % 3) : 1 + (r % 70_000);
    const piece = data.subarray(off, off + n);
    const plain = d.update(piece);
    expect(plain.length).toBeLessThanOrEqual(piece.length + 16); // streaming: no accumulation
    out.push(plain);
    off += n;
  }
  out.push(d.final());
  return Buffer.concat(out);
}

function expectAuthError(fn: () => unknown, message: RegExp): void {
  expect(fn).toThrow(expect.objectContaining({ code: "ERR_CHUNK_AUTH", message: expect.stringMatching(message) }));
}

describe("SaltedDecryptor interop with openssl enc", () => {
  for (const cipher of CIPHERS) {
    for (const size of SIZES) {
      it(`${cipher}, ${size} bytes, random piece sizes`, () => {
        const plain = pseudoRandomBytes(size, size + 7);
        const enc = opensslEncrypt(cipher, plain);
        expect(enc.subarray(0, 8)).toEqual(SALTED_MAGIC);
        expectSameBytes(decryptInPieces(cipher, enc, size + 1), plain);
      });
    }
  }

  it("feeds one byte at a time, and accepts an empty piece anywhere", () => {
    const plain = pseudoRandomBytes(100, 3);
    const enc = opensslEncrypt("aes-256-cbc", plain);
    const d = new SaltedDecryptor("aes-256-cbc", Buffer.from(PASSPHRASE));
    const out: Buffer[] = [d.update(Buffer.alloc(0))];
    for (const byte of enc) out.push(d.update(Buffer.of(byte)), d.update(new Uint8Array(0)));
    out.push(d.final());
    expect(Buffer.concat(out)).toEqual(plain);
  });

  it("takes the cipher name case-insensitively (headers say AES-256-CBC too)", () => {
    const plain = Buffer.from("upper-case cipher name\n");
    const enc = opensslEncrypt("aes-256-cbc", plain);
    const d = new SaltedDecryptor("AES-256-CBC", Buffer.from(PASSPHRASE));
    expect(d.cipherName).toBe("aes-256-cbc");
    expect(Buffer.concat([d.update(enc), d.final()])).toEqual(plain);
  });

  it("does not keep the caller's passphrase buffer: wiping it after construction is harmless", () => {
    const plain = Buffer.from("caller wipes its copy\n");
    const enc = opensslEncrypt("aes-256-ctr", plain);
    const pass = Buffer.from(PASSPHRASE);
    const d = new SaltedDecryptor("aes-256-ctr", pass);
    pass.fill(0);
    expect(Buffer.concat([d.update(enc), d.final()])).toEqual(plain);
  });
});

describe("SaltedDecryptor failures", () => {
  const plain = pseudoRandomBytes(1000, 11);

  it("wrong passphrase, CBC: final() reports bad padding", () => {
    const enc = opensslEncrypt("aes-256-cbc", plain, { salt: FIXED_SALT });
    const d = new SaltedDecryptor("aes-256-cbc", Buffer.from(WRONG));
    const head = d.update(enc);
    expect(head.equals(plain.subarray(0, head.length))).toBe(false);
    expectAuthError(() => d.final(), /does not decrypt.*wrong passphrase or damaged/);
  });

  it("wrong passphrase, CTR: garbage of the right length and no error (only the v3 HMACs protect it)", () => {
    const enc = opensslEncrypt("aes-256-ctr", plain);
    const out = decryptInPieces("aes-256-ctr", enc, 5, WRONG);
    expect(out.length).toBe(plain.length);
    expect(out.equals(plain)).toBe(false);
  });

  it("CBC stream cut inside the last block: wrong final block length", () => {
    const enc = opensslEncrypt("aes-256-cbc", plain, { salt: FIXED_SALT });
    expectAuthError(() => decryptInPieces("aes-256-cbc", enc.subarray(0, enc.length - 1), 9), /does not decrypt/);
  });

  it("CBC stream missing its last whole block: the padding check fails", () => {
    const enc = opensslEncrypt("aes-256-cbc", plain, { salt: FIXED_SALT });
    expectAuthError(() => decryptInPieces("aes-256-cbc", enc.subarray(0, enc.length - 16), 9), /does not decrypt/);
  });

  it("CBC stream with only the salt header (no ciphertext block at all)", () => {
    const enc = opensslEncrypt("aes-256-cbc", plain, { salt: FIXED_SALT });
    expectAuthError(() => decryptInPieces("aes-256-cbc", enc.subarray(0, SALTED_HEADER_BYTES), 9), /does not decrypt/);
  });

  it("input shorter than the salt header, or empty: truncated", () => {
    const enc = opensslEncrypt("aes-256-ctr", plain);
    for (const n of [0, 5, 8, 15]) {
      const d = new SaltedDecryptor("aes-256-ctr", Buffer.from(PASSPHRASE));
      expect(d.update(enc.subarray(0, n)).length).toBe(0);
      expectAuthError(() => d.final(), new RegExp(`truncated: ${n} bytes, shorter than the 16-byte salt header`));
    }
  });

  it("missing or garbled magic: refused at the first wrong byte, even one byte at a time", () => {
    const enc = opensslEncrypt("aes-256-cbc", plain);
    const garbled = Buffer.from(enc);
    garbled[6] = "X".charCodeAt(0); // "SaltedX_"
    const d = new SaltedDecryptor("aes-256-cbc", Buffer.from(PASSPHRASE));
    for (let i = 0; i < 6; i++) expect(d.update(garbled.subarray(i, i + 1)).length).toBe(0);
    expectAuthError(() => d.update(garbled.subarray(6, 7)), /does not start with "Salted__"/);
    // an unsalted stream (`openssl enc -nosalt`) or plain data is refused too
    const d2 = new SaltedDecryptor("aes-256-cbc", Buffer.from(PASSPHRASE));
    expectAuthError(() => d2.update(Buffer.from("\x1f\x8b\x08\x00 a gzip stream")), /does not start with "Salted__"/);
  });

  it("unknown or non-AES cipher names: ERR_HEADER_UNSUPPORTED", () => {
    for (const name of ["des-ede3-cbc", "aes-256-gcm", "aes-256-ecb", "scrypt", "", "__proto__", "toString"]) {
      expect(() => new SaltedDecryptor(name, Buffer.from(PASSPHRASE))).toThrow(
        expect.objectContaining({ code: "ERR_HEADER_UNSUPPORTED" }),
      );
    }
    expect(cipherSizes("AES-192-OFB")).toEqual({ name: "aes-192-ofb", keyBytes: 24, ivBytes: 16 });
  });

  it("misuse after final() is an internal error", () => {
    const enc = opensslEncrypt("aes-256-ctr", plain);
    const d = new SaltedDecryptor("aes-256-ctr", Buffer.from(PASSPHRASE));
    d.update(enc);
    d.final();
    expect(() => d.update(enc)).toThrow(expect.objectContaining({ code: "ERR_INTERNAL" }));
    expect(() => d.final()).toThrow(expect.objectContaining({ code: "ERR_INTERNAL" }));
  });
});
