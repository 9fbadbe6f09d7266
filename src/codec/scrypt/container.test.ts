/**
 * Tests of the scrypt container codec without external tools: the spec §4.6 known-answer vector,
 * parameter checks and KDF caps (the KDF must not run), tampering with every region, streaming equivalence.
 */

import * as nodeCrypto from "node:crypto";
import { readFileSync } from "node:fs";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Mock } from "vitest";
import { QbackupError } from "../../errors.js";
import type { ErrorCode } from "../../errors.js";
import {
  CONTAINER_HEADER_SIZE,
  CONTAINER_MAC_SIZE,
  CONTAINER_OVERHEAD,
  ContainerOpener,
  ContainerSealer,
  DEFAULT_KDF_LIMITS,
  SALT_SIZE,
  checkKdfLimits,
  deriveKeys,
  kdfMemoryBytes,
  open,
  parseContainerHeader,
  seal,
} from "./index.js";
import type { ScryptParams } from "./index.js";
import type * as KdfModule from "./kdf.js";
import type { ScryptKdf } from "./kdf.js";

// Spy on the KDF (whichever implementation this machine uses) so the limit tests can prove it never ran.
const spy = vi.hoisted(() => ({ derive: undefined as unknown as Mock<ScryptKdf["derive"]> }));
vi.mock("./kdf.js", async (importOriginal) => {
  const actual = await importOriginal<typeof KdfModule>();
  const kdf = actual.scryptKdf();
  spy.derive = vi.fn(kdf.derive);
  return { ...actual, scryptKdf: (): ScryptKdf => ({ name: kdf.name, derive: spy.derive }) };
});

interface KatVector {
  passphrase: string;
  saltHex: string;
  logN: number;
  r: number;
  p: number;
  plaintext: string;
  dkHex: string;
  fileHex: string;
}
const kat = JSON.parse(readFileSync(new URL("./testdata/kat-spec-4.6.json", import.meta.url), "utf8")) as KatVector;
const katParams: ScryptParams = { logN: kat.logN, r: kat.r, p: kat.p };
const katSalt = Buffer.from(kat.saltHex, "hex");
const katPass = Buffer.from(kat.passphrase, "utf8");
const katFile = Buffer.from(kat.fileHex, "hex");

const PARAMS: ScryptParams = { logN: 10, r: 8, p: 1 };
const PASS = Buffer.from("test passphrase", "utf8");

/** Copy `container`, let `edit` change bytes 0..47, then recompute the checksum at 48..63. */
function forgeHeader(container: Uint8Array, edit: (b: Buffer) => void): Buffer {
  const b = Buffer.from(container);
  edit(b);
  nodeCrypto.createHash("sha256").update(b.subarray(0, 48)).digest().copy(b, 48, 0, 16);
  return b;
}

/** The QbackupError code of whatever `fn` throws or rejects with. */
async function codeOf(fn: () => unknown): Promise<ErrorCode | "none" | "not-qbackup"> {
  try {
    await fn();
    return "none";
  } catch (err) {
    return err instanceof QbackupError ? err.code : "not-qbackup";
  }
}

/** Deterministic xorshift32 PRNG. */
function prng(seed: number): () => number {
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
  const next = prng(seed);
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = next() & 0xff;
  return b;
}

/**
 * Open through the streaming API in `pieceSize` pieces, recording every plaintext byte released and
 * checking that decrypt() refuses before a successful verify().
 */
async function streamOpen(container: Buffer, passphrase: Uint8Array, pieceSize = 7): Promise<Buffer> {
  const opener = await ContainerOpener.create(container.subarray(0, CONTAINER_HEADER_SIZE), passphrase);
  const ct = container.subarray(CONTAINER_HEADER_SIZE, container.length - CONTAINER_MAC_SIZE);
  for (let off = 0; off < ct.length; off += pieceSize) opener.authenticate(ct.subarray(off, off + pieceSize));
  expect(() => opener.decrypt(ct.subarray(0, 1))).toThrow(expect.objectContaining({ code: "ERR_INTERNAL" }));
  try {
    opener.verify(container.subarray(container.length - CONTAINER_MAC_SIZE));
  } catch (err) {
    // No plaintext after a failed verify either.
    expect(() => opener.decrypt(ct)).toThrow(expect.objectContaining({ code: "ERR_INTERNAL" }));
    throw err;
  }
  const parts: Buffer[] = [];
  for (let off = 0; off < ct.length; off += pieceSize) parts.push(opener.decrypt(ct.subarray(off, off + pieceSize)));
  return Buffer.concat(parts);
}

afterEach(() => {
  spy.derive.mockClear();
});

describe("known-answer vector (spec §4.6)", () => {
  it("derives DK", async () => {
    const keys = await deriveKeys(katPass, katSalt, katParams);
    expect(Buffer.concat([keys.encKey, keys.macKey]).toString("hex")).toBe(kat.dkHex);
    expect(keys.encKey.length).toBe(32);
    expect(keys.macKey.length).toBe(32);
  });

  it("seals to the exact 140-byte file", async () => {
    const out = await seal(Buffer.from(kat.plaintext, "utf8"), katPass, katParams, katSalt);
    expect(out.length).toBe(140);
    expect(out.toString("hex")).toBe(kat.fileHex);
  });

  it("opens to the plaintext (one-shot and streaming)", async () => {
    expect((await open(katFile, katPass)).toString("utf8")).toBe(kat.plaintext);
    expect((await streamOpen(katFile, katPass, 5)).toString("utf8")).toBe(kat.plaintext);
  });

  it("parses the header", () => {
    const info = parseContainerHeader(katFile.subarray(0, 64));
    expect(info.params).toEqual(katParams);
    expect(info.salt.equals(katSalt)).toBe(true);
  });
});

describe("static CLI-made container (scrypt 1.3.1 enc --logN 10)", () => {
  it("opens", async () => {
    const file = readFileSync(new URL("./testdata/cli-logn10.scrypt", import.meta.url));
    const plain = readFileSync(new URL("./testdata/cli-logn10.plain", import.meta.url));
    const pass = Buffer.from("cli fixture pass");
    expect((await open(file, pass)).equals(plain)).toBe(true);
    expect((await streamOpen(file, pass, 3)).equals(plain)).toBe(true);
  });
});

describe("parameters and limits", () => {
  it("computes memory and checks caps at the boundary", () => {
    expect(kdfMemoryBytes({ logN: 10, r: 8, p: 1 })).toBe(1024 * 1024);
    expect(kdfMemoryBytes({ logN: 21, r: 8, p: 1 })).toBe(2 * 1024 ** 3);
    expect(DEFAULT_KDF_LIMITS).toEqual({ maxMemoryBytes: 2 ** 31, maxWork: 2 ** 28 });
    // 2^21·8·128 = 2 GiB is allowed by default, 2^22 is not.
    expect(() => checkKdfLimits({ logN: 21, r: 8, p: 1 }, DEFAULT_KDF_LIMITS)).not.toThrow();
    expect(() => checkKdfLimits({ logN: 22, r: 8, p: 1 }, DEFAULT_KDF_LIMITS)).toThrow(
      expect.objectContaining({ code: "ERR_KDF_LIMIT", message: expect.stringContaining("--max-kdf-memory") }),
    );
    // Work: 2^19·8·64 = 2^28 allowed, p 65 is not.
    expect(() => checkKdfLimits({ logN: 19, r: 8, p: 64 }, DEFAULT_KDF_LIMITS)).not.toThrow();
    expect(() => checkKdfLimits({ logN: 19, r: 8, p: 65 }, DEFAULT_KDF_LIMITS)).toThrow(
      expect.objectContaining({ code: "ERR_KDF_LIMIT", message: expect.stringContaining("--max-kdf-work") }),
    );
  });

  it("names the value and the cap in the message", () => {
    let msg = "";
    try {
      checkKdfLimits({ logN: 40, r: 8, p: 1 }, DEFAULT_KDF_LIMITS);
    } catch (err) {
      msg = (err as Error).message;
    }
    expect(msg).toMatch(/^scrypt container: /);
    expect(msg).toContain(String(128n * 8n * (1n << 40n)));
    expect(msg).toContain("2147483648");
    expect(msg).toContain("raise it with --max-kdf-memory");
    expect(msg).not.toContain("\n");
  });

  it("rejects nonsense parameters with ERR_SCRYPT_PARAMS", () => {
    const bad: ScryptParams[] = [
      { logN: 0, r: 8, p: 1 },
      { logN: 64, r: 8, p: 1 },
      { logN: 10.5, r: 8, p: 1 },
      { logN: 10, r: 0, p: 1 },
      { logN: 10, r: 8, p: 0 },
      { logN: 10, r: -1, p: 1 },
      { logN: 10, r: 2 ** 32, p: 1 },
      { logN: 10, r: 2 ** 15, p: 2 ** 15 },
    ];
    for (const p of bad) {
      expect(() => checkKdfLimits(p, DEFAULT_KDF_LIMITS), JSON.stringify(p)).toThrow(
        expect.objectContaining({ code: "ERR_SCRYPT_PARAMS" }),
      );
    }
  });

  it("rejects nonsense parameters on the seal side", async () => {
    for (const p of [
      { logN: 0, r: 8, p: 1 },
      { logN: 64, r: 8, p: 1 },
      { logN: 10, r: 0, p: 1 },
      { logN: 10, r: 8, p: 0 },
    ]) {
      expect(await codeOf(() => seal(Buffer.from("x"), PASS, p)), JSON.stringify(p)).toBe("ERR_SCRYPT_PARAMS");
      expect(await codeOf(() => ContainerSealer.create(PASS, p))).toBe("ERR_SCRYPT_PARAMS");
    }
    expect(spy.derive).not.toHaveBeenCalled();
  });

  it("rejects a header claiming logN 40 before running the KDF", async () => {
    const good = await seal(Buffer.from("data"), PASS, PARAMS);
    expect(spy.derive).toHaveBeenCalledTimes(1); // the spy sees real KDF runs
    spy.derive.mockClear();
    const forged = forgeHeader(good, (b) => {
      b[7] = 40;
    });
    const t0 = performance.now();
    expect(await codeOf(() => open(forged, PASS))).toBe("ERR_KDF_LIMIT");
    expect(await codeOf(() => ContainerOpener.create(forged.subarray(0, 96), PASS))).toBe("ERR_KDF_LIMIT");
    expect(performance.now() - t0).toBeLessThan(200);
    expect(spy.derive).not.toHaveBeenCalled();
  });

  it("rejects a header claiming huge p (work cap) before running the KDF", async () => {
    const good = await seal(Buffer.from("data"), PASS, PARAMS);
    spy.derive.mockClear();
    const forged = forgeHeader(good, (b) => {
      b.writeUInt32BE(2 ** 26, 12); // work 2^10·8·2^26 = 2^39; memory still 1 MiB
    });
    const t0 = performance.now();
    let err: unknown;
    try {
      await open(forged, PASS);
    } catch (e) {
      err = e;
    }
    expect(performance.now() - t0).toBeLessThan(200);
    expect(err).toEqual(
      expect.objectContaining({ code: "ERR_KDF_LIMIT", message: expect.stringContaining("--max-kdf-work") }),
    );
    expect(spy.derive).not.toHaveBeenCalled();
  });

  it("honours caller limits", async () => {
    const good = await seal(Buffer.from("data"), PASS, PARAMS);
    const mem = kdfMemoryBytes(PARAMS);
    expect((await open(good, PASS, { maxMemoryBytes: mem, maxWork: 1024 * 8 })).toString()).toBe("data");
    expect(await codeOf(() => open(good, PASS, { maxMemoryBytes: mem - 1, maxWork: 2 ** 28 }))).toBe("ERR_KDF_LIMIT");
    expect(await codeOf(() => open(good, PASS, { maxMemoryBytes: 2 ** 31, maxWork: 1024 * 8 - 1 }))).toBe(
      "ERR_KDF_LIMIT",
    );
  });

  it("rejects insane parameters in a header with a valid checksum", async () => {
    const good = await seal(Buffer.from("data"), PASS, PARAMS);
    spy.derive.mockClear();
    const edits: Array<(b: Buffer) => void> = [
      (b) => (b[7] = 0),
      (b) => (b[7] = 64),
      (b) => (b[7] = 255),
      (b) => b.writeUInt32BE(0, 8),
      (b) => b.writeUInt32BE(0, 12),
      (b) => (b.writeUInt32BE(2 ** 15, 8), b.writeUInt32BE(2 ** 15, 12)),
    ];
    for (const edit of edits) {
      const forged = forgeHeader(good, edit);
      expect(() => parseContainerHeader(forged.subarray(0, 64))).toThrow(
        expect.objectContaining({ code: "ERR_SCRYPT_PARAMS" }),
      );
      expect(await codeOf(() => open(forged, PASS))).toBe("ERR_SCRYPT_PARAMS");
    }
    expect(spy.derive).not.toHaveBeenCalled();
  });

  it("rejects format version 1 even with a valid checksum", async () => {
    const good = await seal(Buffer.from("data"), PASS, PARAMS);
    const forged = forgeHeader(good, (b) => (b[6] = 1));
    expect(await codeOf(() => open(forged, PASS))).toBe("ERR_SCRYPT_FORMAT");
  });
});

describe("tampering", () => {
  const plain = pseudoRandomBytes(300, 42);
  let sealedPromise: Promise<Buffer> | undefined;
  const sealed = (): Promise<Buffer> => (sealedPromise ??= seal(plain, PASS, PARAMS));

  const n = plain.length;
  const regions: Array<{ name: string; from: number; to: number; code: ErrorCode }> = [
    { name: "magic", from: 0, to: 6, code: "ERR_SCRYPT_FORMAT" },
    { name: "version", from: 6, to: 7, code: "ERR_SCRYPT_FORMAT" },
    { name: "logN", from: 7, to: 8, code: "ERR_SCRYPT_HEADER_CHECKSUM" },
    { name: "r", from: 8, to: 12, code: "ERR_SCRYPT_HEADER_CHECKSUM" },
    { name: "p", from: 12, to: 16, code: "ERR_SCRYPT_HEADER_CHECKSUM" },
    { name: "salt", from: 16, to: 48, code: "ERR_SCRYPT_HEADER_CHECKSUM" },
    { name: "checksum", from: 48, to: 64, code: "ERR_SCRYPT_HEADER_CHECKSUM" },
    { name: "signature", from: 64, to: 96, code: "ERR_PASSPHRASE_WRONG" },
    { name: "ciphertext", from: 96, to: 96 + n, code: "ERR_CHUNK_AUTH" },
    { name: "mac", from: 96 + n, to: 128 + n, code: "ERR_CHUNK_AUTH" },
  ];

  for (const region of regions) {
    it(`rejects a flipped bit in every byte of the ${region.name}`, async () => {
      const good = await sealed();
      for (let i = region.from; i < region.to; i++) {
        const bad = Buffer.from(good);
        bad[i] = (bad[i] as number) ^ (1 << (i % 8));
        expect(await codeOf(() => open(bad, PASS)), `byte ${i}`).toBe(region.code);
        expect(await codeOf(() => streamOpen(bad, PASS, 17)), `byte ${i} (streaming)`).toBe(region.code);
      }
    });
  }

  it("rejects truncation and extension by one byte", async () => {
    const good = await sealed();
    expect(await codeOf(() => open(good.subarray(0, good.length - 1), PASS))).toBe("ERR_CHUNK_AUTH");
    expect(await codeOf(() => streamOpen(good.subarray(0, good.length - 1), PASS))).toBe("ERR_CHUNK_AUTH");
    const longer = Buffer.concat([good, Buffer.from([0])]);
    expect(await codeOf(() => open(longer, PASS))).toBe("ERR_CHUNK_AUTH");
    expect(await codeOf(() => streamOpen(longer, PASS))).toBe("ERR_CHUNK_AUTH");
  });

  it("rejects an empty-plaintext container cut below 128 bytes", async () => {
    const empty = await seal(Buffer.alloc(0), PASS, PARAMS);
    expect(empty.length).toBe(CONTAINER_OVERHEAD);
    expect((await open(empty, PASS)).length).toBe(0);
    expect(await codeOf(() => open(empty.subarray(0, 127), PASS))).toBe("ERR_SCRYPT_FORMAT");
    expect(await codeOf(() => open(Buffer.alloc(0), PASS))).toBe("ERR_SCRYPT_FORMAT");
    expect(await codeOf(() => ContainerOpener.create(empty.subarray(0, 95), PASS))).toBe("ERR_SCRYPT_FORMAT");
    expect(await codeOf(() => ContainerOpener.create(empty.subarray(0, 63), PASS))).toBe("ERR_SCRYPT_FORMAT");
    expect(await codeOf(() => ContainerOpener.create(empty.subarray(0, 97), PASS))).toBe("ERR_INTERNAL");
  });

  it("rejects a wrong passphrase", async () => {
    const good = await sealed();
    expect(await codeOf(() => open(good, Buffer.from("test passphrasE")))).toBe("ERR_PASSPHRASE_WRONG");
    expect(await codeOf(() => streamOpen(good, Buffer.from("")))).toBe("ERR_PASSPHRASE_WRONG");
  });

  it("rejects a MAC of the wrong length and refuses misuse of the opener", async () => {
    const good = await sealed();
    const ct = good.subarray(96, 96 + n);
    const o1 = await ContainerOpener.create(good.subarray(0, 96), PASS);
    o1.authenticate(ct);
    expect(() => o1.verify(good.subarray(96 + n, 127 + n))).toThrow(
      expect.objectContaining({ code: "ERR_CHUNK_AUTH" }),
    );
    expect(() => o1.decrypt(ct)).toThrow(expect.objectContaining({ code: "ERR_INTERNAL" }));
    expect(() => o1.verify(good.subarray(96 + n))).toThrow(expect.objectContaining({ code: "ERR_INTERNAL" }));

    const o2 = await ContainerOpener.create(good.subarray(0, 96), PASS);
    o2.authenticate(ct);
    o2.verify(good.subarray(96 + n));
    expect(o2.verified).toBe(true);
    expect(() => o2.authenticate(ct)).toThrow(expect.objectContaining({ code: "ERR_INTERNAL" }));
    expect(o2.decrypt(ct.subarray(0, 100)).equals(plain.subarray(0, 100))).toBe(true);
    const rest = Buffer.from(ct.subarray(100));
    o2.decryptInPlace(rest);
    expect(rest.equals(plain.subarray(100))).toBe(true);
    // More plaintext than was authenticated is refused.
    expect(() => o2.decrypt(Buffer.alloc(1))).toThrow(expect.objectContaining({ code: "ERR_INTERNAL" }));
  });
});

describe("streaming sealer", () => {
  const plain = pseudoRandomBytes(70_001, 7);
  const salt = pseudoRandomBytes(SALT_SIZE, 99);

  function sealPieces(s: ContainerSealer, sizes: () => number): Buffer {
    const parts = [s.header()];
    for (let off = 0; off < plain.length;) {
      const len = Math.min(sizes(), plain.length - off);
      parts.push(s.update(plain.subarray(off, off + len)));
      off += len;
    }
    parts.push(s.final());
    return Buffer.concat(parts);
  }

  it("equals one-shot seal for odd piece sizes, fromKeys and updateInPlace", async () => {
    const oneShot = await seal(plain, PASS, PARAMS, salt);
    expect(oneShot.length).toBe(plain.length + CONTAINER_OVERHEAD);
    expect((await open(oneShot, PASS)).equals(plain)).toBe(true);

    for (const size of [1, 15, 16, 17, 4096]) {
      const s = await ContainerSealer.create(PASS, PARAMS, salt);
      expect(sealPieces(s, () => size).equals(oneShot), `pieces of ${size}`).toBe(true);
    }
    const keys = await deriveKeys(PASS, salt, PARAMS);
    for (const seed of [1, 2, 3]) {
      const next = prng(seed);
      const s = ContainerSealer.fromKeys(keys, PARAMS, salt);
      // Sizes 0..4999, so empty updates are covered too.
      expect(sealPieces(s, () => next() % 5000).equals(oneShot), `random split ${seed}`).toBe(true);
    }

    // updateInPlace, with odd piece sizes crossing the internal slice size.
    const s = ContainerSealer.fromKeys(keys, PARAMS, salt);
    const parts = [s.header()];
    const copy = Buffer.from(plain);
    const next = prng(11);
    for (let off = 0; off < copy.length;) {
      const len = Math.min(1 + (next() % 70_000), copy.length - off);
      s.updateInPlace(copy.subarray(off, off + len));
      off += len;
    }
    parts.push(copy, s.final());
    expect(Buffer.concat(parts).equals(oneShot)).toBe(true);
  });

  it("uses a fresh random salt by default", async () => {
    const a = await seal(Buffer.from("x"), PASS, PARAMS);
    const b = await seal(Buffer.from("x"), PASS, PARAMS);
    expect(a.subarray(16, 48).equals(b.subarray(16, 48))).toBe(false);
  });

  it("enforces the call order and argument sizes", async () => {
    const keys = await deriveKeys(PASS, salt, PARAMS);
    const s = ContainerSealer.fromKeys(keys, PARAMS, salt);
    expect(() => s.update(Buffer.from("x"))).toThrow(expect.objectContaining({ code: "ERR_INTERNAL" }));
    expect(() => s.final()).toThrow(expect.objectContaining({ code: "ERR_INTERNAL" }));
    s.header();
    expect(() => s.header()).toThrow(expect.objectContaining({ code: "ERR_INTERNAL" }));
    s.final();
    expect(() => s.update(Buffer.from("x"))).toThrow(expect.objectContaining({ code: "ERR_INTERNAL" }));
    expect(() => s.final()).toThrow(expect.objectContaining({ code: "ERR_INTERNAL" }));
    expect(() => ContainerSealer.fromKeys(keys, PARAMS, salt.subarray(1))).toThrow(
      expect.objectContaining({ code: "ERR_INTERNAL" }),
    );
    expect(await codeOf(() => ContainerSealer.create(PASS, PARAMS, Buffer.alloc(31)))).toBe("ERR_INTERNAL");
  });
});
