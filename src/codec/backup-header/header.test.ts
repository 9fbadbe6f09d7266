/**
 * Tests for the backup-header codec: the reference reader's verdict table (spec §11.4 plus our own
 * cases, as data), the byte-exact golden v4 header, round trips, forced and optional filters.
 */
import { getCipherInfo, createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { isQbackupError } from "../../errors.js";
import type { BackupHeader, ParseHeaderOptions } from "./index.js";
import {
  ALWAYS_ALLOWED_FILTERS,
  CIPHER_SIZES,
  DIGEST_OUTPUT_BYTES,
  MAX_BACKUP_HEADER_BYTES,
  OPTIONAL_FILTERS,
  isKnownCryptoAlgorithm,
  isKnownHmacAlgorithm,
  isValidBackupId,
  parseBackupHeader,
  serializeBackupHeaderV4,
} from "./index.js";

interface VerdictCase {
  name: string;
  source: string;
  /** Exact bytes, one char per byte (latin1). */
  header: string;
  options?: { forcedCompressionFilter?: string; installedFilters?: string[] };
  expect: "accept" | "reject";
  parsed?: BackupHeader;
  code?: string;
  refR?: string;
  stricterThanRefR?: boolean;
}

const testdata = (name: string): URL => new URL(`./testdata/${name}`, import.meta.url);
const verdicts = JSON.parse(readFileSync(testdata("reference-reader-verdicts.json"), "utf8")) as {
  cases: VerdictCase[];
};
const GOLDEN = readFileSync(testdata("golden-v4.backup-header"));
const GOLDEN_VALUES = { compressed: true, compressionFilter: "gzip", backupId: "20240102T030405-4242" };
/** The §11.4 table has 29 rows (some rows name two cases; each is a case of its own here). */
const SPEC_TABLE_CASES = 29;

function toParseOptions(o: VerdictCase["options"]): ParseHeaderOptions {
  const options: ParseHeaderOptions = {};
  if (o?.forcedCompressionFilter !== undefined) options.forcedCompressionFilter = o.forcedCompressionFilter;
  const installed = o?.installedFilters;
  if (installed !== undefined) options.isFilterInstalled = (name) => installed.includes(name);
  return options;
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (isQbackupError(err)) return err.code;
    throw err;
  }
  throw new Error("expected a QbackupError, nothing was thrown");
}

function errorOf(fn: () => unknown): Error {
  try {
    fn();
  } catch (err) {
    if (err instanceof Error) return err;
  }
  throw new Error("expected an error");
}

describe("reference reader verdicts (testdata/reference-reader-verdicts.json)", () => {
  it("covers every row of spec §11.4 and has well-formed cases", () => {
    expect(verdicts.cases.filter((c) => c.source === "§11.4")).toHaveLength(SPEC_TABLE_CASES);
    const names = new Set(verdicts.cases.map((c) => c.name));
    expect(names.size).toBe(verdicts.cases.length);
    for (const c of verdicts.cases) {
      expect(
        [...c.header].every((ch) => ch.charCodeAt(0) <= 0xff),
        c.name,
      ).toBe(true);
      if (c.expect === "accept") expect(c.parsed, c.name).toBeDefined();
      else expect(c.code, c.name).toMatch(/^ERR_/);
    }
  });

  for (const c of verdicts.cases) {
    const bytes = Buffer.from(c.header, "latin1");
    const options = toParseOptions(c.options);
    if (c.expect === "accept") {
      it(`accepts: ${c.name}`, () => {
        expect(parseBackupHeader(bytes, options)).toEqual(c.parsed);
      });
    } else {
      it(`rejects with ${c.code}: ${c.name}`, () => {
        expect(codeOf(() => parseBackupHeader(bytes, options))).toBe(c.code);
      });
    }
  }
});

describe("error messages", () => {
  const golden = GOLDEN.toString("latin1");
  const messageOf = (text: string, options?: ParseHeaderOptions): string =>
    errorOf(() => parseBackupHeader(Buffer.from(text, "latin1"), options)).message;

  it("name the rule that failed, on one line", () => {
    expect(messageOf("version=4\nencrypted=True\nnonsense\n")).toBe("backup-header: line 3 has no '='");
    expect(messageOf(`${golden}version=4\n`)).toBe("backup-header: duplicated key 'version' on line 7");
    expect(messageOf(golden.replace("backup-id=", "backup_id="))).toBe(
      "backup-header: invalid key 'backup_id' on line 6",
    );
    expect(messageOf("")).toBe("backup-header: unsupported backup version (no version line: format v2 or older?)");
    expect(messageOf(`${golden}ver\x00sion=4\n`)).toBe("backup-header: invalid key 'ver\\x00sion' on line 7");
  });

  it("tell the user the filter name and how to force it", () => {
    const message = messageOf(golden.replace("=gzip", "=lz4"));
    expect(message).toContain("'lz4'");
    expect(message).toContain("--compression-filter=lz4");
    expect(message).not.toContain("\n");
  });

  it("refuse an over-size header before looking at its content", () => {
    const huge = Buffer.alloc(MAX_BACKUP_HEADER_BYTES + 1, 0xff);
    expect(codeOf(() => parseBackupHeader(huge))).toBe("ERR_HEADER_MALFORMED");
    expect(errorOf(() => parseBackupHeader(huge)).message).toBe(
      "backup-header: 3969 bytes, more than the limit of 3968",
    );
  });
});

describe("serializeBackupHeaderV4", () => {
  it("reproduces the golden fixture's 118-byte backup-header byte for byte", () => {
    expect(GOLDEN.length).toBe(118);
    expect(serializeBackupHeaderV4(GOLDEN_VALUES).equals(GOLDEN)).toBe(true);
  });

  it("writes compressed=False and still the filter when compression is off (REF-W form)", () => {
    const text = serializeBackupHeaderV4({ ...GOLDEN_VALUES, compressed: false }).toString("ascii");
    expect(text).toBe(
      "version=4\nencrypted=True\ncompressed=False\ncompression-filter=gzip\nhmac-algorithm=scrypt\n" +
        "backup-id=20240102T030405-4242\n",
    );
  });

  it("refuses bad inputs with ERR_HEADER_MALFORMED", () => {
    for (const backupId of ["", "-20240102T030405-1", "2024.01", "backup_id", "a b", "é"]) {
      expect(codeOf(() => serializeBackupHeaderV4({ ...GOLDEN_VALUES, backupId }))).toBe("ERR_HEADER_MALFORMED");
    }
    for (const compressionFilter of ["lz4", "GZIP", "", "gzip -9", "/bin/gzip"]) {
      expect(codeOf(() => serializeBackupHeaderV4({ ...GOLDEN_VALUES, compressionFilter }))).toBe(
        "ERR_HEADER_MALFORMED",
      );
    }
    const longId = "1".repeat(MAX_BACKUP_HEADER_BYTES);
    expect(codeOf(() => serializeBackupHeaderV4({ ...GOLDEN_VALUES, backupId: longId }))).toBe("ERR_HEADER_MALFORMED");
  });
});

describe("round trip serialize -> parse", () => {
  const ids = ["20240102T030405-4242", "20991231T235959-123456789", "A", "x-"];
  const everyFilter = (name: string): boolean => OPTIONAL_FILTERS.includes(name);
  for (const compressed of [true, false]) {
    for (const compressionFilter of [...ALWAYS_ALLOWED_FILTERS, ...OPTIONAL_FILTERS]) {
      it(`compressed=${compressed}, filter ${compressionFilter}`, () => {
        for (const backupId of ids) {
          const parsed = parseBackupHeader(serializeBackupHeaderV4({ compressed, compressionFilter, backupId }), {
            isFilterInstalled: everyFilter,
          });
          expect(parsed).toEqual({
            version: 4,
            encrypted: true,
            compressed,
            compressionFilter,
            hmacAlgorithm: "scrypt",
            backupId,
          });
        }
      });
    }
  }

  it("a parsed golden header re-serializes to the same bytes", () => {
    const h = parseBackupHeader(GOLDEN);
    const again = serializeBackupHeaderV4({
      compressed: h.compressed,
      compressionFilter: h.compressionFilter ?? "",
      backupId: h.backupId ?? "",
    });
    expect(again.equals(GOLDEN)).toBe(true);
  });
});

describe("forced and optional compression filters", () => {
  const withFilter = (filter: string): Buffer => Buffer.from(GOLDEN.toString("latin1").replace("=gzip", `=${filter}`));

  it("a forced filter overrides even an invalid header filter (lz4 -> less)", () => {
    expect(codeOf(() => parseBackupHeader(withFilter("lz4")))).toBe("ERR_HEADER_UNSUPPORTED");
    expect(parseBackupHeader(withFilter("lz4"), { forcedCompressionFilter: "less" }).compressionFilter).toBe("less");
  });

  it("accepts an optional filter only when isFilterInstalled says so", () => {
    for (const filter of OPTIONAL_FILTERS) {
      expect(codeOf(() => parseBackupHeader(withFilter(filter)))).toBe("ERR_HEADER_UNSUPPORTED");
      expect(codeOf(() => parseBackupHeader(withFilter(filter), { isFilterInstalled: () => false }))).toBe(
        "ERR_HEADER_UNSUPPORTED",
      );
      const onlyThis = (name: string): boolean => name === filter;
      expect(parseBackupHeader(withFilter(filter), { isFilterInstalled: onlyThis }).compressionFilter).toBe(filter);
    }
  });

  it("never asks about filters that are always allowed or never allowed", () => {
    const asked: string[] = [];
    const spy = (name: string): boolean => {
      asked.push(name);
      return true;
    };
    for (const filter of ALWAYS_ALLOWED_FILTERS) parseBackupHeader(withFilter(filter), { isFilterInstalled: spy });
    expect(codeOf(() => parseBackupHeader(withFilter("lz4"), { isFilterInstalled: spy }))).toBe(
      "ERR_HEADER_UNSUPPORTED",
    );
    expect(asked).toEqual([]);
  });
});

describe("isValidBackupId and allow-lists", () => {
  it("isValidBackupId: [A-Za-z0-9-]+, not starting with '-'", () => {
    for (const ok of ["20240102T030405-4242", "a", "0", "A-", "x--y"]) expect(isValidBackupId(ok), ok).toBe(true);
    for (const bad of ["", "-", "-a", "a_b", "a.b", "a b", "a\n", "é", "a/b"])
      expect(isValidBackupId(bad), bad).toBe(false);
  });

  it("digests and ciphers are case-insensitive, scrypt is valid for both", () => {
    for (const name of ["sha512", "SHA512", "Sha1", "sha256", "sha384", "sha224", "MD5", "scrypt", "SCRYPT"]) {
      expect(isKnownHmacAlgorithm(name), name).toBe(true);
    }
    for (const name of ["sha3-512", "whirlpool", "ripemd160", "", "sha2-512"])
      expect(isKnownHmacAlgorithm(name), name).toBe(false);
    expect(Object.keys(CIPHER_SIZES)).toHaveLength(12);
    for (const name of ["aes-256-cbc", "AES-128-CTR", "aes-192-ofb", "aes-256-cfb", "scrypt"]) {
      expect(isKnownCryptoAlgorithm(name), name).toBe(true);
    }
    for (const name of ["des-ede3-cbc", "aes-256-gcm", "aes256", "", "constructor", "__proto__"]) {
      expect(isKnownCryptoAlgorithm(name), name).toBe(false);
    }
    expect(isKnownHmacAlgorithm("toString")).toBe(false);
  });

  it("key, IV and digest sizes match node:crypto", () => {
    for (const [name, sizes] of Object.entries(CIPHER_SIZES)) {
      const info = getCipherInfo(name);
      expect(info, name).toBeDefined();
      expect(info?.keyLength, name).toBe(sizes.keyBytes);
      expect(info?.ivLength, name).toBe(sizes.ivBytes);
    }
    for (const [name, bytes] of Object.entries(DIGEST_OUTPUT_BYTES)) {
      expect(createHash(name).digest().length, name).toBe(bytes);
    }
  });
});
