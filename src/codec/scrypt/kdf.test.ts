/**
 * The scrypt implementations agree byte for byte (RFC 7914 vectors and random parameters), the
 * WebAssembly one is used wherever the engine runs it, the library is found where CI installs it
 * (libscrypt-kdf1), and a missing library means node:crypto behind the WebAssembly one.
 */

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { LIBSCRYPT_KDF_NAMES, NODE_SCRYPT, loadLibscryptKdf, scryptKdf } from "./kdf.js";
import type { ScryptKdf } from "./kdf.js";
import { WasmScrypt } from "./wasm-kdf.js";

const MAXMEM = 64 * 1024 * 1024;

/** RFC 7914 §12, the vectors cheap enough for a unit test. */
const RFC_7914 = [
  {
    passphrase: "",
    salt: "",
    params: { logN: 4, r: 1, p: 1 },
    hex:
      "77d6576238657b203b19ca42c18a0497f16b4844e3074ae8dfdffa3fede21442" +
      "fcd0069ded0948f8326a753a0fc81f17e8d3e0fb2e0d3628cf35e20c38d18906",
  },
  {
    passphrase: "password",
    salt: "NaCl",
    params: { logN: 10, r: 8, p: 16 },
    hex:
      "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162" +
      "2eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640",
  },
];

/** libscrypt-kdf as this machine has it (null: not installed), loaded once for the whole file. */
const library = loadLibscryptKdf();
/** The WebAssembly one, with node:crypto behind it (Node 20+ compiles it everywhere). */
const wasm = WasmScrypt.load(() => NODE_SCRYPT)!;
/** The ones compared against node:crypto. */
const others: ScryptKdf[] = library === null ? [wasm] : [wasm, library];
const implementations: ScryptKdf[] = [NODE_SCRYPT, ...others];

describe("scrypt KDF implementations", () => {
  it("the WebAssembly one is used; libscrypt-kdf is found where it is installed (CI installs libscrypt-kdf1)", () => {
    if (process.env.CI !== undefined) expect(library).not.toBeNull();
    expect(wasm).not.toBeNull();
    expect(scryptKdf().name).toBe(wasm.name);
  });

  it("gives the RFC 7914 keys, whichever implementation", async () => {
    for (const kdf of implementations) {
      for (const v of RFC_7914) {
        const key = await kdf.derive(Buffer.from(v.passphrase), Buffer.from(v.salt), v.params, 64, MAXMEM);
        expect(key.toString("hex"), kdf.name).toBe(v.hex);
      }
    }
  });

  it("every implementation agrees with node:crypto on random passphrases, salts, parameters and key lengths", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ maxLength: 100 }),
        fc.uint8Array({ maxLength: 64 }),
        fc.integer({ min: 1, max: 10 }),
        fc.integer({ min: 1, max: 8 }),
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 200 }),
        async (passphrase, salt, logN, r, p, keyLength) => {
          const params = { logN, r, p };
          const [want, ...got] = await Promise.all(
            implementations.map((kdf) => kdf.derive(passphrase, salt, params, keyLength, MAXMEM)),
          );
          for (const [i, key] of got.entries()) expect(key.equals(want!), others[i]!.name).toBe(true);
        },
      ),
      { numRuns: 60 },
    );
  });

  it("runs derivations side by side without mixing their keys", async () => {
    for (const kdf of implementations) {
      const salts = Array.from({ length: 6 }, (_, i) => Buffer.alloc(32, i));
      const params = { logN: 12, r: 8, p: 1 };
      const together = await Promise.all(salts.map((s) => kdf.derive(Buffer.from("pw"), s, params, 64, MAXMEM)));
      const expected = await Promise.all(
        salts.map((s) => NODE_SCRYPT.derive(Buffer.from("pw"), s, params, 64, MAXMEM)),
      );
      expect(
        together.map((k) => k.toString("hex")),
        kdf.name,
      ).toEqual(expected.map((k) => k.toString("hex")));
    }
  });

  it("libscrypt-kdf and the WebAssembly one derive keys for parameters OpenSSL refuses (N ≥ 2^(16·r)), alike", async () => {
    const params = { logN: 16, r: 1, p: 1 };
    await expect(NODE_SCRYPT.derive(Buffer.from("pw"), Buffer.alloc(32), params, 64, MAXMEM)).rejects.toThrow();
    const key = await wasm.derive(Buffer.from("pw"), Buffer.alloc(32), params, 64, MAXMEM);
    expect(key.length).toBe(64);
    if (library === null) return; // nothing to compare it with here
    expect(key.equals(await library.derive(Buffer.from("pw"), Buffer.alloc(32), params, 64, MAXMEM))).toBe(true);
  });

  it("is null when no named library loads or has the function", () => {
    expect(loadLibscryptKdf(["libqbackup-does-not-exist.so.1"])).toBeNull();
    expect(loadLibscryptKdf([])).toBeNull();
    // a real library without either symbol
    expect(loadLibscryptKdf(["libz.so.1"])).toBeNull();
  });

  it("looks for the library by its soname first", () => {
    expect(LIBSCRYPT_KDF_NAMES[0]).toMatch(/^libscrypt-kdf\.(so\.1|1\.dylib)$/);
  });
});
