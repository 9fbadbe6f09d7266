/**
 * Property tests of the `.hmac` file parser (spec §3.7, §5.1): any dgst line in the forms OpenSSL
 * prints (any label, any input name, hex in either case, surrounding blanks) gives back its digest;
 * random bytes and edits of valid lines either give a digest or throw QbackupError ERR_CHUNK_AUTH,
 * never another exception.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { applyByteEdits, byteEditArb } from "../../../test/support/byte-edits.js";
import { QbackupError } from "../../errors.js";
import { MAX_HMAC_FILE_BYTES, parseDgstOutput } from "./index.js";

const ROUND_TRIP_RUNS = 500;
const RANDOM_RUNS = 1500;
const MAX_DIGEST_BYTES = 64;
const MAX_EDITS = 4;
const LABELS = ["", "SHA512", "SHA2-512", "HMAC-SHA512", "HMAC-SHA2-512", "MD5", "HMAC-SHA1"];
const PRINTABLE = Array.from({ length: 0x7e - 0x20 + 1 }, (_, i) => String.fromCharCode(0x20 + i));
/** What str.trim() removes around the line, as a file may carry it. */
const BLANKS = [" ", "\t", "\n", "\r\n", "\v", "\f"];
const INTERESTING_BYTES = [0x00, 0x0a, 0x0d, 0x20, 0x28, 0x29, 0x3d, 0x30, 0x61, 0x46, 0x67, 0x7f, 0x80, 0xff];

const blanksArb = fc.array(fc.constantFrom(...BLANKS), { maxLength: 3 }).map((b) => b.join(""));

interface DgstLine {
  text: string;
  digest: Buffer;
}

const lineArb: fc.Arbitrary<DgstLine> = fc
  .record({
    label: fc.oneof(fc.constantFrom(...LABELS), fc.string({ unit: fc.constantFrom(..."ABZaz09-"), maxLength: 12 })),
    name: fc.oneof(
      fc.constantFrom("stdin", "backup-header", "vm1/private.img.000", "a (b)", "x)= ab"),
      fc.string({ unit: fc.constantFrom(...PRINTABLE), maxLength: 30 }),
    ),
    digest: fc.uint8Array({ minLength: 1, maxLength: MAX_DIGEST_BYTES }).map((d) => Buffer.from(d)),
    upper: fc.boolean(),
    before: blanksArb,
    after: blanksArb,
  })
  .map(({ label, name, digest, upper, before, after }) => {
    const hex = digest.toString("hex");
    return { text: `${before}${label}(${name})= ${upper ? hex.toUpperCase() : hex}${after}`, digest };
  });

const editArb = byteEditArb(INTERESTING_BYTES, 1);

/** A digest of at least one byte, or ERR_CHUNK_AUTH. */
function parseOrAuthError(bytes: Uint8Array): void {
  let digest: Buffer;
  try {
    digest = parseDgstOutput(bytes);
  } catch (err) {
    if (!(err instanceof QbackupError)) throw err;
    expect(err.code).toBe("ERR_CHUNK_AUTH");
    expect(err.message).not.toMatch(/[\r\n]/);
    return;
  }
  expect(Buffer.isBuffer(digest)).toBe(true);
  expect(digest.length).toBeGreaterThan(0);
  expect(digest.length * 2).toBeLessThanOrEqual(bytes.length);
}

describe("parseDgstOutput", () => {
  it("returns the digest of any well-formed dgst line", () => {
    fc.assert(
      fc.property(lineArb, ({ text, digest }) => {
        expect(parseDgstOutput(Buffer.from(text, "latin1")).equals(digest)).toBe(true);
      }),
      { numRuns: ROUND_TRIP_RUNS },
    );
  });

  it("edits of valid lines give a digest or ERR_CHUNK_AUTH, nothing else", () => {
    fc.assert(
      fc.property(lineArb, fc.array(editArb, { minLength: 1, maxLength: MAX_EDITS }), (line, edits) => {
        parseOrAuthError(applyByteEdits(Buffer.from(line.text, "latin1"), edits));
      }),
      { numRuns: RANDOM_RUNS },
    );
  });

  it("random bytes give a digest or ERR_CHUNK_AUTH, nothing else", () => {
    const bytes = fc.oneof(
      fc.uint8Array({ maxLength: 200 }),
      fc.array(fc.constantFrom(...INTERESTING_BYTES), { maxLength: 200 }).map((a) => Uint8Array.from(a)),
      fc.uint8Array({ minLength: MAX_HMAC_FILE_BYTES - 1, maxLength: MAX_HMAC_FILE_BYTES + 1 }),
    );
    fc.assert(fc.property(bytes, parseOrAuthError), { numRuns: RANDOM_RUNS });
  });
});
