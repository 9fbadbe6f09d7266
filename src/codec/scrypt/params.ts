/**
 * scrypt parameters of a Tarsnap `scrypt` container (spec §4.6): sanity checks, resource caps, and the KDF.
 * The KDF itself is in kdf.ts; this file only validates and bounds its inputs, because N, r and p
 * of a container we read come from unauthenticated bytes (spec §10).
 */

import { QbackupError } from "../../errors.js";
import { scryptKdf } from "./kdf.js";

export interface ScryptParams {
  /** N = 2^logN. */
  logN: number;
  r: number;
  p: number;
}

/** Caps applied before running the KDF on parameters read from a container. */
export interface KdfLimits {
  /** Upper bound for 128·r·N (the memory scrypt needs), in bytes. */
  maxMemoryBytes: number;
  /** Upper bound for N·r·p (proportional to the CPU time scrypt needs). */
  maxWork: number;
}

/** Spec §4.6: 128·r·N ≤ 2 GiB, N·r·p ≤ 2^28. */
export const DEFAULT_KDF_LIMITS: KdfLimits = Object.freeze({
  maxMemoryBytes: 2 * 1024 ** 3,
  maxWork: 2 ** 28,
});

/** The command-line options that raise the caps; named in ERR_KDF_LIMIT messages. */
export const KDF_MEMORY_OPTION = "--max-kdf-memory";
export const KDF_WORK_OPTION = "--max-kdf-work";

/** Parameter sanity as checked by Tarsnap's `scrypt dec` (and the container format). */
export const MIN_LOG_N = 1;
export const MAX_LOG_N = 63;
/** r and p are stored as uint32. */
export const MAX_UINT32 = 0xffff_ffff;
/** r·p must stay strictly below 2^30 (RFC 7914). */
export const MAX_R_TIMES_P_EXCLUSIVE = 2 ** 30;

/** scrypt output length: 32 bytes AES-256 key followed by 32 bytes HMAC-SHA256 key. */
export const DERIVED_KEY_SIZE = 64;
export const ENC_KEY_SIZE = 32;
export const MAC_KEY_SIZE = 32;

/** Bytes of one scrypt block per unit of r (128·r bytes per block). */
const BLOCK_BYTES_PER_R = 128;
/** Headroom added to `maxmem` on top of OpenSSL's exact need, so rounding never trips it. */
const MAXMEM_HEADROOM_BYTES = 1024 * 1024;
/**
 * Node's `crypto.scrypt` takes N as a uint32, so logN 31 is the most it can run; the other
 * implementations (kdf.ts) are held to the same bound, so what opens does not depend on which one
 * runs. (OpenSSL also refuses N ≥ 2^(16·r), which Tarsnap accepts; the WebAssembly implementation
 * and libscrypt-kdf derive those keys.)
 */
const NODE_MAX_LOG_N = 31;

export interface ContainerKeys {
  /** AES-256-CTR key (DK bytes 0..31). */
  encKey: Buffer;
  /** HMAC-SHA256 key (DK bytes 32..63). */
  macKey: Buffer;
}

function isUint32(v: number): boolean {
  return Number.isInteger(v) && v >= 0 && v <= MAX_UINT32;
}

function describe(p: ScryptParams): string {
  return `logN ${p.logN}, r ${p.r}, p ${p.p}`;
}

/** Throws ERR_SCRYPT_PARAMS unless 1 ≤ logN ≤ 63, r and p are non-zero uint32 values and r·p < 2^30. */
export function validateScryptParams(p: ScryptParams): void {
  if (!Number.isInteger(p.logN) || p.logN < MIN_LOG_N || p.logN > MAX_LOG_N) {
    throw new QbackupError(
      "ERR_SCRYPT_PARAMS",
      `scrypt container: logN ${p.logN} is out of range (${MIN_LOG_N}..${MAX_LOG_N})`,
    );
  }
  if (!isUint32(p.r) || p.r === 0) {
    throw new QbackupError("ERR_SCRYPT_PARAMS", `scrypt container: r ${p.r} must be an integer in 1..${MAX_UINT32}`);
  }
  if (!isUint32(p.p) || p.p === 0) {
    throw new QbackupError("ERR_SCRYPT_PARAMS", `scrypt container: p ${p.p} must be an integer in 1..${MAX_UINT32}`);
  }
  if (p.r * p.p >= MAX_R_TIMES_P_EXCLUSIVE) {
    throw new QbackupError(
      "ERR_SCRYPT_PARAMS",
      `scrypt container: r·p = ${p.r * p.p} must be below 2^30 (${describe(p)})`,
    );
  }
}

function memoryBig(p: ScryptParams): bigint {
  return BigInt(BLOCK_BYTES_PER_R) * BigInt(p.r) * (1n << BigInt(p.logN));
}

function workBig(p: ScryptParams): bigint {
  return (1n << BigInt(p.logN)) * BigInt(p.r) * BigInt(p.p);
}

/** 128·r·N: the memory the KDF needs (inexact above 2^53, which is far above any cap). */
export function kdfMemoryBytes(p: ScryptParams): number {
  return BLOCK_BYTES_PER_R * p.r * 2 ** p.logN;
}

/** N·r·p: the KDF's work factor (inexact above 2^53). */
export function kdfWork(p: ScryptParams): number {
  return 2 ** p.logN * p.r * p.p;
}

function humanBytes(n: bigint): string {
  const units: Array<[bigint, string]> = [
    [1n << 40n, "TiB"],
    [1n << 30n, "GiB"],
    [1n << 20n, "MiB"],
    [1n << 10n, "KiB"],
  ];
  for (const [size, unit] of units) {
    if (n >= size && n % size === 0n) return `${n / size} ${unit}`;
  }
  return `${n} bytes`;
}

function limitBig(v: number): bigint {
  // A cap that is not a finite non-negative number is a caller bug; treat Infinity as "no cap".
  if (v === Number.POSITIVE_INFINITY) return -1n;
  if (!Number.isFinite(v) || v < 0) {
    throw new QbackupError("ERR_INTERNAL", `scrypt container: invalid kdf limit ${v}`);
  }
  return BigInt(Math.floor(v));
}

/**
 * Throws ERR_KDF_LIMIT when 128·r·N > maxMemoryBytes or N·r·p > maxWork (ERR_SCRYPT_PARAMS for insane params).
 * Must run before the KDF on any parameters read from a container.
 */
export function checkKdfLimits(p: ScryptParams, limits: KdfLimits): void {
  validateScryptParams(p);
  const mem = memoryBig(p);
  const memCap = limitBig(limits.maxMemoryBytes);
  if (memCap >= 0n && mem > memCap) {
    throw new QbackupError(
      "ERR_KDF_LIMIT",
      `scrypt container: kdf needs ${mem} bytes (${humanBytes(mem)}) of memory for ${describe(p)}, ` +
        `over the cap of ${memCap} bytes (${humanBytes(memCap)}); raise it with ${KDF_MEMORY_OPTION}`,
      { hint: `only raise ${KDF_MEMORY_OPTION} if you trust the backup and this machine has the memory` },
    );
  }
  const work = workBig(p);
  const workCap = limitBig(limits.maxWork);
  if (workCap >= 0n && work > workCap) {
    throw new QbackupError(
      "ERR_KDF_LIMIT",
      `scrypt container: kdf work N·r·p = ${work} for ${describe(p)} is over the cap of ${workCap}; ` +
        `raise it with ${KDF_WORK_OPTION}`,
      { hint: `only raise ${KDF_WORK_OPTION} if you trust the backup; the kdf may run for a long time` },
    );
  }
}

/**
 * DK = scrypt(passphrase, salt, N, r, p, 64); encKey = DK[0..31], macKey = DK[32..63].
 * Validates the parameters' sanity but does NOT apply KdfLimits: callers handling untrusted
 * parameters call checkKdfLimits first.
 */
export async function deriveKeys(
  passphrase: Uint8Array,
  salt: Uint8Array,
  params: ScryptParams,
): Promise<ContainerKeys> {
  validateScryptParams(params);
  const N = 2 ** params.logN;
  // OpenSSL needs 128·r·(N+2) for V plus 128·r·p for B; Node's maxmem must be a safe integer.
  const need = BLOCK_BYTES_PER_R * params.r * (N + 2 + params.p) + MAXMEM_HEADROOM_BYTES;
  if (params.logN > NODE_MAX_LOG_N || !Number.isSafeInteger(need)) {
    throw new QbackupError(
      "ERR_SCRYPT_PARAMS",
      `scrypt container: parameters ${describe(params)} are too large for this implementation`,
    );
  }
  const kdf = scryptKdf();
  let dk: Buffer;
  try {
    dk = await kdf.derive(passphrase, salt, params, DERIVED_KEY_SIZE, need);
  } catch (err) {
    // OpenSSL refuses some combinations Tarsnap accepts (e.g. N ≥ 2^(16·r) for small r).
    throw new QbackupError(
      "ERR_SCRYPT_PARAMS",
      `scrypt container: ${kdf.name} refused parameters ${describe(params)}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  return { encKey: dk.subarray(0, ENC_KEY_SIZE), macKey: dk.subarray(ENC_KEY_SIZE, DERIVED_KEY_SIZE) };
}
