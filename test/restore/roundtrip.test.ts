/**
 * qbackup create → qbackup restore, through the CLI: byte-identical, holes kept, every file
 * kind; selective restore, verify, list, and the refusal to overwrite.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { passphraseFile, runQbackup, tempDir, makeBackup } from "../support/cli.js";
import {
  GOLDEN_DATA_BYTES,
  GOLDEN_IMAGE_SIZE,
  GOLDEN_REGIONS,
  allocatedBytes,
  makeSparseImage,
  makeTree,
  prng,
  sha256File,
  snapshotTree,
} from "../support/sources.js";

const IMAGE_SIZE = GOLDEN_IMAGE_SIZE;
const DATA_BYTES = GOLDEN_DATA_BYTES;

let dir: string;
let pass: string;
let image: string;
let small: string;
let tree: string;
let backup: string;

beforeAll(async () => {
  dir = tempDir("qb-roundtrip-");
  pass = passphraseFile(dir);
  image = path.join(dir, "private.img");
  makeSparseImage(image, IMAGE_SIZE, GOLDEN_REGIONS);
  small = path.join(dir, "small.img");
  fs.writeFileSync(small, prng("small", 12345));
  tree = path.join(dir, "Documents");
  fs.mkdirSync(tree);
  makeTree(tree);
  backup = path.join(dir, "backup.bin");
  await makeBackup(pass, backup, [
    `work=${image}`,
    `work:data=${small}`,
    `work=${tree}`,
    `mail=${small}`,
    `dom0:user=${tree}`,
  ]);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe("qbackup create → restore", () => {
  it("restores every qube byte-identically, holes kept, with qube.json", async () => {
    const dest = path.join(dir, "restored-all");
    const r = await runQbackup(["restore", "-p", pass, backup, dest]);
    expect(r.stderr).toMatch(/^work\s+restored/m);
    expect(r.status, r.stderr).toBe(0);

    const img = path.join(dest, "work/private.img");
    expect(fs.statSync(img).size).toBe(IMAGE_SIZE);
    expect(sha256File(img)).toBe(sha256File(image));
    expect(allocatedBytes(img)).toBeLessThanOrEqual(DATA_BYTES + 256 * 1024);
    expect(sha256File(path.join(dest, "work/data.img"))).toBe(sha256File(small));
    expect(snapshotTree(path.join(dest, "work/Documents"))).toEqual(snapshotTree(tree));
    expect(sha256File(path.join(dest, "mail/private.img"))).toBe(sha256File(small));
    expect(snapshotTree(path.join(dest, "dom0-home/user"))).toEqual(snapshotTree(tree));

    const meta = JSON.parse(fs.readFileSync(path.join(dest, "work/qube.json"), "utf8"));
    expect(meta).toMatchObject({ name: "work", class: "StandaloneVM", label: "red", backupPath: "vm1/" });
    expect(meta.files.map((f: { name: string }) => f.name)).toEqual(["private.img", "data.img", "Documents"]);
    // nothing else: no temporary directories left behind
    expect(fs.readdirSync(dest).sort()).toEqual(["dom0-home", "mail", "work"]);
    expect(fs.readdirSync(path.join(dest, "dom0-home"))).toEqual(["user"]);
  });

  it("restores only the named qubes", async () => {
    const dest = path.join(dir, "restored-mail");
    const r = await runQbackup(["restore", "-p", pass, backup, dest, "mail"]);
    expect(r.status, r.stderr).toBe(0);
    expect(fs.readdirSync(dest)).toEqual(["mail"]);
    expect(sha256File(path.join(dest, "mail/private.img"))).toBe(sha256File(small));
  });

  it("excludes qubes and the dom0 home", async () => {
    const dest = path.join(dir, "restored-excl");
    const r = await runQbackup(["restore", "-p", pass, "-x", "work", "--skip-dom0-home", backup, dest]);
    expect(r.status, r.stderr).toBe(0);
    expect(fs.readdirSync(dest)).toEqual(["mail"]);
  });

  it("never overwrites: an existing qube directory is an error, or restored beside with --rename-conflicting", async () => {
    const dest = path.join(dir, "restored-conflict");
    fs.mkdirSync(path.join(dest, "mail"), { recursive: true });
    fs.writeFileSync(path.join(dest, "mail/keep.txt"), "mine");
    const refused = await runQbackup(["restore", "-p", pass, backup, dest, "mail"]);
    expect(refused.status).toBe(6);
    expect(refused.stderr).toMatch(/^qbackup: error: \S+mail already exists; not overwriting it$/m);
    expect(fs.readdirSync(dest)).toEqual(["mail"]);
    expect(fs.readdirSync(path.join(dest, "mail"))).toEqual(["keep.txt"]);

    const beside = await runQbackup(["restore", "-p", pass, "--rename-conflicting", backup, dest, "mail"]);
    expect(beside.status, beside.stderr).toBe(0);
    expect(fs.readdirSync(dest).sort()).toEqual(["mail", "mail-1"]);
    expect(sha256File(path.join(dest, "mail-1/private.img"))).toBe(sha256File(small));
  });

  it("verify reads everything and writes nothing", async () => {
    const r = await runQbackup(["verify", "-p", pass, backup], { cwd: dir });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^work\s+verified\s+private\.img, data\.img, Documents/m);
    expect(r.stderr).toMatch(/^dom0\s+verified/m);
  });

  it("restore --verify-only is verify", async () => {
    const r = await runQbackup(["restore", "--verify-only", "-p", pass, backup, "mail"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^mail\s+verified/m);
  });

  it("list shows the qubes, as a table and as JSON", async () => {
    const table = await runQbackup(["list", "-p", pass, backup]);
    expect(table.status, table.stderr).toBe(0);
    expect(table.stdout.toString()).toMatch(/^work\s+StandaloneVM\s+-\s+default\s+red\s+\S+ \S+\s+yes$/m);
    const json = await runQbackup(["list", "--json", "-p", pass, backup]);
    const listing = JSON.parse(json.stdout.toString());
    expect(listing.domains.map((d: { name: string; included: boolean }) => [d.name, d.included])).toEqual([
      ["dom0", true],
      ["work", true],
      ["mail", true],
    ]);
  });

  it("reads the backup from stdin and from --source-command", async () => {
    const viaCommand = await runQbackup([
      "restore",
      "-p",
      pass,
      "--source-command",
      `cat '${backup}'`,
      path.join(dir, "via-cmd"),
      "mail",
    ]);
    expect(viaCommand.status, viaCommand.stderr).toBe(0);
    expect(sha256File(path.join(dir, "via-cmd/mail/private.img"))).toBe(sha256File(small));
    const viaStdin = await runQbackup(["restore", "-p", pass, "-", path.join(dir, "via-stdin"), "mail"], {
      input: fs.readFileSync(backup),
    });
    expect(viaStdin.status, viaStdin.stderr).toBe(0);
    expect(sha256File(path.join(dir, "via-stdin/mail/private.img"))).toBe(sha256File(small));
  });

  it("a wrong passphrase is refused at the header, and nothing is created", async () => {
    const wrong = path.join(dir, "wrong.txt");
    fs.writeFileSync(wrong, "not the passphrase\n");
    const dest = path.join(dir, "restored-wrong");
    const r = await runQbackup(["restore", "-p", wrong, backup, dest]);
    expect(r.status).toBe(3);
    expect(r.stderr).toMatch(/^qbackup: error: backup-header\.hmac does not verify: wrong passphrase$/m);
    expect(fs.existsSync(dest) ? fs.readdirSync(dest) : []).toEqual([]);
  });

  it("a qube that is not in the backup is a usage error", async () => {
    const r = await runQbackup(["restore", "-p", pass, backup, path.join(dir, "nope"), "nosuchqube"]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^qbackup: error: qube nosuchqube is not in this backup$/m);
  });
});

describe("restore refuses inner symlinks that point outside", () => {
  it.each([
    ["../../../etc/passwd", "relative, climbing out"],
    ["/etc/passwd", "absolute"],
  ])("%s (%s): rejected by restore and verify, nothing published", async (target) => {
    const src = path.join(dir, `evil-${Buffer.from(target).toString("hex").slice(0, 12)}`);
    fs.mkdirSync(path.join(src, "sub"), { recursive: true });
    fs.writeFileSync(path.join(src, "ok.txt"), "fine");
    fs.symlinkSync(target, path.join(src, "sub/escape"));
    const evil = `${src}.bin`;
    await makeBackup(pass, evil, [`evil:files=${src}`], []);

    const dest = `${src}-restored`;
    const r = await runQbackup(["restore", "-p", pass, evil, dest]);
    expect(r.status).toBe(4);
    expect(r.stderr).toContain(
      `qbackup: error: symlink files/sub/escape -> ${target} points outside the restored directory`,
    );
    expect(fs.readdirSync(dest)).toEqual([]);

    const v = await runQbackup(["verify", "-p", pass, evil]);
    expect(v.status).toBe(4);
    expect(v.stderr).toContain("points outside the restored directory");
  });
});
