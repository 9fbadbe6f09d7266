/**
 * Property tests of the backup-header codec (spec §3.3, §3.4): random valid v4 inputs serialize and
 * parse back to the same values; random inputs the writer refuses fail with ERR_HEADER_MALFORMED; and
 * random byte edits of a valid header (or random bytes) either parse to a well-formed header or throw a
 * QbackupError, never any other exception.
 */
import { readFileSync } from "node:fs";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { applyByteEdits, byteEditArb } from "../../../test/support/byte-edits.js";
import { QbackupError, isQbackupError } from "../../errors.js";
import type { BackupHeader, BackupHeaderV4Input, ParseHeaderOptions } from "./index.js";
import {
  ALWAYS_ALLOWED_FILTERS,
  MAX_BACKUP_HEADER_BYTES,
  MAX_BACKUP_VERSION,
  MIN_BACKUP_VERSION,
  OPTIONAL_FILTERS,
  WRITTEN_BACKUP_VERSION,
  isValidBackupId,
  parseBackupHeader,
  serializeBackupHeaderV4,
} from "./index.js";

const GOLDEN = readFileSync(new URL("./testdata/golden-v4.backup-header", import.meta.url));
const KNOWN_FILTERS = [...ALWAYS_ALLOWED_FILTERS, ...OPTIONAL_FILTERS];
const ID_FIRST_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const ID_CHARS = `${ID_FIRST_CHARS}-`;
/** Room left for backup-id in a maximal header (the other lines take well under 200 bytes). */
const MAX_ID_LENGTH = MAX_BACKUP_HEADER_BYTES - 200;
/** Bytes the parser treats specially (line breaks, strip set, '=', '-', NUL, non-ASCII). */
const INTERESTING_BYTES = [
  0x00, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x2d, 0x3d, 0x30, 0x31, 0x34, 0x54, 0x7f, 0x80,
  0xff,
];
const MAX_EDITS = 6;
const ROUND_TRIP_RUNS = 300;
const MUTATION_RUNS = 1500;
const RANDOM_BYTES_RUNS = 500;

/** Any code point but a lone surrogate (fast-check's "binary" unit has a slow first use). */
const anyCharArb = fc
  .oneof(fc.integer({ min: 0, max: 0xd7ff }), fc.integer({ min: 0xe000, max: 0x10ffff }))
  .map((c) => String.fromCodePoint(c));

const idArb = fc
  .tuple(
    fc.constantFrom(...ID_FIRST_CHARS),
    fc.oneof(
      fc.string({ unit: fc.constantFrom(...ID_CHARS), maxLength: 40 }),
      fc.string({ unit: fc.constantFrom(...ID_CHARS), maxLength: MAX_ID_LENGTH }),
    ),
  )
  .map(([first, rest]) => first + rest);

const validInputArb: fc.Arbitrary<BackupHeaderV4Input> = fc.record({
  compressed: fc.boolean(),
  compressionFilter: fc.constantFrom(...KNOWN_FILTERS),
  backupId: idArb,
});

const byteArb = fc.oneof(fc.constantFrom(...INTERESTING_BYTES), fc.integer({ min: 0, max: 255 }));

const editArb = byteEditArb(INTERESTING_BYTES, 1);

const optionsArb: fc.Arbitrary<ParseHeaderOptions> = fc
  .record({
    forced: fc.option(fc.oneof(fc.constantFrom(...KNOWN_FILTERS, "-x", "a b", ""), fc.string({ maxLength: 8 })), {
      nil: undefined,
    }),
    installed: fc.subarray([...OPTIONAL_FILTERS]),
  })
  .map(({ forced, installed }) => ({
    ...(forced === undefined ? {} : { forcedCompressionFilter: forced }),
    isFilterInstalled: (name: string) => installed.includes(name),
  }));

/** Parse; on success the result must be a header the restore layer can rely on. */
function parseOrQbackupError(bytes: Uint8Array, options: ParseHeaderOptions): BackupHeader | QbackupError {
  let header: BackupHeader;
  try {
    header = parseBackupHeader(bytes, options);
  } catch (err) {
    expect(err).toBeInstanceOf(QbackupError);
    return err as QbackupError;
  }
  expect(Number.isInteger(header.version)).toBe(true);
  expect(header.version).toBeGreaterThanOrEqual(MIN_BACKUP_VERSION);
  expect(header.version).toBeLessThanOrEqual(MAX_BACKUP_VERSION);
  expect(typeof header.encrypted).toBe("boolean");
  expect(typeof header.compressed).toBe("boolean");
  if (header.version >= 4) expect(isValidBackupId(header.backupId ?? "")).toBe(true);
  if (header.version > MIN_BACKUP_VERSION) expect(header.hmacAlgorithm).toBeDefined();
  if (header.version >= 3 && header.compressed) expect(header.compressionFilter).toBeDefined();
  if (options.forcedCompressionFilter !== undefined) {
    expect(header.compressionFilter).toBe(options.forcedCompressionFilter);
  }
  return header;
}

describe("backup-header round trip", () => {
  it("serializes random valid v4 inputs and parses them back", () => {
    fc.assert(
      fc.property(validInputArb, (input) => {
        const bytes = serializeBackupHeaderV4(input);
        expect(bytes.length).toBeLessThanOrEqual(MAX_BACKUP_HEADER_BYTES);
        expect(parseBackupHeader(bytes, { isFilterInstalled: () => true })).toEqual({
          version: WRITTEN_BACKUP_VERSION,
          encrypted: true,
          compressed: input.compressed,
          compressionFilter: input.compressionFilter,
          hmacAlgorithm: "scrypt",
          backupId: input.backupId,
        });
      }),
      { numRuns: ROUND_TRIP_RUNS },
    );
  });

  it("refuses to write what it could not read back, with ERR_HEADER_MALFORMED", () => {
    const loose = fc.record({
      compressed: fc.boolean(),
      compressionFilter: fc.oneof(fc.constantFrom(...KNOWN_FILTERS), fc.string({ maxLength: 10 })),
      backupId: fc.oneof(idArb, fc.string({ maxLength: 20 }), fc.string({ unit: anyCharArb, maxLength: 20 })),
    });
    fc.assert(
      fc.property(loose, (input) => {
        let bytes: Buffer;
        try {
          bytes = serializeBackupHeaderV4(input);
        } catch (err) {
          expect(isQbackupError(err, "ERR_HEADER_MALFORMED")).toBe(true);
          return;
        }
        expect(parseBackupHeader(bytes, { isFilterInstalled: () => true }).backupId).toBe(input.backupId);
      }),
      { numRuns: ROUND_TRIP_RUNS },
    );
  });
});

describe("backup-header mutations", () => {
  it("byte edits of a valid header parse to a header or throw a QbackupError, nothing else", () => {
    const source = fc.oneof(
      fc.constant(GOLDEN),
      validInputArb.map((input) => serializeBackupHeaderV4(input)),
    );
    fc.assert(
      fc.property(source, fc.array(editArb, { minLength: 1, maxLength: MAX_EDITS }), optionsArb, (bytes, edits, o) => {
        parseOrQbackupError(applyByteEdits(bytes, edits), o);
      }),
      { numRuns: MUTATION_RUNS },
    );
  });

  it("random bytes parse to a header or throw a QbackupError, nothing else", () => {
    const text = fc.oneof(
      fc.uint8Array({ maxLength: 200 }),
      fc.array(byteArb, { maxLength: 200 }).map((a) => Uint8Array.from(a)),
      fc.uint8Array({ minLength: MAX_BACKUP_HEADER_BYTES - 2, maxLength: MAX_BACKUP_HEADER_BYTES + 2 }),
    );
    fc.assert(
      fc.property(text, optionsArb, (bytes, o) => {
        parseOrQbackupError(bytes, o);
      }),
      { numRuns: RANDOM_BYTES_RUNS },
    );
  });
});
