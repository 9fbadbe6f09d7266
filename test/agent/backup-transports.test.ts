/**
 * Whole backups through every transport, with the real programs: `qbackup create` to a storage
 * agent behind a real sshd (ssh+agent://), to plain ssh://, to rclone:, and into --dest-command;
 * then `list` and `restore` from there, byte-identical. A client cut off mid-stream leaves no
 * backup that looks complete on the server, and a destination command that fails or stalls makes
 * create fail with a clear error and no "written" line. Needs `npm run build` (CI builds first).
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { passphraseFile, runQbackup, tempDir } from "../support/cli.js";
import type { CliOptions, CliResult } from "../support/cli.js";
import { makeSparseImage, makeTree, sha256File, snapshotTree } from "../support/sources.js";
import { SSH_USER, agentForcedCommand, forcedCommandLine, startSshd } from "../support/sshd.js";
import type { ClientKey, Sshd } from "../support/sshd.js";

const KIB = 1024;
const MIB = 1024 * KIB;

let dir: string;
let pass: string;
let img: string;
let home: string;
beforeAll(() => {
  dir = tempDir("qb-transports-");
  pass = passphraseFile(dir);
  img = path.join(dir, "work.img");
  makeSparseImage(img, 16 * MIB, [
    { offset: 0, length: 3 * MIB, label: "transport-a" },
    { offset: 9 * MIB, length: 1 * MIB, label: "transport-b" },
  ]);
  home = path.join(dir, "user");
  makeTree(home);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** `qbackup create -y -p PASSFILE ARGS…` */
function create(args: string[], opts?: CliOptions): Promise<CliResult> {
  return runQbackup(["create", "-y", "-p", pass, ...args], opts);
}

/** create → `list --json` → restore from `backup`, and compare with the sources. */
async function roundTrip(backup: string, extra: string[], label: string): Promise<void> {
  const created = await create([
    "--scrypt-logn",
    "10",
    "--chunk-size",
    "1M",
    ...extra,
    backup,
    `work=${img}`,
    `dom0=${home}`,
  ]);
  expect(created.status, created.stderr).toBe(0);
  expect(created.stderr).toMatch(/written to /);
  const listed = await runQbackup(["list", "--json", "-p", pass, ...extra, backup]);
  expect(listed.status, listed.stderr).toBe(0);
  expect(JSON.parse(listed.stdout.toString()).domains.map((d: { name: string }) => d.name)).toEqual(["dom0", "work"]);
  const out = path.join(dir, `out-${label}`);
  const restored = await runQbackup(["restore", "-p", pass, ...extra, backup, out]);
  expect(restored.status, restored.stderr).toBe(0);
  expect(sha256File(path.join(out, "work/private.img"))).toBe(sha256File(img));
  expect(snapshotTree(path.join(out, "dom0-home/user"))).toEqual(snapshotTree(home));
}

describe("over a real sshd", () => {
  let sshd: Sshd;
  let root: string;
  let shellKey: ClientKey;
  let adminKey: ClientKey;
  beforeAll(async () => {
    root = path.join(dir, "agent-root");
    fs.mkdirSync(root);
    sshd = await startSshd({ authorizedKeys: (pub) => [forcedCommandLine(agentForcedCommand(root), pub)] });
    shellKey = sshd.newClientKey("shell");
    adminKey = sshd.newClientKey("admin");
    sshd.setAuthorizedKeys([
      forcedCommandLine(agentForcedCommand(root), sshd.clientKey.publicKey),
      forcedCommandLine(agentForcedCommand(root, false), adminKey.publicKey),
      `restrict ${shellKey.publicKey}`,
    ]);
  });
  afterAll(async () => {
    await sshd?.stop();
  });

  const agentUrl = (name: string) => `ssh+agent://${SSH_USER}@127.0.0.1:${sshd.port}/${name}`;
  const ssh = (key?: ClientKey) => ["-e", sshd.sshBase(key).join(" ")];

  it("create → storage agent (append-only key) → list → restore, byte-identical; instructions beside it", async () => {
    await roundTrip(agentUrl("laptop-1"), ssh(), "agent");
    expect(fs.readdirSync(root).sort()).toEqual(["laptop-1", "laptop-1.RESTORE-INSTRUCTIONS.txt"]);
    const sheet = await runQbackup(["recovery-sheet", path.join(root, "laptop-1")]);
    expect(sheet.status, sheet.stderr).toBe(0);
    expect(fs.readFileSync(path.join(root, "laptop-1.RESTORE-INSTRUCTIONS.txt"), "utf8")).toBe(sheet.stdout.toString());
  });

  it("the agent refuses to overwrite an existing backup, and create says so", async () => {
    const before = fs.readFileSync(path.join(root, "laptop-1"));
    const r = await create(["--scrypt-logn", "10", ...ssh(), agentUrl("laptop-1"), `work=${img}`]);
    expect(r.status).toBe(6);
    expect(r.stderr).toMatch(/exists/);
    expect(r.stderr).not.toMatch(/written to/);
    expect(fs.readFileSync(path.join(root, "laptop-1")).equals(before)).toBe(true);
  });

  it("a client cut off mid-stream leaves nothing that looks complete, and a clear error", async () => {
    const big = path.join(dir, "big.img");
    fs.writeFileSync(big, randomBytes(48 * MIB)); // incompressible: 48 chunks of 1 MiB
    // once the agent holds a few MiB of the upload, the connection dies (ssh killed)
    const marker = sshd.clientKey.privatePath;
    let killed = false;
    const cutter = setInterval(() => {
      const partial = fs.readdirSync(root).find((n) => n.startsWith(".cut.partial"));
      if (killed || partial === undefined || fs.statSync(path.join(root, partial)).size < 2 * MIB) return;
      for (const pid of spawnSync("pgrep", ["-x", "ssh"]).stdout.toString().split("\n").filter(Boolean)) {
        const argv = fs.readFileSync(`/proc/${pid}/cmdline`, "latin1").split("\0");
        if (argv.includes(marker)) process.kill(Number(pid), "SIGKILL"); // our client's ssh, nobody else's
      }
      killed = true;
    }, 20);
    // logN 14, one KDF at a time: 48 chunks take a few seconds, time enough to cut the line
    const r = await create([
      "--scrypt-logn",
      "14",
      "-j",
      "1",
      "--chunk-size",
      "1M",
      ...ssh(),
      agentUrl("cut"),
      `big=${big}`,
    ]).finally(() => clearInterval(cutter));
    expect(killed, r.stderr).toBe(true);
    expect(r.status).toBe(6);
    expect(r.stderr).toMatch(/qbackup: error: storage agent (was killed|exited)/);
    expect(r.stderr).not.toMatch(/written to/);
    // the agent notices the cut and removes its temporary file; no "cut" ever appears
    for (let i = 0; i < 100 && fs.readdirSync(root).some((n) => n.includes("cut")); i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(fs.readdirSync(root).filter((n) => n.includes("cut"))).toEqual([]);
  });

  it("qbackup itself killed mid-upload (SIGKILL, no cleanup): the agent keeps nothing", async () => {
    const big = path.join(dir, "big.img");
    const r = await create(
      ["--scrypt-logn", "14", "-j", "1", "--chunk-size", "1M", ...ssh(), agentUrl("killed"), `big=${big}`],
      {
        signal: {
          name: "SIGKILL",
          when: () => {
            const partial = fs.readdirSync(root).find((n) => n.startsWith(".killed.partial"));
            return partial !== undefined && fs.statSync(path.join(root, partial)).size >= 2 * MIB;
          },
        },
      },
    );
    expect(r.signal).toBe("SIGKILL");
    for (let i = 0; i < 100 && fs.readdirSync(root).some((n) => n.includes("killed")); i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(fs.readdirSync(root).filter((n) => n.includes("killed"))).toEqual([]);
  });

  it("prune: refused for the append-only client, done for an administrator's key", async () => {
    const created = await create(["--scrypt-logn", "10", ...ssh(), agentUrl("laptop-2"), `dom0=${home}`]);
    expect(created.status, created.stderr).toBe(0);
    const past = new Date(Date.now() - 3600_000);
    fs.utimesSync(path.join(root, "laptop-1"), past, past); // received an hour ago
    const base = `ssh+agent://${SSH_USER}@127.0.0.1:${sshd.port}/`;
    const refused = await runQbackup(["prune", ...ssh(), base, "--keep-last", "1"]);
    expect(refused.status).toBe(6);
    expect(refused.stderr).toMatch(/append-only/);
    const sheets = (name: string) => [name, `${name}.RESTORE-INSTRUCTIONS.txt`];
    expect(fs.readdirSync(root).sort()).toEqual([...sheets("laptop-1"), ...sheets("laptop-2")]);
    const stored = await runQbackup(["list", "--json", ...ssh(), base]);
    expect(stored.status, stored.stderr).toBe(0);
    const listed = JSON.parse(stored.stdout.toString()) as { backups: Array<Record<string, unknown>> };
    expect(listed.backups.map((b) => [b["name"], b["restoreInstructions"]])).toEqual([
      ["laptop-1", true],
      ["laptop-2", true],
    ]);
    expect(listed.backups[0]!["size"]).toBe(fs.statSync(path.join(root, "laptop-1")).size);
    const table = await runQbackup(["list", ...ssh(), base]);
    expect(table.stdout.toString()).toMatch(/^laptop-2 +[\d.]+ [KM]iB +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d +yes$/m);
    const pruned = await runQbackup(["prune", ...ssh(adminKey), base, "--keep-within", "10m"]);
    expect(pruned.status, pruned.stderr).toBe(0);
    expect(pruned.stdout.toString()).toBe("deleted laptop-1\n");
    expect(fs.readdirSync(root).sort()).toEqual(sheets("laptop-2"));
  });

  it("plain ssh:// (a shell on the other side) round-trips too", async () => {
    const remoteDir = path.join(dir, "ssh-store");
    fs.mkdirSync(remoteDir);
    await roundTrip(`ssh://${SSH_USER}@127.0.0.1:${sshd.port}${remoteDir}/b.bin`, ssh(shellKey), "ssh");
    expect(fs.readdirSync(remoteDir)).toEqual(["b.bin"]);
  });
});

describe("rclone", () => {
  it("create to an rclone remote and restore from it, byte-identical", async () => {
    const conf = path.join(dir, "rclone.conf");
    fs.writeFileSync(conf, "[loc]\ntype = local\n");
    const store = path.join(dir, "rclone-store");
    fs.mkdirSync(store);
    const saved = { config: process.env["RCLONE_CONFIG"], ca: process.env["AWS_CA_BUNDLE"] };
    process.env["RCLONE_CONFIG"] = conf;
    delete process.env["AWS_CA_BUNDLE"];
    try {
      await roundTrip(`rclone:loc:${store}/r.bin`, [], "rclone");
    } finally {
      if (saved.config === undefined) delete process.env["RCLONE_CONFIG"];
      else process.env["RCLONE_CONFIG"] = saved.config;
      if (saved.ca !== undefined) process.env["AWS_CA_BUNDLE"] = saved.ca;
    }
    expect(fs.readdirSync(store)).toEqual(["r.bin"]);
  });
});

describe("--dest-command", () => {
  it("pipes the backup into the command; --source-command reads it back", async () => {
    const file = path.join(dir, "piped.bin");
    const created = await create(["--scrypt-logn", "10", "--dest-command", `cat > '${file}'`, `work=${img}`]);
    expect(created.status, created.stderr).toBe(0);
    const restored = await runQbackup([
      "restore",
      "-p",
      pass,
      "--source-command",
      `cat '${file}'`,
      path.join(dir, "out-piped"),
    ]);
    expect(restored.status, restored.stderr).toBe(0);
    expect(sha256File(path.join(dir, "out-piped/work/private.img"))).toBe(sha256File(img));
  });

  it("a command that exits non-zero fails the backup with its status and message", async () => {
    const r = await create([
      "--scrypt-logn",
      "10",
      "--dest-command",
      "cat > /dev/null; echo 'storage full' >&2; exit 3",
      `work=${img}`,
    ]);
    expect(r.status).toBe(6);
    expect(r.stderr).toMatch(/qbackup: error: .*(exit|status) .*3.*|storage full/);
    expect(r.stderr).toMatch(/storage full/);
    expect(r.stderr).not.toMatch(/written to/);
  });

  it("a command that stops reading fails the backup within the watchdog time", async () => {
    const started = Date.now();
    const r = await create([
      "--scrypt-logn",
      "10",
      "--stall-timeout",
      "2",
      "--dest-command",
      "sleep 60",
      `work=${img}`,
    ]);
    const seconds = (Date.now() - started) / 1000;
    expect(r.status).toBe(6);
    expect(r.stderr).toMatch(/qbackup: error: .*(stall|nothing|accept)/i);
    expect(r.stderr).not.toMatch(/written to/);
    expect(seconds).toBeLessThan(30);
  });
});
