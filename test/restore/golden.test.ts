/**
 * The golden v4 backup (built with the stock tools in Qubes' exact layout and validated with the
 * reference reader): list, verify and restore it byte-identically, holes kept.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { REPO, passphraseFile, runQbackup, tempDir } from "../support/cli.js";
import { allocatedBytes, sha256File } from "../support/sources.js";

const GOLDEN = path.join(REPO, "test/fixtures/golden");
const BACKUP = path.join(GOLDEN, "v4/qubes-backup-v4.bin");
const sums = new Map(
  fs
    .readFileSync(path.join(GOLDEN, "src/SHA256SUMS"), "utf8")
    .trim()
    .split("\n")
    .map((line) => {
      const [sum, file] = line.split(/\s+/);
      return [file!.replace(/^\.\//, ""), sum!] as const;
    }),
);

let dir: string;
let pass: string;
beforeAll(() => {
  dir = tempDir("qb-golden-");
  pass = passphraseFile(dir, "qubes-fixture-passphrase");
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

it("lists the golden backup like qvm-backup-restore", async () => {
  const r = await runQbackup(["list", "--json", "-p", pass, BACKUP]);
  expect(r.status, r.stderr).toBe(0);
  const listing = JSON.parse(r.stdout.toString());
  expect(listing).toMatchObject({
    backupId: "20240102T030405-4242",
    version: 4,
    compressed: true,
    compressionFilter: "gzip",
  });
  expect(listing.domains).toEqual([
    {
      name: "dom0",
      klass: "AdminVM",
      template: null,
      netvm: null,
      label: "black",
      included: true,
      backupPath: "dom0-home/user",
      size: 28672,
    },
    {
      name: "debian-12-xfce",
      klass: "TemplateVM",
      template: null,
      netvm: "default",
      label: "black",
      included: false,
      backupPath: null,
      size: 0,
    },
    {
      name: "work",
      klass: "AppVM",
      template: "debian-12-xfce",
      netvm: null,
      label: "blue",
      included: true,
      backupPath: "vm5/",
      size: 3162112,
    },
  ]);
});

it("restores the golden backup byte-identically, holes kept", async () => {
  const dest = path.join(dir, "restored");
  const r = await runQbackup(["restore", "-p", pass, BACKUP, dest]);
  expect(r.status, r.stderr).toBe(0);
  const img = path.join(dest, "work/private.img");
  expect(fs.statSync(img).size).toBe(64 * 1024 * 1024);
  expect(sha256File(img)).toBe(sums.get("vm/work/private.img"));
  expect(allocatedBytes(img)).toBeLessThan(4 * 1024 * 1024);
  expect(sha256File(path.join(dest, "work/firewall.xml"))).toBe(sums.get("vm/work/firewall.xml"));
  expect(sha256File(path.join(dest, "work/notes.txt"))).toBe(sums.get("vm/work/notes.txt"));
  for (const f of [".bashrc", ".config/fixture/settings.ini", "Documents/todo.txt"]) {
    expect(sha256File(path.join(dest, "dom0-home/user", f))).toBe(sums.get(`home/user/${f}`));
  }
  expect(fs.readlinkSync(path.join(dest, "dom0-home/user/todo-link"))).toBe("Documents/todo.txt");
  const meta = JSON.parse(fs.readFileSync(path.join(dest, "work/qube.json"), "utf8"));
  expect(meta).toMatchObject({
    name: "work",
    class: "AppVM",
    label: "blue",
    template: "debian-12-xfce",
    netvm: null,
    features: { "service.fixture": "1" },
    tags: ["created-by-dom0", "fixture"],
  });
  expect(meta.properties).toMatchObject({ memory: "600" });
});

it("verifies the golden backup completely", async () => {
  const r = await runQbackup(["verify", "-p", pass, BACKUP]);
  expect(r.status, r.stderr).toBe(0);
  expect(r.stderr).toMatch(/^work\s+verified\s+private\.img, firewall\.xml, notes\.txt/m);
  expect(r.stderr).toMatch(/^dom0\s+verified\s+user/m);
});
