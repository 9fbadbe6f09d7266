/**
 * Allow-lists for the algorithm and program names a backup-header may carry (spec §3.4 rule 10, §3.6).
 * The reference reader asks the local OpenSSL which digests and ciphers exist; we use fixed lists
 * instead (no shelling out, same answer on every machine), which makes us stricter, never looser.
 */

/** Compression filters the reference reader always accepts (case-sensitive: the name is run as a program). */
export const ALWAYS_ALLOWED_FILTERS: readonly string[] = Object.freeze(["gzip", "bzip2", "xz"]);

/** Compression filters accepted only when the program is installed on this machine. */
export const OPTIONAL_FILTERS: readonly string[] = Object.freeze(["lzma", "pbzip2", "pigz", "zstd", "zstdmt"]);

/** Not a digest: the v4 marker meaning "authenticated by scrypt containers". Valid for both algorithm keys. */
export const SCRYPT_ALGORITHM = "scrypt";

/** HMAC digests (lower-case) with their output length in bytes; the length lets a reader pick candidates by hex length (§3.7). */
export const DIGEST_OUTPUT_BYTES: Readonly<Record<string, number>> = Object.freeze({
  sha512: 64,
  sha1: 20,
  sha256: 32,
  sha384: 48,
  sha224: 28,
  md5: 16,
});

export interface CipherSizes {
  readonly keyBytes: number;
  readonly ivBytes: number;
}

const AES_BLOCK_BYTES = 16;
const AES_KEY_BYTES: Readonly<Record<string, number>> = { "128": 16, "192": 24, "256": 32 };
const AES_MODES: readonly string[] = ["cbc", "ctr", "cfb", "ofb"];

/** v2/v3 `openssl enc` ciphers (lower-case) whose key and IV lengths we know: aes-{128,192,256}-{cbc,ctr,cfb,ofb}. */
export const CIPHER_SIZES: Readonly<Record<string, CipherSizes>> = Object.freeze(
  Object.fromEntries(
    Object.entries(AES_KEY_BYTES).flatMap(([bits, keyBytes]) =>
      AES_MODES.map((mode) => [`aes-${bits}-${mode}`, Object.freeze({ keyBytes, ivBytes: AES_BLOCK_BYTES })]),
    ),
  ),
);

function hasOwn(record: object, key: string): boolean {
  return Object.prototype.hasOwnProperty.call(record, key);
}

/** `hmac-algorithm` check: an allow-listed digest or `scrypt`, compared case-insensitively. */
export function isKnownHmacAlgorithm(name: string): boolean {
  const lower = name.toLowerCase();
  return lower === SCRYPT_ALGORITHM || hasOwn(DIGEST_OUTPUT_BYTES, lower);
}

/** `crypto-algorithm` check: an allow-listed cipher or `scrypt`, compared case-insensitively. */
export function isKnownCryptoAlgorithm(name: string): boolean {
  const lower = name.toLowerCase();
  return lower === SCRYPT_ALGORITHM || hasOwn(CIPHER_SIZES, lower);
}

/** `compression-filter` check (case-sensitive, like the reference reader). */
export function isAllowedCompressionFilter(name: string, isFilterInstalled?: (name: string) => boolean): boolean {
  if (ALWAYS_ALLOWED_FILTERS.includes(name)) return true;
  return OPTIONAL_FILTERS.includes(name) && isFilterInstalled !== undefined && isFilterInstalled(name);
}

/** Whether a writer may name this filter at all (installation is the caller's business). */
export function isKnownCompressionFilter(name: string): boolean {
  return ALWAYS_ALLOWED_FILTERS.includes(name) || OPTIONAL_FILTERS.includes(name);
}
