/**
 * Restore never hangs and never leaves anything behind when the other side misbehaves: a source
 * command that stalls, one that fails, and a decompression filter that quits early.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { passphraseFile, runQbackup, tempDir, makeBackup } from "../support/cli.js";
import { prng } from "../support/sources.js";

let dir: string;
let pass: string;
let backup: string;
let xzBackup: string;

beforeAll(async () => {
  dir = tempDir("qb-restore-fail-");
  pass = passphraseFile(dir);
  const img = path.join(dir, "a.img");
  fs.writeFileSync(img, prng("a", 2 * 1024 * 1024));
  backup = path.join(dir, "a.bin");
  xzBackup = path.join(dir, "a-xz.bin");
  for (const [out, extra] of [
    [backup, []],
    [xzBackup, ["-Z", "xz"]],
  ] as const) {
    await makeBackup(pass, out, [`a=${img}`], ["--chunk-size", "256K", ...extra]);
  }
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe("restore against a misbehaving source or filter", () => {
  it("a source command that stalls mid-stream is killed after --stall-timeout", async () => {
    const dest = path.join(dir, "stalled");
    const started = Date.now();
    const r = await runQbackup(
      ["restore", "-p", pass, "--stall-timeout", "2", "--source-command", `head -c 600000 '${backup}'; sleep 60`, dest],
      { timeoutMs: 30_000 },
    );
    expect(r.status).toBe(6);
    expect(r.stderr).toMatch(/^qbackup: error: source command stalled: it sent no data for 2 s$/m);
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(fs.existsSync(dest) ? fs.readdirSync(dest) : []).toEqual([]);
  });

  it("a source command that fails after sending everything is an error", async () => {
    const dest = path.join(dir, "failed-cmd");
    const r = await runQbackup([
      "restore",
      "-p",
      pass,
      "--source-command",
      `cat '${backup}'; echo broken >&2; exit 3`,
      dest,
    ]);
    expect(r.status).toBe(6);
    expect(r.stderr).toMatch(/^qbackup: error: source command exited with status 3: broken$/m);
  });

  it("a source command cut mid-stream is a truncated backup", async () => {
    const dest = path.join(dir, "cut");
    const r = await runQbackup(["restore", "-p", pass, "--source-command", `head -c 700000 '${backup}'`, dest]);
    expect(r.status).toBe(5);
    expect(r.stderr).toMatch(
      /^qbackup: error: outer archive: backup ends inside member vm1\/private\.img\.\d{3}\.enc$/m,
    );
    expect(fs.existsSync(dest) ? fs.readdirSync(dest) : []).toEqual([]);
  });

  it("a decompression filter that exits early ends the restore with an error", async () => {
    const fakeBin = path.join(dir, "fake-bin");
    fs.mkdirSync(fakeBin);
    fs.writeFileSync(path.join(fakeBin, "xz"), "#!/bin/sh\nexit 0\n", { mode: 0o755 });
    const dest = path.join(dir, "filter-quit");
    const r = await runQbackup(["restore", "-p", pass, xzBackup, dest], {
      env: { PATH: `${fakeBin}:${process.env["PATH"]}` },
      timeoutMs: 30_000,
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(
      /^qbackup: error: .*(filter 'xz -d' stopped reading its input|archive truncated|is empty)/m,
    );
    expect(fs.existsSync(dest) ? fs.readdirSync(dest) : []).toEqual([]);
  });
});
