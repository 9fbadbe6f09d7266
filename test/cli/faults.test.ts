/**
 * Fault injection through the CLI: SIGINT and SIGTERM at several points of create and restore, a
 * destination command that dies mid-stream, a decompression filter that writes garbage. Each case
 * asserts the exit status, one clear line, that nothing complete-looking (or temporary) is left,
 * and a deadline far above the normal run time (runQbackup kills at `timeoutMs`; a hang fails).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hasOpen, makeBackup, passphraseFile, runQbackup, tempDir } from "../support/cli.js";
import type { CliResult } from "../support/cli.js";
import { prng } from "../support/sources.js";

const MiB = 1024 * 1024;
const DEADLINE_MS = 60_000;
const EXIT_FOR = { SIGINT: 130, SIGTERM: 143 } as const;

let dir: string;
let pass: string;
let big: string;
let backup: string;
let slowHeader: string;

beforeAll(async () => {
  dir = tempDir("qb-faults-");
  pass = passphraseFile(dir);
  big = path.join(dir, "big.img");
  fs.writeFileSync(big, prng("faults", 24 * MiB)); // incompressible
  backup = path.join(dir, "big.bin");
  // logN 14 per 1 MiB chunk: a restore takes seconds, time enough to be interrupted mid-way
  await makeBackup(pass, backup, [`big=${big}`], ["--chunk-size", "1M", "--scrypt-logn", "14"]);
  slowHeader = path.join(dir, "slow-header.bin");
  const small = path.join(dir, "small-18.img");
  fs.writeFileSync(small, prng("small-18", 64 * 1024));
  await makeBackup(pass, slowHeader, [`s=${small}`], ["--scrypt-logn", "18"]);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function expectInterrupted(r: CliResult, signal: keyof typeof EXIT_FOR): void {
  expect(r.signal, "killed at the deadline: a hang").toBe(null);
  expect(r.status, r.stderr).toBe(EXIT_FOR[signal]);
  expect(r.stderr).toMatch(new RegExp(`^qbackup: error: interrupted by ${signal}; nothing was left behind$`, "m"));
  expect(r.stderr.split("\n").filter((l) => l.startsWith("qbackup: error")).length).toBe(1);
}

const entries = (d: string) => (fs.existsSync(d) ? fs.readdirSync(d) : []);

describe.each(["SIGINT", "SIGTERM"] as const)("create interrupted by %s", (signal) => {
  it("while the first keys are derived: nothing is left", async () => {
    const dest = path.join(dir, `create-early-${signal}`);
    fs.mkdirSync(dest);
    // logN 18: the header's KDF alone takes about a second; the signal comes as the output opens
    const r = await runQbackup(["create", "-y", "-p", pass, "--scrypt-logn", "18", dest, `big=${big}`], {
      signal: { name: signal, when: () => entries(dest).some((f) => f.includes(".partial-")) },
      timeoutMs: DEADLINE_MS,
    });
    expectInterrupted(r, signal);
    expect(entries(dest)).toEqual([]);
  });

  it("in the middle of writing: the partial file is removed", async () => {
    const dest = path.join(dir, `create-mid-${signal}`);
    fs.mkdirSync(dest);
    const r = await runQbackup(
      ["create", "-y", "-p", pass, "--scrypt-logn", "14", "-j", "1", "--chunk-size", "1M", dest, `big=${big}`],
      {
        signal: {
          name: signal,
          when: () =>
            entries(dest).some((f) => f.includes(".partial-") && fs.statSync(path.join(dest, f)).size > 4 * MiB),
        },
        timeoutMs: DEADLINE_MS,
      },
    );
    expectInterrupted(r, signal);
    expect(entries(dest)).toEqual([]);
  });
});

describe.each(["SIGINT", "SIGTERM"] as const)("restore interrupted by %s", (signal) => {
  it("while the header's key is derived: no destination content", async () => {
    const dest = path.join(dir, `restore-early-${signal}`);
    // the signal comes once qbackup has the backup open; at logN 18 the header's KDF takes ~1 s
    const r = await runQbackup(["restore", "-p", pass, slowHeader, dest], {
      signal: { name: signal, when: (pid) => hasOpen(pid, slowHeader) },
      timeoutMs: DEADLINE_MS,
    });
    expectInterrupted(r, signal);
    expect(entries(dest)).toEqual([]);
  });

  it("in the middle of writing a qube: its temporary directory is removed", async () => {
    const dest = path.join(dir, `restore-mid-${signal}`);
    const r = await runQbackup(["restore", "-p", pass, "-j", "1", backup, dest], {
      signal: {
        name: signal,
        when: () =>
          entries(dest).some((d) => {
            const img = path.join(dest, d, "private.img");
            return d.includes(".partial-") && fs.existsSync(img) && fs.statSync(img).size > 0;
          }),
      },
      timeoutMs: DEADLINE_MS,
    });
    expectInterrupted(r, signal);
    expect(entries(dest)).toEqual([]);
  });
});

describe("misbehaving helpers", () => {
  it("a destination command that dies mid-stream fails the backup, nothing reported written", async () => {
    const r = await runQbackup(
      ["create", "-y", "-p", pass, "--scrypt-logn", "10", "--dest-command", "head -c 100000 > /dev/null", `big=${big}`],
      { timeoutMs: DEADLINE_MS },
    );
    expect(r.signal).toBe(null);
    expect(r.status).toBe(6);
    expect(r.stderr).toMatch(/^qbackup: error: destination command .*(stopped reading|exited|killed)/m);
    expect(r.stderr).not.toMatch(/written to/);
  });

  it("a decompression filter that writes garbage fails the restore, nothing left", async () => {
    const xzBackup = path.join(dir, "small-xz.bin");
    const img = path.join(dir, "small.img");
    fs.writeFileSync(img, prng("small", 2 * MiB));
    await makeBackup(pass, xzBackup, [`s=${img}`], ["-Z", "xz"]);
    const fakeBin = path.join(dir, "garbage-bin");
    fs.mkdirSync(fakeBin);
    // reads its input, answers with random bytes
    fs.writeFileSync(path.join(fakeBin, "xz"), "#!/bin/sh\ncat > /dev/null\nhead -c 300000 /dev/urandom\n", {
      mode: 0o755,
    });
    const dest = path.join(dir, "garbage-out");
    const r = await runQbackup(["restore", "-p", pass, xzBackup, dest], {
      env: { PATH: `${fakeBin}:${process.env["PATH"]}` },
      timeoutMs: DEADLINE_MS,
    });
    expect(r.signal).toBe(null);
    expect(r.status).toBe(4);
    expect(r.stderr).toMatch(/^qbackup: error: .*(tar|archive|header|checksum)/im);
    expect(entries(dest)).toEqual([]);
  });
});
