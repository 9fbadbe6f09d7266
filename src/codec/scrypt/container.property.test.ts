/**
 * Property tests of the scrypt container codec (spec §4.6): random plaintexts (0 … 256 KiB) round-trip
 * through one-shot and streaming seal/open with random piece sizes; every single-byte change, truncation
 * and extension of a sealed unit is refused with the QbackupError of its region, and no plaintext is
 * released before (or after a failed) verify(). Keys are derived once: the KDF is wrapped in
 * a cache here, so repeated opens of units with the same salt and parameters reuse the first derivation.
 */

import * as nodeCrypto from "node:crypto";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { cutInPieces } from "../../../test/support/byte-source.js";
import { QbackupError } from "../../errors.js";
import type { ErrorCode } from "../../errors.js";
import {
  CONTAINER_HEADER_SIZE,
  CONTAINER_MAC_SIZE,
  CONTAINER_OVERHEAD,
  ContainerOpener,
  ContainerSealer,
  SALT_SIZE,
  deriveKeys,
  open,
  seal,
} from "./index.js";
import type { ContainerKeys, ScryptParams } from "./index.js";
import type * as KdfModule from "./kdf.js";
import type { ScryptKdf } from "./kdf.js";

/** Real KDF runs (cache misses) seen by the wrapper below. */
const kdf = vi.hoisted(() => ({ runs: 0 }));

vi.mock("./kdf.js", async (importOriginal) => {
  const actual = await importOriginal<typeof KdfModule>();
  const real = actual.scryptKdf();
  const cache = new Map<string, Buffer>();
  const hex = (v: Uint8Array): string => Buffer.from(v).toString("hex");
  const cached: ScryptKdf = {
    name: real.name,
    async derive(passphrase, salt, params, keyLength, maxmem) {
      const key = `${hex(passphrase)}|${hex(salt)}|${keyLength}|${params.logN}|${params.r}|${params.p}`;
      const hit = cache.get(key);
      if (hit !== undefined) return Buffer.from(hit);
      kdf.runs += 1;
      const dk = await real.derive(passphrase, salt, params, keyLength, maxmem);
      cache.set(key, Buffer.from(dk));
      return dk;
    },
  };
  return { ...actual, scryptKdf: () => cached };
});

const PARAMS: ScryptParams = { logN: 10, r: 8, p: 1 };
const PASS = Buffer.from("property passphrase", "utf8");
const SALT = Buffer.alloc(SALT_SIZE, 0x5c);
const MAX_PLAIN_BYTES = 256 * 1024;
const SMALL_PLAIN_BYTES = 600;
const MAX_PIECE_BYTES = 70_000;
const MAX_EXTENSION_BYTES = 100;
/** Real key derivations the whole file may run: one passphrase, one salt, one parameter set. */
const MAX_KDF_RUNS = 1;
const ROUND_TRIP_RUNS = 60;
const TAMPER_RUNS = 300;
const LENGTH_RUNS = 150;

/** Header regions (spec §4.6) and the error each single-byte change there must produce. */
const HEADER_REGIONS: ReadonlyArray<{ name: string; start: number; end: number; code: ErrorCode }> = [
  { name: "magic", start: 0, end: 6, code: "ERR_SCRYPT_FORMAT" },
  { name: "version", start: 6, end: 7, code: "ERR_SCRYPT_FORMAT" },
  { name: "logN", start: 7, end: 8, code: "ERR_SCRYPT_HEADER_CHECKSUM" },
  { name: "r", start: 8, end: 12, code: "ERR_SCRYPT_HEADER_CHECKSUM" },
  { name: "p", start: 12, end: 16, code: "ERR_SCRYPT_HEADER_CHECKSUM" },
  { name: "salt", start: 16, end: 48, code: "ERR_SCRYPT_HEADER_CHECKSUM" },
  { name: "checksum", start: 48, end: 64, code: "ERR_SCRYPT_HEADER_CHECKSUM" },
  { name: "signature", start: 64, end: 96, code: "ERR_PASSPHRASE_WRONG" },
];
type Region = "magic" | "version" | "logN" | "r" | "p" | "salt" | "checksum" | "signature" | "ciphertext" | "mac";
const REGION_NAMES: readonly Region[] = [...(HEADER_REGIONS.map((r) => r.name) as Region[]), "ciphertext", "mac"];

let keys: ContainerKeys;

beforeAll(async () => {
  keys = await deriveKeys(PASS, SALT, PARAMS);
});

afterAll(() => {
  // Everything above sealed and opened with one salt and one parameter set (and the wrapper was used).
  expect(kdf.runs).toBeGreaterThanOrEqual(1);
  expect(kdf.runs).toBeLessThanOrEqual(MAX_KDF_RUNS);
});

/** Deterministic pseudo-random bytes (AES-CTR keystream of the seed), fast for 256 KiB. */
function bytesOf(length: number, seed: number): Buffer {
  const key = nodeCrypto.createHash("sha256").update(`plain ${seed}`).digest();
  return nodeCrypto.createCipheriv("aes-256-ctr", key, Buffer.alloc(16)).update(Buffer.alloc(length));
}

/** Mostly small plaintexts (edge cases around 0 and the AES block), some up to 256 KiB. */
const plainArb = fc
  .record({
    length: fc.oneof(
      { weight: 2, arbitrary: fc.integer({ min: 0, max: SMALL_PLAIN_BYTES }) },
      { weight: 1, arbitrary: fc.integer({ min: 0, max: MAX_PLAIN_BYTES }) },
    ),
    seed: fc.integer(),
  })
  .map(({ length, seed }) => bytesOf(length, seed));

const piecesArb = fc.array(fc.integer({ min: 1, max: MAX_PIECE_BYTES }), { minLength: 1, maxLength: 8 });

async function codeOf(fn: () => unknown): Promise<ErrorCode | "none" | "not-qbackup"> {
  try {
    await fn();
    return "none";
  } catch (err) {
    return err instanceof QbackupError ? err.code : "not-qbackup";
  }
}

function expectInternal(fn: () => unknown): void {
  expect(fn).toThrow(expect.objectContaining({ name: "QbackupError", code: "ERR_INTERNAL" }));
}

/** Streaming seal with the pre-derived keys, alternating update() and updateInPlace(). */
function streamSeal(plain: Buffer, sizes: readonly number[]): Buffer {
  const sealer = ContainerSealer.fromKeys(keys, PARAMS, SALT);
  const parts = [sealer.header()];
  cutInPieces(plain, sizes).forEach((piece, i) => {
    if (i % 2 === 0) {
      parts.push(sealer.update(piece));
    } else {
      const copy = Buffer.from(piece);
      sealer.updateInPlace(copy);
      parts.push(copy);
    }
  });
  parts.push(sealer.final());
  return Buffer.concat(parts);
}

/**
 * Streaming open in pieces. Before verify() and after a failed verify() decrypt() must refuse
 * (ERR_INTERNAL), so a unit that does not verify releases nothing. Returns the plaintext or throws.
 */
async function streamOpen(unit: Buffer, sizes: readonly number[]): Promise<Buffer> {
  const opener = await ContainerOpener.create(unit.subarray(0, CONTAINER_HEADER_SIZE), PASS);
  const body = unit.subarray(CONTAINER_HEADER_SIZE);
  const macAt = Math.max(0, body.length - CONTAINER_MAC_SIZE);
  const ct = body.subarray(0, macAt);
  const pieces = cutInPieces(ct, sizes);
  for (const piece of pieces) opener.authenticate(piece);
  expectInternal(() => opener.decrypt(ct.subarray(0, 1)));
  expectInternal(() => opener.decryptInPlace(Buffer.from(ct.subarray(0, 1))));
  try {
    opener.verify(body.subarray(macAt));
  } catch (err) {
    expect(opener.verified).toBe(false);
    expectInternal(() => opener.decrypt(ct));
    expectInternal(() => opener.decrypt(Buffer.alloc(0)));
    throw err;
  }
  return Buffer.concat(pieces.map((p, i) => (i % 2 === 0 ? opener.decrypt(p) : inPlace(opener, p))));
}

function inPlace(opener: ContainerOpener, piece: Buffer): Buffer {
  const copy = Buffer.from(piece);
  opener.decryptInPlace(copy);
  return copy;
}

/** Both openers must refuse `unit` with `code`. */
async function expectRefused(unit: Buffer, sizes: readonly number[], code: ErrorCode): Promise<void> {
  expect(await codeOf(() => open(unit, PASS))).toBe(code);
  expect(await codeOf(() => streamOpen(unit, sizes))).toBe(code);
}

describe("scrypt container round trip", () => {
  it("one-shot seal, streaming seal (fromKeys) and both openers agree on random data", async () => {
    await fc.assert(
      fc.asyncProperty(plainArb, piecesArb, piecesArb, async (plain, sealPieces, openPieces) => {
        const sealed = await seal(plain, PASS, PARAMS, SALT);
        expect(sealed.length).toBe(plain.length + CONTAINER_OVERHEAD);
        expect(streamSeal(plain, sealPieces).equals(sealed)).toBe(true);
        expect((await open(sealed, PASS)).equals(plain)).toBe(true);
        expect((await streamOpen(sealed, openPieces)).equals(plain)).toBe(true);
      }),
      { numRuns: ROUND_TRIP_RUNS },
    );
  });
});

describe("scrypt container tampering", () => {
  it("refuses any single-byte change with the error of its region and releases no plaintext", async () => {
    const arb = fc.record({
      plain: plainArb,
      region: fc.constantFrom(...REGION_NAMES),
      where: fc.nat(),
      xor: fc.integer({ min: 1, max: 255 }),
      pieces: piecesArb,
    });
    await fc.assert(
      fc.asyncProperty(arb, async ({ plain, region, where, xor, pieces }) => {
        const unit = streamSeal(plain, pieces);
        const header = HEADER_REGIONS.find((r) => r.name === region);
        let at: number;
        let code: ErrorCode;
        if (header !== undefined) {
          at = header.start + (where % (header.end - header.start));
          code = header.code;
        } else if (region === "ciphertext" && plain.length > 0) {
          at = CONTAINER_HEADER_SIZE + (where % plain.length);
          code = "ERR_CHUNK_AUTH";
        } else {
          at = unit.length - CONTAINER_MAC_SIZE + (where % CONTAINER_MAC_SIZE);
          code = "ERR_CHUNK_AUTH";
        }
        const bad = Buffer.from(unit);
        bad[at] = (bad[at] ?? 0) ^ xor;
        await expectRefused(bad, pieces, code);
      }),
      { numRuns: TAMPER_RUNS },
    );
  });

  it("refuses every truncation", async () => {
    const arb = fc.record({ plain: plainArb, cut: fc.nat(), pieces: piecesArb });
    await fc.assert(
      fc.asyncProperty(arb, async ({ plain, cut, pieces }) => {
        const unit = streamSeal(plain, pieces);
        const length = cut % unit.length; // 0 … unit.length - 1
        const code: ErrorCode = length < CONTAINER_OVERHEAD ? "ERR_SCRYPT_FORMAT" : "ERR_CHUNK_AUTH";
        expect(await codeOf(() => open(unit.subarray(0, length), PASS))).toBe(code);
        // The streaming opener sees a short header as a format error, a short tail as a bad MAC.
        const streamCode: ErrorCode = length < CONTAINER_HEADER_SIZE ? "ERR_SCRYPT_FORMAT" : "ERR_CHUNK_AUTH";
        expect(await codeOf(() => streamOpen(unit.subarray(0, length), pieces))).toBe(streamCode);
      }),
      { numRuns: LENGTH_RUNS },
    );
  });

  it("refuses every extension", async () => {
    const arb = fc.record({
      plain: plainArb,
      extra: fc.uint8Array({ minLength: 1, maxLength: MAX_EXTENSION_BYTES }),
      pieces: piecesArb,
    });
    await fc.assert(
      fc.asyncProperty(arb, async ({ plain, extra, pieces }) => {
        const unit = streamSeal(plain, pieces);
        await expectRefused(Buffer.concat([unit, extra]), pieces, "ERR_CHUNK_AUTH");
      }),
      { numRuns: LENGTH_RUNS },
    );
  });
});
