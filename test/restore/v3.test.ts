/**
 * Format v3 (Qubes R2 final … R3.2): the golden build and builds made here with the stock tools the
 * way the R3 writer made them (test/support/reference-v3.ts) list, verify and restore
 * byte-identically; tampering is refused before a byte of the tampered chunk is decrypted, with
 * nothing left behind; and no child process qbackup runs ever sees the passphrase.
 */
import { spawnSync } from "node:child_process";
import { createHmac } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { SaltedDecryptor } from "../../src/codec/openssl-enc/index.js";
import { DEFAULT_KDF_LIMITS } from "../../src/codec/scrypt/index.js";
import { restoreBackup } from "../../src/restore/index.js";
import { openFileSource } from "../../src/transport/source.js";
import { REPO, passphraseFile, runQbackup, tempDir } from "../support/cli.js";
import { buildReferenceV3 } from "../support/reference-v3.js";
import type { ReferenceV3Build, ReferenceV3Options } from "../support/reference-v3.js";
import { allocatedBytes, sha256File, snapshotTree } from "../support/sources.js";

const GOLDEN = path.join(REPO, "test/fixtures/golden");
const GOLDEN_V3 = path.join(GOLDEN, "v3/qubes-backup-v3.bin");
const GOLDEN_PASSPHRASE = "qubes-fixture-passphrase";
const KIB = 1024;

let dir: string;
let goldenPass: string;
beforeAll(() => {
  dir = tempDir("qb-v3-");
  goldenPass = passphraseFile(dir, GOLDEN_PASSPHRASE);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function build(name: string, options: Omit<ReferenceV3Options, "dir">): ReferenceV3Build {
  return buildReferenceV3({ dir: path.join(dir, name), passphrase: GOLDEN_PASSPHRASE, ...options });
}

interface Listed {
  name: string;
  klass: string;
  included: boolean;
  backupPath: string | null;
}

async function list(backup: string): Promise<{ version: number; backupId: string | null; domains: Listed[] }> {
  const r = await runQbackup(["list", "--json", "-p", goldenPass, backup]);
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout.toString());
}

/** Where qbackup restore puts the archived file `base` of a build. */
function restoredPathOf(out: string, domains: readonly Listed[], base: string): string {
  const owner = domains.find((d) => d.backupPath !== null && (base === d.backupPath || base.startsWith(d.backupPath)));
  if (owner === undefined) throw new Error(`no qube holds ${base}`);
  if (owner.klass === "AdminVM") return path.join(out, "dom0-home", path.basename(owner.backupPath!));
  const inside = base.slice(owner.backupPath!.length);
  return inside === "." ? path.join(out, owner.name) : path.join(out, owner.name, inside);
}

function expectSameContent(source: string, restored: string): void {
  const st = fs.lstatSync(source);
  if (st.isDirectory()) {
    const got = snapshotTree(restored);
    delete got["qube.json"]; // ours, beside a whole-directory (template) archive
    expect(got).toEqual(snapshotTree(source));
  } else {
    expect(sha256File(restored)).toBe(sha256File(source));
    // holes stay holes
    expect(allocatedBytes(restored)).toBeLessThanOrEqual(allocatedBytes(source) + 64 * KIB);
  }
}

describe("the golden v3 backup", () => {
  const sums = () =>
    new Map(
      fs
        .readFileSync(path.join(GOLDEN, "src/SHA256SUMS"), "utf8")
        .trim()
        .split("\n")
        .map((line) => line.split(/\s+/).reverse() as [string, string]),
    );

  it("lists like the R3 manifest says", async () => {
    const listing = await list(GOLDEN_V3);
    expect(listing).toMatchObject({ version: 3, backupId: null });
    expect(listing.domains.filter((d) => d.included).map((d) => [d.name, d.klass, d.backupPath])).toEqual([
      ["dom0", "AdminVM", "dom0-home/user"],
      ["work", "AppVM", "vm5/"],
    ]);
    const table = await runQbackup(["list", "-p", goldenPass, GOLDEN_V3]);
    expect(table.stdout.toString()).toMatch(/^backup without id \(format v3\) \(compression gzip\)\n/);
  });

  it("verifies and restores byte-identically", async () => {
    const verify = await runQbackup(["verify", "-p", goldenPass, GOLDEN_V3]);
    expect(verify.status, verify.stderr).toBe(0);
    const out = path.join(dir, "golden-out");
    const r = await runQbackup(["restore", "-p", goldenPass, GOLDEN_V3, out]);
    expect(r.status, r.stderr).toBe(0);
    const want = sums();
    for (const f of ["private.img", "firewall.xml", "whitelisted-appmenus.list"]) {
      expect(sha256File(path.join(out, "work", f))).toBe(want.get(`./vm-r3/work/${f}`));
    }
    for (const f of [".bashrc", ".config/fixture/settings.ini", "Documents/todo.txt"]) {
      expect(sha256File(path.join(out, "dom0-home/user", f))).toBe(want.get(`./home/user/${f}`));
    }
    expect(JSON.parse(fs.readFileSync(path.join(out, "work/qube.json"), "utf8"))).toMatchObject({
      class: "AppVM",
      template: "fedora-23",
      label: "blue",
    });
  });
});

describe.each([
  { name: "gzip, encrypted, with a template", options: { compress: "gzip", template: true } },
  { name: "uncompressed, encrypted", options: { compress: "none" } },
  { name: "gzip, not encrypted (R3's real paths)", options: { compress: "gzip", encrypt: false } },
] as const)("a v3 backup built with the stock tools: $name", ({ name, options }) => {
  let b: ReferenceV3Build;
  beforeAll(() => {
    b = build(name.replace(/\W+/g, "-"), { chunkSize: 64 * KIB, ...options });
  });

  it("has several chunks per large file, and lists, verifies and restores byte-identically", async () => {
    expect(Math.max(...b.files.map((f) => f.chunks))).toBeGreaterThan(2);
    const { domains } = await list(b.backup);
    const verify = await runQbackup(["verify", "-p", goldenPass, b.backup]);
    expect(verify.status, verify.stderr).toBe(0);
    const out = path.join(dir, `${name.replace(/\W+/g, "-")}-out`);
    const r = await runQbackup(["restore", "-p", goldenPass, b.backup, out]);
    expect(r.status, r.stderr).toBe(0);
    const archived = b.files.filter((f) => f.base !== "qubes.xml");
    expect(archived.length).toBeGreaterThan(3);
    for (const f of archived) expectSameContent(f.source, restoredPathOf(out, domains, f.base));
  });
});

describe("tampering with a v3 backup", () => {
  let b: ReferenceV3Build;
  const img = "vm5/private.img";
  beforeAll(() => {
    b = build("tamper", { chunkSize: 64 * KIB });
    expect(b.members.map((m) => m.name)).toContain(`${img}.002`);
  });

  /** The build's members with `edit` applied, packed again like the writer did. */
  function variant(label: string, edit: (stage: string, order: string[]) => void): string {
    const stage = path.join(dir, `stage-${label}`);
    fs.mkdirSync(stage);
    const x = spawnSync("tar", ["-i", "-xf", b.backup, "-C", stage]);
    if (x.status !== 0) throw new Error(`tar -x: ${x.stderr.toString()}`);
    const order = b.members.map((m) => m.name);
    edit(stage, order);
    const out = path.join(dir, `${label}.bin`);
    const fd = fs.openSync(out, "w");
    for (const m of order) {
      const r = spawnSync("tar", ["-cO", "--posix", "-C", stage, m], { stdio: ["ignore", fd, "pipe"] });
      if (r.status !== 0) throw new Error(`tar: ${r.stderr.toString()}`);
    }
    fs.closeSync(fd);
    return out;
  }
  const flipByte = (file: string, at: number) => {
    const bytes = fs.readFileSync(file);
    bytes[at] = bytes[at]! ^ 0x01;
    fs.writeFileSync(file, bytes);
  };
  const flipHexDigit = (file: string) => {
    const text = fs.readFileSync(file, "latin1");
    const at = text.indexOf("= ") + 10;
    fs.writeFileSync(file, text.slice(0, at) + (text[at] === "0" ? "1" : "0") + text.slice(at + 1), "latin1");
  };

  // a v3 header whose HMAC does not verify is a wrong passphrase or an altered header: the format
  // cannot tell them apart, so it exits as a wrong passphrase (3) with a hint; chunks are tampered (4)
  const cases: Array<{ label: string; edit: (stage: string, order: string[]) => void; error: RegExp; status: number }> =
    [
      {
        label: "bit-in-chunk",
        edit: (s) => flipByte(path.join(s, `${img}.001`), 1000),
        error: /member vm5\/private\.img\.001: hmac-sha512 mismatch/,
        status: 4,
      },
      {
        label: "bit-in-hmac",
        edit: (s) => flipHexDigit(path.join(s, `${img}.002.hmac`)),
        error: /member vm5\/private\.img\.002: hmac-sha512 mismatch/,
        status: 4,
      },
      {
        label: "bit-in-header",
        edit: (s) => flipByte(path.join(s, "backup-header"), 3),
        error: /backup-header\.hmac does not verify/,
        status: 3,
      },
      {
        label: "swapped-hmac",
        edit: (s) => {
          const a = path.join(s, `${img}.000.hmac`);
          const c = path.join(s, `${img}.001.hmac`);
          const t = fs.readFileSync(a);
          fs.copyFileSync(c, a);
          fs.writeFileSync(c, t);
        },
        error: /member vm5\/private\.img\.000: hmac-sha512 mismatch/,
        status: 4,
      },
    ];

  it.each(cases)("$label: refused with a clear error, nothing left behind", async ({ label, edit, error, status }) => {
    const backup = variant(label, edit);
    const out = path.join(dir, `${label}-out`);
    const r = await runQbackup(["restore", "-p", goldenPass, backup, out]);
    expect(r.status).toBe(status);
    expect(r.stderr).toMatch(error);
    expect(
      r.stderr
        .trim()
        .split("\n")
        .filter((l) => l.startsWith("qbackup: error")).length,
    ).toBe(1);
    expect(fs.existsSync(out) ? fs.readdirSync(out) : []).toEqual([]);
  });

  it("a flipped bit in ANY chunk or .hmac member is refused before that chunk is used", async () => {
    const names = b.members.map((m) => m.name).filter((n) => n !== "backup-header" && n !== "backup-header.hmac");
    expect(names.length).toBeGreaterThan(10);
    for (const name of names) {
      const label = `every-${names.indexOf(name)}`;
      const backup = variant(label, (stage) =>
        name.endsWith(".hmac") ? flipHexDigit(path.join(stage, name)) : flipByte(path.join(stage, name), 17),
      );
      const out = path.join(dir, `${label}-out`);
      const chunk = name.replace(/\.hmac$/, "");
      await expect(
        restoreBackup(await openFileSource(backup), {
          passphrase: GOLDEN_PASSPHRASE,
          kdfLimits: DEFAULT_KDF_LIMITS,
          destDir: out,
        }),
        name,
      ).rejects.toMatchObject({ code: "ERR_CHUNK_AUTH", message: expect.stringContaining(`member ${chunk}:`) });
      expect(fs.existsSync(out) ? fs.readdirSync(out) : [], name).toEqual([]);
      fs.rmSync(path.join(dir, `stage-${label}`), { recursive: true, force: true });
      fs.rmSync(backup, { force: true });
    }
  });

  it("a wrong passphrase is refused at the header", async () => {
    const out = path.join(dir, "wrong-out");
    const wrong = passphraseFile(tempDir("qb-v3-wrong-"), "not the passphrase");
    const r = await runQbackup(["restore", "-p", wrong, b.backup, out]);
    fs.rmSync(path.dirname(wrong), { recursive: true, force: true });
    expect(r.status).toBe(3);
    expect(r.stderr).toMatch(/backup-header\.hmac does not verify: wrong passphrase/);
    expect(fs.existsSync(out) ? fs.readdirSync(out) : []).toEqual([]);
  });

  it("never decrypts a byte of a chunk whose HMAC does not match", async () => {
    const stage = path.join(dir, "stage-bit-in-chunk");
    const tampered = fs.readFileSync(path.join(stage, `${img}.001`));
    const seen: Buffer[] = [];
    const original = SaltedDecryptor.prototype.update;
    const spy = vi.spyOn(SaltedDecryptor.prototype, "update").mockImplementation(function (this: SaltedDecryptor, p) {
      seen.push(Buffer.from(p));
      return original.call(this, p);
    });
    try {
      await expect(
        restoreBackup(await openFileSource(path.join(dir, "bit-in-chunk.bin")), {
          passphrase: GOLDEN_PASSPHRASE,
          kdfLimits: DEFAULT_KDF_LIMITS,
          destDir: path.join(dir, "spy-out"),
        }),
      ).rejects.toMatchObject({ code: "ERR_CHUNK_AUTH" });
    } finally {
      spy.mockRestore();
    }
    const fed = Buffer.concat(seen);
    expect(fed.length).toBeGreaterThan(0); // qubes.xml and chunk 000 were decrypted
    expect(fed.includes(tampered.subarray(0, 256))).toBe(false);
  });
});

describe("older formats", () => {
  it("a format v1 backup (a plain directory with qubes.xml) is named and refused", async () => {
    const v1 = path.join(dir, "v1-backup");
    fs.mkdirSync(path.join(v1, "appvms/work"), { recursive: true });
    fs.writeFileSync(path.join(v1, "qubes.xml"), "<QubesVmCollection/>");
    const r = await runQbackup(["list", "-p", goldenPass, v1]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/is a format v1 backup \(a plain directory\)/);
  });

  it("a format v2 backup (an authenticated header without version) is named and refused", async () => {
    const stage = path.join(dir, "v2-stage");
    fs.mkdirSync(stage);
    const header = "hmac-algorithm=SHA512\ncrypto-algorithm=aes-256-cbc\nencrypted=True\ncompressed=True\n";
    fs.writeFileSync(path.join(stage, "backup-header"), header);
    const mac = createHmac("sha512", GOLDEN_PASSPHRASE).update(header).digest("hex");
    fs.writeFileSync(path.join(stage, "backup-header.hmac"), `(stdin)= ${mac}\n`);
    const v2 = path.join(dir, "v2.bin");
    const fd = fs.openSync(v2, "w");
    for (const m of ["backup-header", "backup-header.hmac"]) {
      spawnSync("tar", ["-cO", "--posix", "-C", stage, m], { stdio: ["ignore", fd, "inherit"] });
    }
    fs.closeSync(fd);
    const r = await runQbackup(["list", "-p", goldenPass, v2]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/this is a format v2 backup \(Qubes R2 beta\/rc\): qbackup does not read v2/);
    expect(r.stderr).toMatch(/multi-volume tar/);
  });
});

describe("the passphrase and child processes", () => {
  it("no filter process qbackup runs gets the passphrase in its argv or environment", async () => {
    const b = build("bzip2", { chunkSize: 64 * KIB, compress: "bzip2" });
    const bin = path.join(dir, "spy-bin");
    const log = path.join(dir, "spy.log");
    fs.mkdirSync(bin, { recursive: true });
    // a bzip2 that records what it was given, then does the real work
    const realBzip2 = spawnSync("sh", ["-c", "command -v bzip2"]).stdout.toString().trim();
    fs.writeFileSync(
      path.join(bin, "bzip2"),
      `#!/bin/sh\n{ printf 'argv: %s\\n' "$0 $*"; env; } >> '${log}'\nexec '${realBzip2}' "$@"\n`,
      { mode: 0o755 },
    );
    const env = { PATH: `${bin}:${process.env.PATH ?? ""}` };
    const out = path.join(dir, "bzip2-out");
    const r = await runQbackup(["restore", "-p", goldenPass, b.backup, out], { env });
    expect(r.status, r.stderr).toBe(0);
    const recorded = fs.readFileSync(log, "utf8");
    expect(recorded).toMatch(/argv: .*bzip2 -d/);
    expect(recorded).not.toContain(GOLDEN_PASSPHRASE);
    expect(sha256File(path.join(out, "work/private.img"))).toBe(
      sha256File(b.files.find((f) => f.base === "vm5/private.img")!.source),
    );
  });
});
