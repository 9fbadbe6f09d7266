/**
 * What `qbackup create` writes, restored with nothing but the stock tools (GNU tar, the Tarsnap
 * scrypt CLI without -f, gzip) by the emergency procedure: byte-identical, holes kept, for several
 * chunks and one chunk, with gzip and without compression.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TEST_PASSPHRASE, passphraseFile, runQbackup, tempDir } from "../support/cli.js";
import { emergencyRestoreV4 } from "../support/emergency-v4.js";
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
let image: string;
let small: string;
let tree: string;
let pass: string;

beforeAll(() => {
  dir = tempDir();
  image = path.join(dir, "private.img");
  makeSparseImage(image, IMAGE_SIZE, GOLDEN_REGIONS);
  small = path.join(dir, "small.img");
  fs.writeFileSync(small, Buffer.concat([Buffer.from("small volume\n"), prng("small", 5000)]));
  tree = path.join(dir, "Documents");
  fs.mkdirSync(tree);
  makeTree(tree);
  pass = passphraseFile(dir);
});

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const variants = [
  { name: "several chunks, gzip", flags: ["--chunk-size", "256K"], minChunks: 2 },
  { name: "one chunk, gzip", flags: [], minChunks: 1 },
  { name: "several chunks, no compression", flags: ["--chunk-size", "256K", "--no-compress"], minChunks: 2 },
  { name: "one chunk, no compression", flags: ["--no-compress"], minChunks: 1 },
  { name: "several chunks, external xz filter", flags: ["--chunk-size", "256K", "-Z", "xz"], minChunks: 2 },
];

describe.each(variants)("qbackup create → emergency procedure ($name)", ({ flags, minChunks }) => {
  it("restores every file byte-identically, holes kept", async () => {
    const out = path.join(dir, `backup-${flags.join("")}.bin`);
    const created = await runQbackup([
      "create",
      "-y",
      "-p",
      pass,
      "--scrypt-logn",
      "10",
      "--backup-id",
      "20261122T120000-123456789",
      ...flags,
      out,
      `work=${image}`,
      `work:data=${small}`,
      `work=${tree}`,
      `dom0:user=${tree}`,
    ]);
    expect(created.stderr).toContain("written to");
    expect(created.status).toBe(0);

    const restored = emergencyRestoreV4(out, path.join(dir, `restore-${flags.join("")}`), TEST_PASSPHRASE);
    const x = restored.extracted;
    expect(restored.header).toMatchObject({
      version: "4",
      "backup-id": "20261122T120000-123456789",
      compressed: flags.includes("--no-compress") ? "False" : "True",
      "compression-filter": flags.includes("xz") ? "xz" : "gzip",
    });

    // the volume: same bytes, same apparent size, and still sparse
    expect(fs.statSync(path.join(x, "vm1/private.img")).size).toBe(IMAGE_SIZE);
    expect(sha256File(path.join(x, "vm1/private.img"))).toBe(sha256File(image));
    expect(allocatedBytes(path.join(x, "vm1/private.img"))).toBeLessThanOrEqual(DATA_BYTES + 64 * 1024);
    const imageChunks = restored.files.find((f) => f.base === "vm1/private.img")!.chunks;
    expect(imageChunks).toBeGreaterThanOrEqual(minChunks);
    if (minChunks === 1) expect(imageChunks).toBe(1);

    // a small file volume and a directory tree in the same qube
    expect(sha256File(path.join(x, "vm1/data.img"))).toBe(sha256File(small));
    expect(snapshotTree(path.join(x, "vm1/Documents"))).toEqual(snapshotTree(tree));
    // the dom0 home
    expect(snapshotTree(path.join(x, "dom0-home/user"))).toEqual(snapshotTree(tree));
    // the manifest names both
    const xml = fs.readFileSync(path.join(x, "qubes.xml"), "utf8");
    expect(xml).toContain('<feature name="backup-path">vm1/</feature>');
    expect(xml).toContain('<feature name="backup-path">dom0-home/user</feature>');
    expect(restored.files.map((f) => f.base).sort()).toEqual(
      ["dom0-home/user", "qubes.xml", "vm1/Documents", "vm1/data.img", "vm1/private.img"].sort(),
    );
  });
});
