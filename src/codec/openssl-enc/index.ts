/** Public API of the `openssl enc` salted-stream codec (format v3 decryption, spec §5.1). */
export { EVP_DIGEST, MAX_DERIVED_BYTES, evpBytesToKey } from "./evp-bytes-to-key.js";
export type { DerivedKey } from "./evp-bytes-to-key.js";
export { SALTED_HEADER_BYTES, SALTED_MAGIC, SALT_BYTES, SaltedDecryptor, cipherSizes } from "./salted-decryptor.js";
