/**
 * The scrypt KDF itself (RFC 7914), from one of three implementations that give the same bytes.
 * Key derivation is most of the CPU of a backup or a restore, so the fastest one that works here:
 *
 * - our WebAssembly SIMD core on worker threads (wasm-kdf.ts, romix-wat.ts): ~0.55 s per logN-18
 *   key on this project's machine, and its memory is reused from key to key. Used wherever the
 *   engine compiles it and a known answer matches; keys above 4 GiB of memory go to the next one.
 * - Tarsnap's, from the system's libscrypt-kdf (Debian: libscrypt-kdf1), called through koffi: the
 *   code the stock `scrypt` tool runs, ~0.85 s per logN-18 key here, 1.2–1.35× faster than
 *   node:crypto's. It also takes N ≥ 2^(16·r), which OpenSSL refuses.
 * - node:crypto's (OpenSSL's portable C), wherever the library or koffi is missing, or the library
 *   fails a known-answer check against node:crypto when it is loaded.
 *
 * All run on threads of their own (workers, koffi's async pool, libuv's pool), never on the event loop.
 */

import { scrypt, scryptSync } from "node:crypto";
import { createRequire } from "node:module";
import type Koffi from "koffi";
import type { KoffiFunc, LibraryHandle } from "koffi";
import type { ScryptParams } from "./params.js";
import { WasmScrypt } from "./wasm-kdf.js";

export interface ScryptKdf {
  /** What derives the keys, for messages and the benchmark. */
  readonly name: string;
  /**
   * scrypt(passphrase, salt, 2^logN, r, p, keyLength). `maxmem` bounds node:crypto's allocation
   * (parameters are validated and capped before either implementation sees them).
   */
  derive(
    passphrase: Uint8Array,
    salt: Uint8Array,
    params: ScryptParams,
    keyLength: number,
    maxmem: number,
  ): Promise<Buffer>;
}

export const NODE_SCRYPT: ScryptKdf = {
  name: "node:crypto (OpenSSL)",
  derive: (passphrase, salt, params, keyLength, maxmem) =>
    new Promise((resolve, reject) => {
      scrypt(passphrase, salt, keyLength, { N: 2 ** params.logN, r: params.r, p: params.p, maxmem }, (err, key) =>
        err ? reject(err) : resolve(key),
      );
    }),
};

/** Where libscrypt-kdf may be found: its soname first, then the unversioned development link. */
export const LIBSCRYPT_KDF_NAMES: readonly string[] =
  process.platform === "darwin"
    ? ["libscrypt-kdf.1.dylib", "libscrypt-kdf.dylib"]
    : ["libscrypt-kdf.so.1", "libscrypt-kdf.so"];

/** Newer releases export scrypt_kdf; 1.3.1 (Debian 12) exports the same function as crypto_scrypt. */
const SYMBOLS = ["scrypt_kdf", "crypto_scrypt"];

type CryptoScrypt = KoffiFunc<
  (
    passwd: Uint8Array,
    passwdlen: number,
    salt: Uint8Array,
    saltlen: number,
    N: number,
    r: number,
    p: number,
    buf: Uint8Array,
    buflen: number,
  ) => number
>;

/** The known-answer check a library must pass before it derives any key: cheap, and with r and p not 1. */
const CHECK: { passphrase: Buffer; salt: Buffer; params: ScryptParams } = {
  passphrase: Buffer.from("qbackup known answer"),
  salt: Buffer.from("libscrypt-kdf against node:crypto"),
  params: { logN: 8, r: 8, p: 2 },
};
const CHECK_KEY_LENGTH = 64;

function signature(symbol: string): string {
  return (
    `int ${symbol}(const uint8_t *passwd, size_t passwdlen, const uint8_t *salt, size_t saltlen, ` +
    `uint64_t N, uint32_t r, uint32_t p, uint8_t *buf, size_t buflen)`
  );
}

function bind(koffi: typeof Koffi, file: string): CryptoScrypt | null {
  let lib: LibraryHandle;
  try {
    lib = koffi.load(file);
  } catch {
    return null;
  }
  for (const symbol of SYMBOLS) {
    try {
      return lib.func(signature(symbol)) as unknown as CryptoScrypt;
    } catch {
      // not exported under this name
    }
  }
  lib.unload();
  return null;
}

/**
 * libscrypt-kdf as a ScryptKdf, from the first of `names` that loads and gives the same key as
 * node:crypto on a known answer; null when none does (or koffi is unavailable here).
 */
export function loadLibscryptKdf(names: readonly string[] = LIBSCRYPT_KDF_NAMES): ScryptKdf | null {
  let koffi: typeof Koffi;
  try {
    koffi = createRequire(import.meta.url)("koffi") as typeof Koffi;
  } catch {
    return null;
  }
  for (const file of names) {
    const fn = bind(koffi, file);
    if (fn === null) continue;
    // The first call also lets the library pick its SSE2 or portable core, before any two threads could race to.
    const { passphrase, salt, params } = CHECK;
    const got = Buffer.alloc(CHECK_KEY_LENGTH);
    const status = fn(
      passphrase,
      passphrase.length,
      salt,
      salt.length,
      2 ** params.logN,
      params.r,
      params.p,
      got,
      got.length,
    );
    const want = scryptSync(passphrase, salt, CHECK_KEY_LENGTH, { N: 2 ** params.logN, r: params.r, p: params.p });
    if (status !== 0 || !got.equals(want)) continue;
    return {
      name: `libscrypt-kdf (${file})`,
      derive: (passphrase, salt, params, keyLength) =>
        new Promise((resolve, reject) => {
          const key = Buffer.alloc(keyLength);
          const N = 2 ** params.logN;
          fn.async(
            passphrase,
            passphrase.length,
            salt,
            salt.length,
            N,
            params.r,
            params.p,
            key,
            keyLength,
            (err, status) => {
              if (err) reject(err instanceof Error ? err : new Error(String(err)));
              else if (status !== 0) reject(new Error(`libscrypt-kdf failed (out of memory or parameters it refuses)`));
              else resolve(key);
            },
          );
        }),
    };
  }
  return null;
}

let native: ScryptKdf | undefined;
let chosen: ScryptKdf | undefined;

/** libscrypt-kdf when it is here and sound, else node:crypto; loaded on first use (koffi and a KDF: ~20 ms). */
function nativeKdf(): ScryptKdf {
  native ??= loadLibscryptKdf() ?? NODE_SCRYPT;
  return native;
}

/**
 * The implementation every key derivation uses: the WebAssembly one where the engine runs it, with
 * libscrypt-kdf (when it is here and sound) or else node:crypto behind it.
 */
export function scryptKdf(): ScryptKdf {
  chosen ??= WasmScrypt.load(nativeKdf) ?? nativeKdf();
  return chosen;
}
