/**
 * The tampered-backup matrix: a reference backup built with the stock tools, damaged in every way
 * make-tampered-variants.sh knows plus our own, through restore and verify. Each must fail with
 * its own error code (or be reported incomplete), and nothing may exist in DESTDIR afterwards:
 * no qube under its final name, no temporary directory either.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_KDF_LIMITS } from "../../src/codec/scrypt/index.js";
import type { ErrorCode } from "../../src/errors.js";
import { QbackupError } from "../../src/errors.js";
import { restoreBackup } from "../../src/restore/index.js";
import type { RestoreReport } from "../../src/restore/index.js";
import { openFileSource } from "../../src/transport/source.js";
import { passphraseFile, runQbackup, tempDir } from "../support/cli.js";
import { FIXTURE_PASSPHRASE, buildReferenceV4 } from "../support/reference-v4.js";
import { makeTamperedVariants } from "../support/tamper-v4.js";
import type { TamperedVariant } from "../support/tamper-v4.js";

/** What qbackup must answer, per variant: the error code, or "incomplete" (a qube reported missing). */
const EXPECTED: Record<string, ErrorCode | "incomplete" | "undetectable"> = {
  "header-modified": "ERR_CHUNK_AUTH",
  "header-filter-swapped": "ERR_CHUNK_AUTH",
  "header-hmac-modified": "ERR_CHUNK_AUTH",
  "chunk-bitflip": "ERR_CHUNK_AUTH",
  "chunk-header-bitflip": "ERR_SCRYPT_HEADER_CHECKSUM",
  "chunks-swapped": "ERR_CHUNK_AUTH",
  "chunks-reordered": "ERR_MISSING",
  "file-substituted": "ERR_CHUNK_AUTH",
  "chunk-moved-vm": "ERR_TAR_MALFORMED",
  "last-chunk-dropped": "ERR_MISSING",
  "middle-chunk-dropped": "ERR_MISSING",
  "file-dropped": "undetectable",
  "chunk-duplicated": "ERR_TAR_MALFORMED",
  "foreign-member": "ERR_TAR_MALFORMED",
  "qubes-xml-missing": "ERR_TAR_MALFORMED",
  "chunk-truncated": "ERR_CHUNK_AUTH",
  "member-moved-between-qubes": "ERR_TAR_MALFORMED",
  "chunk-from-other-backup": "ERR_CHUNK_AUTH",
  "duplicated-member": "ERR_TAR_MALFORMED",
  "header-logn-40": "ERR_KDF_LIMIT",
  "dotdot-member": "ERR_UNSAFE_PATH",
  "wrong-passphrase": "ERR_PASSPHRASE_WRONG",
};

let dir: string;
let variants: TamperedVariant[];
beforeAll(() => {
  dir = tempDir("qb-tamper-");
  const build = buildReferenceV4(path.join(dir, "ref"), { scryptArgs: ["--logN", "10", "-r", "8", "-p", "1"] });
  variants = makeTamperedVariants(build, path.join(dir, "variants"));
}, 300_000);
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function expectedFor(v: TamperedVariant): ErrorCode | "incomplete" | "undetectable" {
  if (v.name.startsWith("truncated-at-")) return "incomplete";
  const e = EXPECTED[v.name];
  if (e === undefined) throw new Error(`no expectation for variant ${v.name}`);
  return e;
}

async function attempt(v: TamperedVariant, verifyOnly: boolean, dest: string): Promise<RestoreReport | QbackupError> {
  const source = await openFileSource(v.file);
  try {
    return await restoreBackup(source, {
      passphrase: v.passphrase ?? FIXTURE_PASSPHRASE,
      kdfLimits: DEFAULT_KDF_LIMITS,
      verifyOnly,
      destDir: dest,
    });
  } catch (err) {
    if (err instanceof QbackupError) return err;
    throw err;
  }
}

describe("tampered backups", () => {
  it("covers every variant the tamper kit makes", () => {
    expect(variants.length).toBeGreaterThanOrEqual(30);
    for (const v of variants) expectedFor(v);
  });

  for (const verifyOnly of [false, true]) {
    it(`${verifyOnly ? "verify" : "restore"} rejects every variant with its own error, leaving nothing`, async () => {
      for (const v of variants) {
        const dest = path.join(dir, `dest-${verifyOnly ? "v" : "r"}-${v.name}`);
        const outcome = await attempt(v, verifyOnly, dest);
        const expected = expectedFor(v);
        const label = `${v.name}: ${outcome instanceof QbackupError ? `${outcome.code} ${outcome.message}` : "report"}`;
        if (expected === "undetectable") {
          // the format has no manifest of files: a whole dropped firewall.xml cannot be noticed
          expect(outcome, label).not.toBeInstanceOf(QbackupError);
          continue;
        }
        if (expected === "incomplete") {
          // a cut inside a file is a truncation error; a cut between files leaves qubes missing
          if (outcome instanceof QbackupError) expect(outcome.code, label).toBe("ERR_MISSING");
          else expect(outcome.ok, label).toBe(false);
        } else {
          expect(outcome, label).toBeInstanceOf(QbackupError);
          expect((outcome as QbackupError).code, label).toBe(expected);
        }
        const left = fs.existsSync(dest) ? fs.readdirSync(dest, { recursive: true }) : [];
        expect(left, `${v.name} left files behind`).toEqual([]);
      }
    }, 240_000);
  }

  it("the CLI says what is wrong in one line and exits with the status of its kind", async () => {
    const cases: Array<[string, RegExp, number]> = [
      ["chunk-bitflip", /^qbackup: error: member vm5\/private\.img\.001\.enc: authentication failed/m, 4],
      [
        "chunk-from-other-backup",
        /^qbackup: error: member vm5\/private\.img\.001\.enc: its key does not open it: it was replaced, moved or taken from another backup$/m,
        4,
      ],
      [
        "chunks-reordered",
        /^qbackup: error: expected vm5\/private\.img\.001\.enc, found vm5\/private\.img\.002\.enc: a chunk is missing or out of order$/m,
        5,
      ],
      ["header-logn-40", /^qbackup: error: member backup-header\.hmac: .*logN 40.*--max-kdf-memory$/m, 1],
      [
        "last-chunk-dropped",
        /^qbackup: error: archive of vm5\/private\.img: compressed stream ends early \(a chunk is missing\)$/m,
        5,
      ],
      ["wrong-passphrase", /^qbackup: error: backup-header\.hmac does not verify: wrong passphrase$/m, 3],
    ];
    for (const [name, message, status] of cases) {
      const v = variants.find((x) => x.name === name)!;
      const dest = path.join(dir, `cli-${name}`);
      const pass = passphraseFile(fs.mkdtempSync(path.join(dir, "pass-")), v.passphrase ?? FIXTURE_PASSPHRASE);
      const r = await runQbackup(["restore", "-p", pass, v.file, dest]);
      expect(r.status, `${name}: ${r.stderr}`).toBe(status);
      expect(r.stderr, name).toMatch(message);
      expect(fs.existsSync(dest) ? fs.readdirSync(dest) : []).toEqual([]);
    }
  });
});

describe("what the manifest records but the backup lacks", () => {
  it("a qube whose listed volume is absent is incomplete: verify and restore fail, nothing is published", async () => {
    const build = buildReferenceV4(path.join(dir, "ref-novol"), { scryptArgs: ["--logN", "10", "-r", "8", "-p", "1"] });
    const x = path.join(dir, "novol-x");
    fs.mkdirSync(x);
    execFileSync("tar", ["-i", "-xf", build.backupFile, "-C", x]);
    const stripped = path.join(dir, "novol.bin");
    const parts = build.members
      .map((m) => m.name)
      .filter((n) => !n.startsWith("vm5/private.img."))
      .map((n) => execFileSync("tar", ["-cO", "--posix", "-C", x, n]));
    fs.writeFileSync(stripped, Buffer.concat(parts));
    const pass = passphraseFile(dir, FIXTURE_PASSPHRASE);

    const v = await runQbackup(["verify", "-p", pass, stripped]);
    expect(v.status).toBe(5);
    expect(v.stderr).toMatch(
      /^work\s+incomplete\s+firewall\.xml, notes\.txt\s+.*volume private is listed in qubes\.xml but vm5\/private\.img is not in the backup/m,
    );
    expect(v.stderr).toMatch(/^dom0\s+verified/m);
    expect(v.stderr).toMatch(/^qbackup: error: verification incomplete: see the table above$/m);

    const dest = path.join(dir, "novol-restored");
    const r = await runQbackup(["restore", "-p", pass, stripped, dest]);
    expect(r.status).toBe(5);
    expect(r.stderr).toMatch(/^dom0\s+discarded/m);
    expect(fs.readdirSync(dest, { recursive: true })).toEqual([]);
  });
});
