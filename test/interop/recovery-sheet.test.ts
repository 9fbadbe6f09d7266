/**
 * The recovery sheet written beside a backup, followed literally: its script, saved as it stands
 * and run with bash, restores the backup with GNU tar, the stock scrypt tool and gzip alone —
 * byte-identically, holes kept, with a passphrase full of shell metacharacters. And the warning
 * when the passphrase itself would only exist inside the backup.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { RECOVERY_SHEET_SUFFIX, scriptOf } from "../../src/format/recovery-sheet.js";
import { TEST_PASSPHRASE, makeBackup, passphraseFile, runQbackup, tempDir } from "../support/cli.js";
import {
  GOLDEN_IMAGE_SIZE,
  GOLDEN_REGIONS,
  allocatedBytes,
  makeSparseImage,
  makeTree,
  sha256File,
  snapshotTree,
} from "../support/sources.js";

let dir: string;
let pass: string;
beforeAll(() => {
  dir = tempDir("qb-recovery-");
  pass = passphraseFile(dir);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

it("the instructions beside a backup restore it with tar, scrypt and gzip alone", async () => {
  const img = path.join(dir, "work.img");
  makeSparseImage(img, GOLDEN_IMAGE_SIZE, GOLDEN_REGIONS);
  const docs = path.join(dir, "docs");
  makeTree(docs);
  const home = path.join(dir, "user");
  makeTree(home);
  const backup = path.join(dir, "backup.bin");
  await makeBackup(pass, backup, [`work=${img}`, `work=${docs}`, `dom0=${home}`]);

  const sheetFile = `${backup}${RECOVERY_SHEET_SUFFIX}`;
  const sheet = fs.readFileSync(sheetFile, "utf8");
  expect(sheet).toMatch(/vm1\/private\.img \(\d+ chunks\)/);
  const printed = await runQbackup(["recovery-sheet", backup]);
  expect(printed.status, printed.stderr).toBe(0);
  expect(printed.stdout.toString()).toBe(sheet);

  // a person saves the script part and runs it; nothing of qbackup is involved from here on
  const work = path.join(dir, "by-hand");
  fs.mkdirSync(work);
  fs.writeFileSync(path.join(work, "restore.sh"), scriptOf(sheet));
  const r = spawnSync("bash", ["restore.sh", backup], { cwd: work, input: `${TEST_PASSPHRASE}\n` });
  expect(r.status, r.stderr.toString()).toBe(0);
  const out = path.join(work, "restored/extracted");
  expect(sha256File(path.join(out, "vm1/private.img"))).toBe(sha256File(img));
  expect(allocatedBytes(path.join(out, "vm1/private.img"))).toBeLessThan(GOLDEN_IMAGE_SIZE / 2);
  expect(snapshotTree(path.join(out, "vm1/docs"))).toEqual(snapshotTree(docs));
  expect(snapshotTree(path.join(out, "dom0-home/user"))).toEqual(snapshotTree(home));
  expect(fs.readFileSync(path.join(out, "qubes.xml"), "utf8")).toMatch(/<name>work<\/name>|name="work"|>work</);

  // and a wrong passphrase stops it at the header, before anything is extracted
  const wrong = path.join(dir, "wrong");
  fs.mkdirSync(wrong);
  fs.writeFileSync(path.join(wrong, "restore.sh"), scriptOf(sheet));
  const w = spawnSync("bash", ["restore.sh", backup], { cwd: wrong, input: "not the passphrase\n" });
  expect(w.status).not.toBe(0);
  expect(fs.readdirSync(path.join(wrong, "restored")).includes("extracted")).toBe(false);
});

it("warns when the passphrase comes from inside what is being backed up", async () => {
  const home = path.join(dir, "home-with-secret");
  makeTree(home);
  const secret = path.join(home, "backup-pass.txt");
  fs.writeFileSync(secret, `${TEST_PASSPHRASE}\n`, { mode: 0o600 });
  const warning = /warning: the passphrase comes from .*backup-pass\.txt, which is inside this backup/;
  for (const how of [
    ["-p", secret],
    ["--passphrase-command", `cat ${secret}`],
  ]) {
    const out = path.join(dir, `inside-${how[0]!.replace(/\W/g, "")}.bin`);
    const r = await runQbackup(["create", "-y", "--scrypt-logn", "10", ...how, out, `dom0=${home}`]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(warning);
  }
  const outside = await runQbackup([
    "create",
    "-y",
    "--scrypt-logn",
    "10",
    "-p",
    pass,
    path.join(dir, "ok.bin"),
    `dom0=${home}`,
  ]);
  expect(outside.stderr).not.toMatch(/warning: the passphrase comes from/);
});
