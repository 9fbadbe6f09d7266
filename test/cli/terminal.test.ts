/**
 * qbackup in a real pseudo-terminal, typed at as a person would: the confirmation and passphrase
 * prompts (nothing typed is echoed), live progress bars redrawn in place, and a restore that asks
 * once. The piped (non-terminal) output is in everyday.test.ts.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

/* eslint-disable no-control-regex -- the assertions are about the terminal's escape sequences */
import { passphraseFile, runQbackup, tempDir } from "../support/cli.js";
import { plainText, runQbackupInPty } from "../support/pty.js";

/** Typed at the prompts; long and odd enough that it cannot appear by accident. */
const TYPED = "typed at a terminal, never shown: Zq8#x!";

let root: string;
let image: string;

beforeAll(() => {
  root = tempDir("qb-terminal-");
  image = path.join(root, "private.img");
  // big enough, at 16K chunks and a throttled redraw, for several frames of the bars
  const bytes = Buffer.alloc(8 * 1024 * 1024);
  for (let i = 0; i < bytes.length; i += 512) bytes.write(`sector ${i} ${Math.sin(i)}\n`, i);
  fs.writeFileSync(image, bytes);
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe("on a terminal", () => {
  it("create asks to proceed, then for the passphrase twice without echo, and draws live bars", async () => {
    const backup = path.join(root, "typed.bin");
    const r = await runQbackupInPty(
      ["create", "--scrypt-logn", "10", "--chunk-size", "16K", "--compress-level", "9", backup, `work=${image}`],
      {
        columns: 120,
        steps: [
          { waitFor: /Do you want to proceed\? \[y\/N\] /, send: "y\r" },
          { waitFor: /Backup passphrase: /, send: `${TYPED}\r` },
          { waitFor: /Enter again for verification: /, send: `${TYPED}\r` },
        ],
      },
    );
    expect(r.status, plainText(r.transcript)).toBe(0);
    expect(r.transcript).not.toContain(TYPED);
    // two live lines (the qube's bar and the total's) redrawn in place: cursor up one line, clear below
    expect(r.transcript).toMatch(/\x1b\[1A\x1b\[J\x1b\[Kwork +\[[#.]{24}\] +\d+%/);
    expect(r.transcript).toMatch(/\x1b\[Ktotal +\[[#.]{24}\] +\d+% .* read +.*\/s +ETA/);
    // a finished qube's line replaces the bars and stays; the bars go on below it
    expect(r.transcript).toMatch(/\x1b\[Jwork +done: [\d.]+ MiB read in \d+:\d\d, [\d.]+ [KM]iB stored\r?\n/);
    expect(r.transcript).not.toContain("qbackup: progress:");

    // what was typed really is the passphrase
    const v = await runQbackup(["verify", "-p", passphraseFile(fs.mkdtempSync(path.join(root, "p-")), TYPED), backup]);
    expect(v.status, v.stderr).toBe(0);
  });

  it("a declined confirmation asks for no passphrase and writes nothing", async () => {
    const backup = path.join(root, "declined.bin");
    const r = await runQbackupInPty(["create", "--scrypt-logn", "10", backup, `work=${image}`], {
      steps: [{ waitFor: /\[y\/N\] /, send: "n\r" }],
    });
    expect(r.status).toBe(0);
    expect(plainText(r.transcript)).toContain("qbackup: backup cancelled");
    expect(r.transcript).not.toContain("Backup passphrase");
    expect(fs.readdirSync(root).filter((n) => n.startsWith("declined") || n.startsWith(".declined"))).toEqual([]);
  });

  it("restore asks once, shows nothing typed, and a wrong passphrase exits 3", async () => {
    const backup = path.join(root, "typed.bin");
    const dest = fs.mkdtempSync(path.join(root, "restored-"));
    const r = await runQbackupInPty(["restore", backup, dest], {
      steps: [{ waitFor: /Backup passphrase: /, send: `${TYPED}\r` }],
    });
    expect(r.status, plainText(r.transcript)).toBe(0);
    expect(r.transcript).not.toContain(TYPED);
    expect(r.transcript).not.toContain("Enter again");
    expect(fs.readFileSync(path.join(dest, "work", "private.img")).equals(fs.readFileSync(image))).toBe(true);

    const wrong = await runQbackupInPty(["verify", backup], {
      steps: [{ waitFor: /Backup passphrase: /, send: "not it\r" }],
    });
    expect(wrong.status).toBe(3);
    expect(wrong.transcript).not.toContain("not it");
    expect(plainText(wrong.transcript)).toContain(
      "qbackup: error: backup-header.hmac does not verify: wrong passphrase",
    );
  });
});
