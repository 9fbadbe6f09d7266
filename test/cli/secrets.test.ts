/**
 * The passphrase stays in the process: no child qbackup runs (compression filters, the destination
 * and source commands, ssh) gets it in its argv or environment, and no output — tables, --json,
 * warnings, error messages — ever contains it, whether the run succeeds or fails.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TEST_PASSPHRASE, passphraseFile, runQbackup, tempDir } from "../support/cli.js";
import type { CliResult } from "../support/cli.js";
import { prng } from "../support/sources.js";

let dir: string;
let pass: string;
let bin: string;
let log: string;
let img: string;
let env: Record<string, string>;
const outputs: CliResult[] = [];

/** A stand-in for `name` first in PATH: records its argv and environment, then runs the real one. */
function spy(name: string, body = `exec "$REAL" "$@"`): void {
  const real = process.env["PATH"]!.split(":")
    .map((d) => path.join(d, name))
    .find((p) => fs.existsSync(p));
  fs.writeFileSync(
    path.join(bin, name),
    `#!/bin/sh\n{ printf 'argv of ${name}: %s\\n' "$*"; env; } >> '${log}'\nREAL='${real ?? ""}'\n${body}\n`,
    { mode: 0o755 },
  );
}

async function run(args: string[]): Promise<CliResult> {
  const r = await runQbackup(args, { env });
  outputs.push(r);
  return r;
}

beforeAll(() => {
  dir = tempDir("qb-secrets-");
  pass = passphraseFile(dir);
  bin = path.join(dir, "bin");
  log = path.join(dir, "children.log");
  fs.mkdirSync(bin);
  spy("xz");
  // ssh://: the fake ssh runs the "remote" script here, with sh
  spy("ssh", 'for last; do :; done\nexec sh -c "$last"');
  img = path.join(dir, "a.img");
  fs.writeFileSync(img, prng("secrets", 300 * 1024));
  env = { PATH: `${bin}:${process.env["PATH"]}` };
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe("the passphrase never leaves the process", () => {
  it("through filters, destination/source commands and ssh, successes and failures", async () => {
    const file = path.join(dir, "b.bin");
    const viaSsh = path.join(dir, "ssh.bin");
    const cheap = ["--scrypt-logn", "10", "--chunk-size", "64K"];
    const results = [
      await run(["create", "-y", "-p", pass, ...cheap, "-Z", "xz", file, `a=${img}`]),
      await run([
        "create",
        "-y",
        "-p",
        pass,
        ...cheap,
        "-Z",
        "xz",
        "--dest-command",
        `{ echo 'env of the destination command:'; env; } >> '${log}'; cat > '${file}.2'`,
        `a=${img}`,
      ]),
      await run(["create", "-y", "-p", pass, ...cheap, `ssh://nobody@storage.invalid${viaSsh}`, `a=${img}`]),
      await run(["list", "--json", "-p", pass, file]),
      await run([
        "verify",
        "-p",
        pass,
        "--source-command",
        `{ echo 'env of the source command:'; env; } >> '${log}'; cat '${file}.2'`,
      ]),
      await run(["restore", "-p", pass, `ssh://nobody@storage.invalid${viaSsh}`, path.join(dir, "out-ssh")]),
      await run(["restore", "-p", pass, file, path.join(dir, "out")]),
    ];
    for (const r of results) expect(r.status, r.stderr).toBe(0);
    // failures: wrong passphrase, damaged backup, a dying destination command
    const damaged = path.join(dir, "damaged.bin");
    const bytes = fs.readFileSync(file);
    bytes[bytes.length - 2000] = bytes[bytes.length - 2000]! ^ 1;
    fs.writeFileSync(damaged, bytes);
    const failures = [
      await run([
        "restore",
        "-p",
        passphraseFile(tempDir("qb-secrets-wrong-"), "wrong passphrase"),
        file,
        path.join(dir, "x"),
      ]),
      await run(["restore", "-p", pass, damaged, path.join(dir, "y")]),
      await run(["create", "-y", "-p", pass, ...cheap, "--dest-command", "exit 7", `a=${img}`]),
    ];
    expect(failures.map((r) => r.status)).toEqual([3, 4, 6]);

    const children = fs.readFileSync(log, "utf8");
    expect(children).toMatch(/argv of xz: .*-d/);
    expect(children).toMatch(/argv of ssh: .*storage\.invalid/);
    expect(children).toMatch(/env of the destination command:/);
    expect(children).toMatch(/env of the source command:/);
    expect(children).not.toContain(TEST_PASSPHRASE);
    for (const r of outputs) {
      expect(r.stdout.toString()).not.toContain(TEST_PASSPHRASE);
      expect(r.stderr).not.toContain(TEST_PASSPHRASE);
    }
  });
});
