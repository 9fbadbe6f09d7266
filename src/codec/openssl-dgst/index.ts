/** Public API of the v2/v3 `.hmac` codec: `openssl dgst -hmac` output and the HMAC check (spec §3.7, §5.1). */
export { MAX_HMAC_FILE_BYTES, parseDgstOutput } from "./parse.js";
export { HmacVerifier, headerHmacCandidates, hmacDigest } from "./hmac.js";
