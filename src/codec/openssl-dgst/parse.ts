/**
 * The text of a v2/v3 `.hmac` file: what `openssl dgst -<alg> -hmac <key>` printed (spec §5.1,
 * §3.7). R2/R3 (OpenSSL 1.0) wrote `(stdin)= <hex>`; newer OpenSSL prints `SHA2-512(stdin)= <hex>`,
 * `HMAC-SHA512(stdin)= <hex>` or `HMAC-SHA2-512(<file>)= <hex>`. Hand-written: one line of text.
 */
import { QbackupError } from "../../errors.js";

/** REF-R refuses larger `.hmac` files before reading them (spec §2.5). */
export const MAX_HMAC_FILE_BYTES = 4096;
/**
 * After trimming: an optional algorithm label, a parenthesised input name (no line break, may itself
 * contain parentheses), "= ", and the hex digest. Greedy `.*` makes the digest the text after the last "= ".
 */
const DGST_LINE_RE = /^[A-Za-z0-9-]*\(.*\)= ([0-9A-Fa-f]+)$/;
const WHAT = "hmac file";

function fail(message: string): never {
  throw new QbackupError("ERR_CHUNK_AUTH", `${WHAT}: ${message}`);
}

/** The digest bytes a `.hmac` file states. Anything but one well-formed dgst line → ERR_CHUNK_AUTH. */
export function parseDgstOutput(bytes: Uint8Array): Buffer {
  if (bytes.byteLength > MAX_HMAC_FILE_BYTES) fail(`${bytes.byteLength} bytes is more than ${MAX_HMAC_FILE_BYTES}`);
  for (const b of bytes) if (b > 0x7f) fail("contains non-ascii bytes");
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1").trim();
  if (text === "") fail("is empty");
  const m = DGST_LINE_RE.exec(text);
  if (m === null) fail('is not one "(stdin)= <hex>" line as printed by openssl dgst');
  const hex = m[1]!;
  if (hex.length % 2 !== 0) fail(`digest has an odd number (${hex.length}) of hex digits`);
  return Buffer.from(hex, "hex");
}
