/**
 * Bad input to `qbackup create`: one clear line on stderr, a non-zero exit status, and nothing
 * left behind — no backup under its final name, no temporary file, no existing file touched.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { passphraseFile, runQbackup, tempDir } from "../support/cli.js";
import { makeSparseImage, prng } from "../support/sources.js";

let dir: string;
let pass: string;
let image: string;

beforeAll(() => {
  dir = tempDir();
  pass = passphraseFile(dir);
  image = path.join(dir, "work.img");
  makeSparseImage(image, 4 * 1024 * 1024, [{ offset: 1024 * 1024, length: 300_000, label: "e" }]);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A fresh, empty destination directory per case. */
function destDir(name: string): string {
  const d = path.join(dir, name);
  fs.mkdirSync(d);
  return d;
}

const base = (dest: string) => ["create", "-y", "-p", pass, "--scrypt-logn", "10", dest];

describe("qbackup create refuses bad input cleanly", () => {
  it("missing source", async () => {
    const dest = destDir("missing");
    const r = await runQbackup([...base(dest), `work=${path.join(dir, "nope.img")}`]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^qbackup: error: source \S+nope\.img does not exist$/m);
    expect(fs.readdirSync(dest)).toEqual([]);
  });

  it("unreadable source file", async () => {
    const dest = destDir("unreadable");
    const secret = path.join(dir, "secret.img");
    fs.writeFileSync(secret, "x".repeat(1000));
    fs.chmodSync(secret, 0o000);
    // as root, drop the capabilities that bypass file permissions, like an ordinary user
    const wrapper =
      process.getuid?.() === 0
        ? ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-dac_override,-dac_read_search"]
        : [];
    const r = await runQbackup([...base(dest), `work=${secret}`], { wrapper });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^qbackup: error: source \S+secret\.img is not readable \(permission denied\)$/m);
    expect(fs.readdirSync(dest)).toEqual([]);
  });

  it("compression filter not on the allowlist", async () => {
    const dest = destDir("filter");
    const r = await runQbackup([...base(dest), "-Z", "cat", `work=${image}`]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^qbackup: error: compression filter 'cat' is not allowed$/m);
    expect(r.stderr).toMatch(/^qbackup: hint: use one of: gzip, bzip2, xz/m);
    expect(fs.readdirSync(dest)).toEqual([]);
  });

  it("a filter with options is not a filter name", async () => {
    const dest = destDir("filter-opts");
    const r = await runQbackup([...base(dest), "-Z", "gzip -1", `work=${image}`]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^qbackup: error: compression filter 'gzip -1' is not allowed$/m);
    expect(fs.readdirSync(dest)).toEqual([]);
  });

  it("existing destination file is never overwritten", async () => {
    const dest = path.join(destDir("exists"), "backup.bin");
    fs.writeFileSync(dest, "precious");
    const r = await runQbackup([...base(dest), `work=${image}`]);
    expect(r.status).toBe(6);
    expect(r.stderr).toMatch(/^qbackup: error: destination \S+backup\.bin already exists; refusing to overwrite it$/m);
    expect(fs.readFileSync(dest, "utf8")).toBe("precious");
    expect(fs.readdirSync(path.dirname(dest))).toEqual(["backup.bin"]);
  });

  it("destination directory that does not exist", async () => {
    const dest = path.join(dir, "no-such-dir", "backup.bin");
    const r = await runQbackup([...base(dest), `work=${image}`]);
    expect(r.status).toBe(6);
    expect(r.stderr).toMatch(/^qbackup: error: destination directory \S+no-such-dir does not exist$/m);
    expect(fs.existsSync(path.dirname(dest))).toBe(false);
  });

  it.runIf(process.getuid?.() === 0)("destination full (a 256 KiB tmpfs)", async () => {
    const mnt = destDir("full");
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=256k", "tmpfs", mnt]);
    try {
      const incompressible = path.join(dir, "random.img");
      fs.writeFileSync(incompressible, prng("full", 1024 * 1024));
      const r = await runQbackup([...base(mnt), `work=${incompressible}`]);
      expect(r.status).toBe(6);
      expect(r.stderr).toMatch(/^qbackup: error: destination full: no space left writing \S+qubes-backup-\S+$/m);
      expect(fs.readdirSync(mnt)).toEqual([]);
    } finally {
      execFileSync("umount", [mnt]);
    }
  });

  it("stdout that fails (/dev/full) is an error, not a silent success", async () => {
    const fd = fs.openSync("/dev/full", "w");
    try {
      const { spawnSync } = await import("node:child_process");
      const { QBACKUP } = await import("../support/cli.js");
      const r = spawnSync(process.execPath, [QBACKUP, ...base("-"), `work=${image}`], {
        stdio: ["ignore", fd, "pipe"],
      });
      expect(r.status).toBe(6);
      expect(r.stderr.toString()).toMatch(/^qbackup: error: destination full: no space left writing stdout$/m);
    } finally {
      fs.closeSync(fd);
    }
  });

  it("passphrase the reference tools cannot carry", async () => {
    const dest = destDir("badpass");
    const badPass = path.join(dir, "bad-pass.txt");
    fs.writeFileSync(badPass, "tab\tinside\n");
    const r = await runQbackup(["create", "-y", "-p", badPass, "--scrypt-logn", "10", dest, `work=${image}`]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^qbackup: error: passphrase rejected: it contains a control character/m);
    expect(fs.readdirSync(dest)).toEqual([]);
  });

  it("failing passphrase command", async () => {
    const dest = destDir("badcmd");
    const r = await runQbackup([
      ...base(dest).filter((a) => a !== "-p" && a !== pass),
      "--passphrase-command",
      "exit 3",
      `work=${image}`,
    ]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^qbackup: error: passphrase command exited with status 3$/m);
    expect(fs.readdirSync(dest)).toEqual([]);
  });

  it.each([
    [["create"], /where to\? give DEST/],
    [["create", "/tmp"], /nothing to back up: give at least one SOURCE/],
    [["create", "-y", "/tmp", "work"], /source 'work' is not NAME=PATH or NAME:VOLUME=PATH/],
    [["create", "-y", "/tmp", "1work=/etc/hostname"], /invalid qube name "1work"/],
    [["create", "-y", "--chunk-size", "12X", "/tmp", "w=/etc/hostname"], /--chunk-size '12X' is not a size/],
    [["create", "-y", "--chunk-size", "1G", "/tmp", "w=/etc/hostname"], /--chunk-size must be between/],
    [
      ["create", "-y", "--scrypt-logn", "21", "/tmp", "w=/etc/hostname"],
      /--scrypt-logn must be an integer from 10 to 20/,
    ],
    [["create", "-y", "--no-compress", "-Z", "xz", "/tmp", "w=/etc/hostname"], /exclude each other/],
    [["create", "--bogus", "/tmp", "w=/etc/hostname"], /unknown option '--bogus'/],
  ])("usage error %j exits 2", async (args, message) => {
    const r = await runQbackup(args);
    expect(r.stderr).toMatch(/^qbackup: error: /m);
    expect(r.stderr).toMatch(message);
    expect(r.status).toBe(2);
  });

  it("SIGTERM during a backup removes the partial file", async () => {
    const dest = destDir("sigterm");
    const big = path.join(dir, "big.img");
    fs.writeFileSync(big, prng("big", 8 * 1024 * 1024));
    // a slow KDF per 64 KiB chunk keeps it busy long enough to be interrupted mid-way
    const r = await runQbackup(
      ["create", "-y", "-p", pass, "--scrypt-logn", "14", "--chunk-size", "64K", dest, `work=${big}`],
      { signal: { name: "SIGTERM", when: () => fs.readdirSync(dest).some((f) => f.includes(".partial-")) } },
    );
    expect(r.status).toBe(143);
    expect(r.stderr).toMatch(/^qbackup: error: interrupted by SIGTERM; nothing was left behind$/m);
    expect(fs.readdirSync(dest)).toEqual([]);
  });
});
