/**
 * The WebAssembly scrypt: the committed module is what its text compiles to, it gives RFC 7914's
 * keys, queues keys beyond its workers, and hands to its fallback what it must not derive itself:
 * memory it cannot address, and everything once a worker's known answer came out wrong.
 */

import { describe, expect, it } from "vitest";
import { compileRomix, compileWat } from "../../../scripts/build-romix.js";
import { NODE_SCRYPT } from "./kdf.js";
import type { ScryptKdf } from "./kdf.js";
import type { ScryptParams } from "./params.js";
import { romixWat } from "./romix-wat.js";
import { ROMIX_WASM_BASE64 } from "./romix-wasm.js";
import { WasmScrypt } from "./wasm-kdf.js";

const MAXMEM = 64 * 1024 * 1024;

/** A fallback that records what it was asked and answers with a marker key. */
function recordingFallback(): ScryptKdf & { calls: ScryptParams[] } {
  const calls: ScryptParams[] = [];
  return {
    name: "recording fallback",
    calls,
    derive: (_passphrase, _salt, params, keyLength) => {
      calls.push(params);
      return Promise.resolve(Buffer.alloc(keyLength, 0xfb));
    },
  };
}

describe("WebAssembly scrypt", () => {
  it("is built from romix-wat.ts: the committed bytes are what the text compiles to today", async () => {
    const compiled = await compileRomix();
    expect(compiled.toString("base64"), "run `npm run build:romix` and commit the result").toBe(ROMIX_WASM_BASE64);
  });

  it("gives RFC 7914's logN-14 key (16 MiB of memory)", async () => {
    const kdf = WasmScrypt.load(() => NODE_SCRYPT)!;
    const key = await kdf.derive(
      Buffer.from("pleaseletmein"),
      Buffer.from("SodiumChloride"),
      { logN: 14, r: 8, p: 1 },
      64,
      MAXMEM,
    );
    expect(key.toString("hex")).toBe(
      "7023bdcb3afd7348461c06cd81fd38ebfda8fbba904f8e3ea9b543f6545da1f2" +
        "d5432955613f0fcf62d49705242a9af9e61e85dc0d651e40dfcf017b45575887",
    );
  });

  it("queues keys beyond its workers and gives each its own, also from a worker whose memory is larger than the key needs", async () => {
    const kdf = WasmScrypt.load(() => NODE_SCRYPT, { maxWorkers: 2 })!;
    const jobs = [10, 12, 9, 12, 11, 8, 10].map((logN, i) => ({
      salt: Buffer.alloc(16, i),
      params: { logN, r: 4, p: 1 },
    }));
    const keys = await Promise.all(jobs.map((j) => kdf.derive(Buffer.from("pw"), j.salt, j.params, 64, MAXMEM)));
    const expected = await Promise.all(
      jobs.map((j) => NODE_SCRYPT.derive(Buffer.from("pw"), j.salt, j.params, 64, MAXMEM)),
    );
    expect(keys.map((k) => k.toString("hex"))).toEqual(expected.map((k) => k.toString("hex")));
  });

  it("does not ask for its fallback (libscrypt-kdf's loading) while the module derives every key", async () => {
    let asked = 0;
    const kdf = WasmScrypt.load(() => {
      asked++;
      return NODE_SCRYPT;
    })!;
    await kdf.derive(Buffer.from("pw"), Buffer.alloc(32), { logN: 10, r: 8, p: 1 }, 64, MAXMEM);
    expect(asked).toBe(0);
    await kdf.derive(Buffer.from("pw"), Buffer.alloc(32), { logN: 22, r: 8, p: 1 }, 64, MAXMEM).catch(() => undefined);
    expect(asked).toBe(1); // 4 GiB: the fallback's turn (node:crypto refuses it under this maxmem)
  });

  it("leaves keys over 4 GiB of memory to the fallback, without starting a worker for them", async () => {
    const fallback = recordingFallback();
    const kdf = WasmScrypt.load(() => fallback)!;
    const huge = { logN: 22, r: 8, p: 1 }; // 4 GiB: V alone fills the 32-bit address space
    expect(kdf.fits(huge)).toBe(false);
    expect(kdf.fits({ logN: 21, r: 8, p: 1 })).toBe(true);
    const key = await kdf.derive(Buffer.from("pw"), Buffer.alloc(32), huge, 64, MAXMEM);
    expect(key.equals(Buffer.alloc(64, 0xfb))).toBe(true);
    expect(fallback.calls).toEqual([huge]);
  });

  it("gives up a module that fails the known answer: that key and every later one come from the fallback", async () => {
    // the same module with one Salsa20 rotation wrong: it runs, and derives wrong keys
    const text = romixWat();
    const broken = text.replace("(i32.const 7)", "(i32.const 8)").replace("(i32.const 25)", "(i32.const 24)");
    expect(broken).not.toBe(text);
    const fallback = recordingFallback();
    const kdf = WasmScrypt.load(() => fallback, { module: await compileWat(broken) })!;
    const params = { logN: 10, r: 8, p: 1 };
    const [a, b] = await Promise.all([
      kdf.derive(Buffer.from("pw"), Buffer.alloc(32), params, 64, MAXMEM),
      kdf.derive(Buffer.from("pw"), Buffer.alloc(32, 1), params, 64, MAXMEM),
    ]);
    expect(a.equals(Buffer.alloc(64, 0xfb)) && b.equals(Buffer.alloc(64, 0xfb))).toBe(true);
    expect(kdf.failure?.message).toMatch(/known answer/);
    await kdf.derive(Buffer.from("pw"), Buffer.alloc(32), params, 64, MAXMEM);
    expect(fallback.calls).toHaveLength(3);
  });

  it("is null where the bytes do not compile", () => {
    expect(WasmScrypt.load(() => NODE_SCRYPT, { module: Buffer.from("not wasm") })).toBeNull();
  });
});
