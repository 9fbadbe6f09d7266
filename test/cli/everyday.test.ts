/**
 * Everyday use, end to end through the real binary: profiles (no prompt with passphrase_command;
 * bad ones named by file, line and key), --save-profile, --json of create/list/verify/restore,
 * every documented exit status, --on-success/--on-failure hooks, prune of a profile's directory,
 * and progress lines when stderr is not a terminal.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TEST_PASSPHRASE, passphraseFile, runQbackup, tempDir } from "../support/cli.js";

let root: string;
let env: Record<string, string>;
let pass: string;
let image: string;
let docs: string;
const CHEAP = ["--scrypt-logn", "10", "--chunk-size", "64K"];

/** stdout as JSON lines; every line must parse. */
function jsonLines(stdout: Buffer): Array<Record<string, unknown>> {
  const text = stdout.toString("utf8").trim();
  return text === "" ? [] : text.split("\n").map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** `qbackup create -y -p PASS` with a cheap KDF and small chunks, then `args`. */
function create(args: string[], opts: Parameters<typeof runQbackup>[1] = {}): ReturnType<typeof runQbackup> {
  return runQbackup(["create", "-y", "-p", pass, ...CHEAP, ...args], opts);
}

function summaryOf(stdout: Buffer): Record<string, unknown> {
  const lines = jsonLines(stdout);
  expect(lines.filter((l) => l["type"] === "summary")).toHaveLength(1);
  expect(lines.at(-1)!["type"]).toBe("summary");
  return lines.at(-1)!;
}

function profileFile(name: string, text: string): string {
  const file = path.join(root, "config", "qbackup", "profiles", `${name}.yaml`);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text);
  return file;
}

beforeAll(() => {
  root = tempDir("qb-everyday-");
  env = { XDG_CONFIG_HOME: path.join(root, "config"), HOME: root };
  pass = passphraseFile(root);
  image = path.join(root, "private.img");
  const bytes = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < bytes.length; i += 4096) bytes.write(`block ${i}\n`, i);
  fs.writeFileSync(image, bytes);
  docs = path.join(root, "docs");
  fs.mkdirSync(docs);
  fs.writeFileSync(path.join(docs, "letter.txt"), "dear storage, you are not trusted\n");
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe("profiles", () => {
  it("a profile with passphrase_command makes a backup with no prompt and no terminal", async () => {
    const dest = fs.mkdtempSync(path.join(root, "dest-"));
    profileFile(
      "nightly",
      [
        `destination: ${dest}`,
        "sources:",
        `  - work=${image}`,
        `  - { qube: docs, path: ${docs} }`,
        `passphrase_command: cat '${pass}'`,
        "scrypt_logn: 10",
        "chunk_size: 64K",
        "",
      ].join("\n"),
    );
    const r = await runQbackup(["create", "--profile", "nightly", "-y", "--json"], { env });
    expect(r.status, r.stderr).toBe(0);
    const summary = summaryOf(r.stdout);
    const backups = fs.readdirSync(dest).filter((n) => !n.endsWith(".txt"));
    expect(backups).toHaveLength(1);
    expect(summary["location"]).toBe(path.join(dest, backups[0]!));
    const v = await runQbackup(["verify", "-p", pass, path.join(dest, backups[0]!)]);
    expect(v.status, v.stderr).toBe(0);
    expect(v.stderr).toMatch(/^work\s+verified/m);
    expect(v.stderr).toMatch(/^docs\s+verified/m);
  });

  it("options given on the command line win over the profile's", async () => {
    const dest = fs.mkdtempSync(path.join(root, "dest-"));
    profileFile(
      "override",
      `destination: ${dest}\nsources: [work=${image}, docs=${docs}]\npassphrase_file: ${pass}\nscrypt_logn: 10\n`,
    );
    const r = await runQbackup(["create", "--profile", "override", "-y", "-x", "docs", "--json"], { env });
    expect(r.status, r.stderr).toBe(0);
    const qubes = summaryOf(r.stdout)["qubes"] as Array<{ name: string }>;
    expect(qubes.map((q) => q.name)).toEqual(["work"]);
  });

  it("an unknown key or a bad value fails with the file, line and key named, exit 2", async () => {
    const typo = profileFile("typo", `destination: /tmp\nsources: [work=${image}]\ncompresion: gzip\n`);
    const r = await runQbackup(["create", "--profile", "typo", "-y"], { env });
    expect(r.status).toBe(2);
    expect(r.stderr).toBe(`qbackup: error: ${typo}:3: compresion: unknown key (did you mean compression?)\n`);

    const bad = profileFile("bad", `destination: /tmp\nsources:\n  - work=${image}\nscrypt_logn: 25\n`);
    const b = await runQbackup(["create", "--profile", bad], { env });
    expect(b.status).toBe(2);
    expect(b.stderr).toBe(`qbackup: error: ${bad}:4: scrypt_logn: must be an integer from 10 to 20, got 25\n`);

    const nested = profileFile("nested", `destination: /tmp\nsources:\n  - qube: work\n    pth: ${image}\n`);
    const n = await runQbackup(["create", "--profile", "nested"], { env });
    expect(n.status).toBe(2);
    expect(n.stderr).toMatch(new RegExp(`^qbackup: error: ${nested}:4: sources\\[0\\]\\.pth: unknown key`));
  });

  it("--save-profile writes what was given (0600), refuses to replace it, and the profile runs", async () => {
    const dest = fs.mkdtempSync(path.join(root, "dest-"));
    const args = ["create", "--save-profile", "saved", "-p", pass, "--scrypt-logn", "10", dest, `work=${image}`];
    const s = await runQbackup(args, { env });
    expect(s.status, s.stderr).toBe(0);
    const file = path.join(root, "config", "qbackup", "profiles", "saved.yaml");
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    const text = fs.readFileSync(file, "utf8");
    expect(text).toContain(`destination: ${dest}`);
    expect(text).toContain(`passphrase_file: ${pass}`);
    expect(text).not.toContain("jobs:"); // not given: stays the default
    expect(text).not.toContain(TEST_PASSPHRASE);
    expect(fs.readdirSync(dest)).toEqual([]); // saving does not back up

    const again = await runQbackup(args, { env });
    expect(again.status).toBe(6);
    expect(fs.readFileSync(file, "utf8")).toBe(text);

    const run = await runQbackup(["create", "--profile", "saved", "-y"], { env });
    expect(run.status, run.stderr).toBe(0);
    expect(fs.readdirSync(dest).filter((n) => !n.endsWith(".txt"))).toHaveLength(1);
  });

  it("prune --profile applies keep_last to the profile's directory", async () => {
    const dest = fs.mkdtempSync(path.join(root, "dest-"));
    const dated = ["2026-11-01T010000", "2026-11-02T010000", "2026-11-03T010000"].map((d) => `qubes-backup-${d}`);
    dated.forEach((name, i) => {
      fs.writeFileSync(path.join(dest, name), name);
      fs.writeFileSync(path.join(dest, `${name}.RESTORE-INSTRUCTIONS.txt`), "sheet");
      const at = new Date(Date.UTC(2026, 10, 1 + i));
      fs.utimesSync(path.join(dest, name), at, at);
    });
    profileFile("retained", `destination: ${dest}\nsources: [work=${image}]\npassphrase_file: ${pass}\nkeep_last: 2\n`);
    const r = await runQbackup(["prune", "--profile", "retained", "--json"], { env });
    expect(r.status, r.stderr).toBe(0);
    expect(summaryOf(r.stdout)["deleted"]).toEqual([dated[0]]);
    expect(fs.readdirSync(dest).sort()).toEqual(dated.slice(1).flatMap((n) => [n, `${n}.RESTORE-INSTRUCTIONS.txt`]));
  });
});

describe("--json", () => {
  it("create, recovery-sheet, list, verify and restore print JSON lines ending in one summary", async () => {
    const dest = fs.mkdtempSync(path.join(root, "json-"));
    const backup = path.join(dest, "b.bin");
    const c = await create(["--json", backup, `work=${image}`, `docs=${docs}`], {
      env: { QBACKUP_PROGRESS_INTERVAL: "0.001" },
    });
    expect(c.status, c.stderr).toBe(0);
    const created = summaryOf(c.stdout);
    expect(created).toMatchObject({ command: "create", location: backup, compression: "gzip" });
    expect(created["recoverySheet"]).toBe(`${backup}.RESTORE-INSTRUCTIONS.txt`);
    const events = jsonLines(c.stdout);
    expect(events.filter((e) => e["type"] === "qube-done").map((e) => e["qube"])).toEqual(["work", "docs"]);
    expect(events.some((e) => e["type"] === "warning")).toBe(true); // the cheap KDF is warned about

    const sheet = await runQbackup(["recovery-sheet", "--json", backup]);
    expect(summaryOf(sheet.stdout)).toMatchObject({
      command: "recovery-sheet",
      backupId: created["backupId"],
      text: fs.readFileSync(`${backup}.RESTORE-INSTRUCTIONS.txt`, "utf8"),
    });

    const l = await runQbackup(["list", "--json", "-p", pass, backup]);
    expect(l.status, l.stderr).toBe(0);
    const listed = summaryOf(l.stdout);
    expect(listed["backupId"]).toBe(created["backupId"]);
    expect((listed["domains"] as Array<{ name: string }>).map((d) => d.name)).toEqual(["dom0", "work", "docs"]);

    const v = await runQbackup(["verify", "--json", "-p", pass, backup]);
    expect(v.status, v.stderr).toBe(0);
    expect(summaryOf(v.stdout)).toMatchObject({ command: "verify", ok: true, backupId: created["backupId"] });

    const out = path.join(dest, "restored");
    fs.mkdirSync(out);
    const r = await runQbackup(["restore", "--json", "-p", pass, backup, out, "work"]);
    expect(r.status, r.stderr).toBe(0);
    const restored = summaryOf(r.stdout);
    const qubes = restored["qubes"] as Array<{ name: string; status: string }>;
    expect(qubes.find((q) => q.name === "work")!.status).toBe("restored");
    expect(qubes.find((q) => q.name === "docs")!.status).toBe("not selected");
    expect(fs.readFileSync(path.join(out, "work", "private.img")).equals(fs.readFileSync(image))).toBe(true);
  });

  it("a failure ends the JSON lines with an error object carrying the exit status", async () => {
    const r = await runQbackup(["verify", "--json", "-p", pass, path.join(root, "absent.bin")]);
    expect(r.status).toBe(6);
    const last = jsonLines(r.stdout).at(-1)!;
    expect(last).toMatchObject({ type: "error", code: "ERR_SOURCE", exitStatus: 6 });
    const u = await runQbackup(["list", "--json", "--bogus"]);
    expect(u.status).toBe(2);
    expect(jsonLines(u.stdout)).toEqual([
      { type: "error", code: "ERR_USAGE", exitStatus: 2, message: "unknown option '--bogus'" },
    ]);
  });
});

describe("exit statuses", () => {
  let backup: string;
  beforeAll(async () => {
    backup = path.join(root, "status.bin");
    const r = await create(["--no-compress", backup, `work=${image}`]);
    expect(r.status, r.stderr).toBe(0);
  });

  /** The 512-byte block where `member`'s header is (GNU tar -i: members are separate archives, as qvm-backup writes them). */
  function headerBlock(member: string): number {
    const listing = execFileSync("tar", ["-i", "--block-number", "-tvf", backup], { encoding: "utf8" });
    const line = listing.split("\n").find((l) => l.endsWith(` ${member}`))!;
    return Number(/^block (\d+):/.exec(line)![1]);
  }

  /** A copy of the backup with one byte flipped inside the data of `member`. */
  function flipped(member: string): string {
    const copy = path.join(root, `flipped-${member.replace(/\//g, "_")}`);
    const bytes = fs.readFileSync(backup);
    bytes[(headerBlock(member) + 1) * 512 + 300]! ^= 0x01;
    fs.writeFileSync(copy, bytes);
    return copy;
  }

  /** A copy of the backup without `member` (cut from its header to the next member's). */
  function without(member: string, next: string): string {
    const copy = path.join(root, `without-${member.replace(/\//g, "_")}`);
    const bytes = fs.readFileSync(backup);
    fs.writeFileSync(
      copy,
      Buffer.concat([bytes.subarray(0, headerBlock(member) * 512), bytes.subarray(headerBlock(next) * 512)]),
    );
    return copy;
  }

  it("each documented status has its case", async () => {
    const wrong = passphraseFile(fs.mkdtempSync(path.join(root, "wrong-")), "not the passphrase");
    const dropped = without("vm1/private.img.001.enc", "vm1/private.img.002.enc");
    const cases: Array<[number, string[], RegExp]> = [
      [0, ["verify", "-p", pass, backup], /^work\s+verified/m],
      [
        1,
        ["create", "-y", "-p", pass, ...CHEAP, path.join(root, "x.bin"), `work=${root}/absent.img`],
        /does not exist/,
      ],
      [2, ["verify", "--no-such-option", backup], /unknown option/],
      [3, ["verify", "-p", wrong, backup], /wrong passphrase/],
      [4, ["verify", "-p", pass, flipped("vm1/private.img.002.enc")], /authentication failed/],
      [5, ["verify", "-p", pass, dropped], /private\.img\.001\.enc.*missing/],
      [6, ["create", "-y", "-p", pass, path.join(root, "no-dir", "b.bin"), `work=${image}`], /does not exist/],
    ];
    for (const [status, args, message] of cases) {
      const r = await runQbackup(args);
      expect(r.status, `${args.join(" ")}: ${r.stderr}`).toBe(status);
      expect(r.stderr, args.join(" ")).toMatch(message);
    }
  });
});

describe("hooks", () => {
  it("--on-success gets what happened in QBACKUP_* and never the passphrase", async () => {
    const dest = fs.mkdtempSync(path.join(root, "hook-"));
    const record = path.join(root, "success.env");
    const r = await create(["--json", "--on-success", `env > '${record}'`, dest, `work=${image}`]);
    expect(r.status, r.stderr).toBe(0);
    const seen = fs.readFileSync(record, "utf8");
    const summary = summaryOf(r.stdout);
    expect(seen).toContain("QBACKUP_EVENT=success\n");
    expect(seen).toContain("QBACKUP_EXIT_STATUS=0\n");
    expect(seen).toContain(`QBACKUP_BACKUP_ID=${String(summary["backupId"])}\n`);
    expect(seen).toContain(`QBACKUP_LOCATION=${String(summary["location"])}\n`);
    expect(seen).not.toContain(TEST_PASSPHRASE.slice(0, 12));
  });

  it("--on-failure runs on a failed backup; a failing hook is a warning, not a new outcome", async () => {
    const record = path.join(root, "failure.env");
    const r = await create([
      "--on-failure",
      `env > '${record}'; exit 9`,
      path.join(root, "missing-dir", "b.bin"),
      `work=${image}`,
    ]);
    expect(r.status).toBe(6);
    const seen = fs.readFileSync(record, "utf8");
    expect(seen).toContain("QBACKUP_EVENT=failure\n");
    expect(seen).toContain("QBACKUP_EXIT_STATUS=6\n");
    expect(seen).toMatch(/^QBACKUP_ERROR=destination directory .*missing-dir does not exist$/m);
    expect(r.stderr).toMatch(/^qbackup: warning: --on-failure command exited with status 9$/m);
  });
});

describe("output when stderr is not a terminal", () => {
  it("plain progress lines, a line per finished qube; -q prints nothing; -v more", async () => {
    const dest = fs.mkdtempSync(path.join(root, "plain-"));
    const args = ["create", "-y", "-p", pass, ...CHEAP, "--chunk-size", "16K"];
    const r = await runQbackup([...args, path.join(dest, "a.bin"), `work=${image}`, `docs=${docs}`], {
      env: { QBACKUP_PROGRESS_INTERVAL: "0.001" },
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^qbackup: progress: \d+% \(.* of ~.* read\), .*\/s, ETA/m);
    expect(r.stderr).toMatch(/^qbackup: work done: .* read in \d+:\d\d, .* stored$/m);
    expect(r.stderr).not.toContain("\x1b[");

    const q = await runQbackup([...args, "-q", path.join(dest, "b.bin"), `work=${image}`], {
      env: { QBACKUP_PROGRESS_INTERVAL: "0.001" },
    });
    expect(q.status, q.stderr).toBe(0);
    expect(q.stderr).toBe(
      "qbackup: warning: --scrypt-logn 10 makes passphrase guessing cheap; use it for tests only\n" +
        "qbackup: warning: chunk size 16384 differs from Qubes' 100M; restoring from a qube may hit qvm-backup-restore's file-count limit\n",
    );

    const v = await runQbackup([...args, "-v", path.join(dest, "c.bin"), `work=${image}`]);
    expect(v.status, v.stderr).toBe(0);
    expect(v.stderr).toMatch(/^qbackup: work: archiving vm1\/private\.img/m);
    expect(v.stderr).toMatch(/^qbackup: scrypt logN 10 \(r 8, p 1\), gzip -1/m);
  });
});

describe("a scheduled run", () => {
  it("the crontab line `schedule --cron --prune` prints, run by sh, backs up without a prompt and prunes", async () => {
    const dest = fs.mkdtempSync(path.join(root, "scheduled-"));
    const old = "qubes-backup-2020-01-01T000000";
    fs.writeFileSync(path.join(dest, old), "an old backup");
    fs.utimesSync(path.join(dest, old), new Date("2020-01-01"), new Date("2020-01-01"));
    profileFile(
      "timer",
      `destination: ${dest}\nsources: [work=${image}]\npassphrase_file: ${pass}\nscrypt_logn: 10\nkeep_last: 1\n`,
    );
    const s = await runQbackup(["schedule", "timer", "--every", "daily", "--cron", "--prune"], { env });
    expect(s.status, s.stderr).toBe(0);
    const line = s.stdout.toString().trim();
    const fields = /^(\d+) (\d+) \* \* \* (.*)$/.exec(line);
    expect(fields, line).not.toBeNull();
    // cron hands the rest of the line to sh, with \% turned back into %
    const command = fields![3]!.replace(/\\%/g, "%");
    execFileSync("sh", ["-c", command], { env: { PATH: process.env["PATH"]!, HOME: root }, stdio: "pipe" });
    const left = fs.readdirSync(dest).sort();
    expect(left).toHaveLength(2);
    expect(left[0]).toMatch(/^qubes-backup-\d{4}-\d\d-\d\dT\d{6}$/);
    expect(left[1]).toBe(`${left[0]}.RESTORE-INSTRUCTIONS.txt`);
    const v = await runQbackup(["verify", "-p", pass, path.join(dest, left[0]!)]);
    expect(v.status, v.stderr).toBe(0);
  });
});
