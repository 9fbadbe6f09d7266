/**
 * `.hmac` files and HMAC checks against the real `openssl dgst -<alg> -hmac KEY` (the key is a test
 * constant, so argv is acceptable here: OpenSSL 3's dgst has no other way to take an HMAC key), in
 * every output form OpenSSL prints, plus the spec §11.5 header vector and malformed files.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { HmacVerifier, MAX_HMAC_FILE_BYTES, headerHmacCandidates, hmacDigest, parseDgstOutput } from "./index.js";

const KEY = "hmac test key 'quoted' é";
const DIGESTS = ["sha512", "sha1", "sha256", "sha384", "sha224", "md5"];
/** Spec §11.5: the golden v3 header and its HMAC-SHA512 with the fixture passphrase. */
const V3_HEADER =
  "version=3\nhmac-algorithm=SHA512\ncrypto-algorithm=aes-256-cbc\nencrypted=True\ncompressed=True\ncompression-filter=gzip\n";
const V3_HEADER_HMAC =
  "b9382a7a3d5712bb350c2c5aa29885f481cfe10e4f67b1fb519363e59e1e89b70080f58063cd9ba98d05c72c4993d6c3f0b9e0a875783809557797aca1765e69";
const FIXTURE_PASSPHRASE = "qubes-fixture-passphrase";

function pseudoRandomBytes(n: number, seed: number): Buffer {
  let x = seed >>> 0 || 1;
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

function dgst(args: string[], input?: Buffer): Buffer {
  const r = spawnSync("openssl", ["dgst", ...args], { input, maxBuffer: 1024 * 1024 });
  if (r.status !== 0) throw new Error(`openssl dgst failed: ${r.stderr.toString()}`);
  return r.stdout;
}

function verify(alg: string, key: string, data: Buffer, hmacFile: Uint8Array, pieceSize = 997): void {
  const v = new HmacVerifier(alg, Buffer.from(key));
  for (let off = 0; off < data.length; off += pieceSize) v.update(data.subarray(off, off + pieceSize));
  v.verify(parseDgstOutput(hmacFile), "test data");
}

const authError = (message?: RegExp) =>
  expect.objectContaining({ code: "ERR_CHUNK_AUTH", ...(message ? { message: expect.stringMatching(message) } : {}) });

describe("HmacVerifier against openssl dgst -hmac", () => {
  const data = pseudoRandomBytes(100_003, 42);

  for (const alg of DIGESTS) {
    it(`${alg}: stdin form (OpenSSL 3 "<ALG>(stdin)= …") verifies, one flipped bit does not`, () => {
      const out = dgst([`-${alg}`, "-hmac", KEY], data);
      expect(out.toString()).toMatch(/^[A-Z0-9-]+\(stdin\)= [0-9a-f]+\n$/);
      verify(alg, KEY, data, out);
      const damaged = Buffer.from(data);
      damaged[50_000]! ^= 0x01;
      expect(() => verify(alg, KEY, damaged, out)).toThrow(authError(/test data: hmac-.* mismatch/));
      expect(() => verify(alg, `${KEY}x`, data, out)).toThrow(authError());
    });
  }

  it('named-file form "HMAC-SHA1(<file>)= …" and the R2/R3 form "(stdin)= …"', () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "qb-"));
    try {
      const file = path.join(tmp, "vm5 (copy)=x.000");
      fs.writeFileSync(file, data);
      const out = dgst(["-sha1", "-hmac", KEY, file]);
      expect(out.toString()).toMatch(/^HMAC-SHA1\(.*\)= [0-9a-f]{40}\n$/);
      verify("sha1", KEY, data, out);
      const hex = /= ([0-9a-f]+)$/.exec(out.toString().trim())![1]!;
      verify("SHA1", KEY, data, Buffer.from(`(stdin)= ${hex}\n`));
      verify("sha1", KEY, data, Buffer.from(`(stdin)= ${hex.toUpperCase()}`)); // upper-case hex, no newline
      verify("sha1", KEY, data, Buffer.from(`  HMAC-SHA1(stdin)= ${hex}\r\n`)); // surrounding blanks, CRLF
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  it("reproduces the spec §11.5 v3 header vector, and finds sha512 as the only 128-digit candidate", () => {
    const hmacFile = Buffer.from(`(stdin)= ${V3_HEADER_HMAC}\n`);
    expect(hmacFile.length).toBe(138);
    const expected = parseDgstOutput(hmacFile);
    expect(headerHmacCandidates(V3_HEADER_HMAC.length)).toEqual(["sha512"]);
    new HmacVerifier("sha512", Buffer.from(FIXTURE_PASSPHRASE)).update(Buffer.from(V3_HEADER)).verify(expected);
    const v = new HmacVerifier("sha512", Buffer.from(FIXTURE_PASSPHRASE));
    expect(() => v.update(Buffer.from(V3_HEADER.replace("gzip", "bzip2"))).verify(expected)).toThrow(authError());
  });

  it("refuses a digest of the wrong length without throwing early", () => {
    const v = new HmacVerifier("sha256", Buffer.from(KEY)).update(data);
    expect(() => v.verify(Buffer.alloc(64))).toThrow(authError());
    const v2 = new HmacVerifier("sha256", Buffer.from(KEY)).update(data);
    expect(() => v2.verify(Buffer.alloc(0))).toThrow(authError());
  });

  it("is single-use", () => {
    const v = new HmacVerifier("sha1", Buffer.from(KEY));
    expect(() => v.verify(Buffer.alloc(20))).toThrow(authError());
    expect(() => v.update(data)).toThrow(expect.objectContaining({ code: "ERR_INTERNAL" }));
    expect(() => v.verify(Buffer.alloc(20))).toThrow(expect.objectContaining({ code: "ERR_INTERNAL" }));
  });
});

describe("digest allow-list", () => {
  it("takes names case-insensitively and refuses others with ERR_HEADER_UNSUPPORTED", () => {
    expect(hmacDigest("SHA512")).toEqual({ name: "sha512", outputBytes: 64 });
    expect(new HmacVerifier("Sha256", Buffer.alloc(0)).algorithm).toBe("sha256");
    for (const name of ["scrypt", "sha3-512", "whirlpool", "ripemd160", "", "__proto__", "constructor"]) {
      expect(() => new HmacVerifier(name, Buffer.from(KEY))).toThrow(
        expect.objectContaining({ code: "ERR_HEADER_UNSUPPORTED" }),
      );
    }
  });

  it("headerHmacCandidates picks digests by hex length", () => {
    expect(headerHmacCandidates(128)).toEqual(["sha512"]);
    expect(headerHmacCandidates(96)).toEqual(["sha384"]);
    expect(headerHmacCandidates(64)).toEqual(["sha256"]);
    expect(headerHmacCandidates(56)).toEqual(["sha224"]);
    expect(headerHmacCandidates(40)).toEqual(["sha1"]);
    expect(headerHmacCandidates(32)).toEqual(["md5"]);
    expect(headerHmacCandidates(0)).toEqual([]);
    expect(headerHmacCandidates(127)).toEqual([]);
  });
});

describe("parseDgstOutput", () => {
  const hex = "00ff".repeat(16);

  it("returns the digest bytes of every accepted form", () => {
    for (const text of [
      `(stdin)= ${hex}\n`,
      `SHA2-512(stdin)= ${hex}\n`,
      `HMAC-SHA2-512(backup-header)= ${hex}\n`,
      `HMAC-SHA512(a)= b)= ${hex}`, // the hex after the LAST "= "
      `(stdin)= ${hex.toUpperCase()}`,
    ]) {
      expect(parseDgstOutput(Buffer.from(text)).toString("hex")).toBe(hex);
    }
  });

  it("refuses everything else with ERR_CHUNK_AUTH", () => {
    const bad: Array<[string | Buffer, RegExp]> = [
      ["", /is empty/],
      [" \n\n", /is empty/],
      [hex, /not one/], // bare hex
      [`(stdin)=${hex}`, /not one/], // no space
      [`(stdin)= ${hex}0`, /odd number/],
      [`(stdin)= ${hex.slice(0, -1)}g`, /not one/],
      [`(stdin)= ${hex}\n(stdin)= ${hex}\n`, /not one/], // two lines
      [`(std\nin)= ${hex}`, /not one/],
      [`SHA 512(stdin)= ${hex}`, /not one/],
      [`(stdin)= ${hex} extra`, /not one/],
      [`(stdin)= `, /not one/],
      [Buffer.from(`(stdin)= ${hex}\u00e9`, "utf8"), /non-ascii/],
      [`(stdin)= ${"ab".repeat(MAX_HMAC_FILE_BYTES)}`, /more than 4096/],
    ];
    for (const [text, message] of bad) {
      const bytes = typeof text === "string" ? Buffer.from(text, "latin1") : text;
      expect(() => parseDgstOutput(bytes), JSON.stringify(text).slice(0, 60)).toThrow(authError(message));
    }
  });

  it("accepts exactly 4096 bytes (padding blanks), not one more", () => {
    const line = `(stdin)= ${hex}`;
    expect(parseDgstOutput(Buffer.from(line.padEnd(MAX_HMAC_FILE_BYTES, " "))).toString("hex")).toBe(hex);
    expect(() => parseDgstOutput(Buffer.from(line.padEnd(MAX_HMAC_FILE_BYTES + 1, " ")))).toThrow(authError());
  });
});
