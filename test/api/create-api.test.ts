/**
 * The library API end to end into an in-memory sink, then read back with our own codecs: the
 * header parses under the reference reader's rules, the manifest under REF-R's qubes.xml rules,
 * and every qube's recorded backup-size is an upper bound of the bytes its members take.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { gunzipSync } from "node:zlib";
import { afterAll, beforeAll, expect, it } from "vitest";
import { backupHeader, createBackup, parseSourceSpec, planBackup, qubesXml, scrypt } from "../../src/index.js";
import type { BackupSink } from "../../src/index.js";
import { tempDir } from "../support/cli.js";
import { makeSparseImage, makeTree, prng } from "../support/sources.js";

let dir: string;
beforeAll(() => (dir = tempDir("qb-api-")));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function memorySink(): BackupSink & { bytes(): Buffer; committed: boolean } {
  const parts: Buffer[] = [];
  return {
    location: "memory",
    committed: false,
    async write(d) {
      parts.push(Buffer.from(d));
    },
    async commit() {
      this.committed = true;
    },
    async abort() {},
    bytes: () => Buffer.concat(parts),
  };
}

it("writes a backup whose header, manifest and sizes satisfy the reference reader's rules", async () => {
  const img = path.join(dir, "a.img");
  makeSparseImage(img, 8 * 1024 * 1024, [{ offset: 4096, length: 200_000, label: "api" }]);
  const noise = path.join(dir, "noise.img");
  fs.writeFileSync(noise, prng("noise", 300_000)); // incompressible: stored ≈ source
  const home = path.join(dir, "user");
  fs.mkdirSync(home);
  makeTree(home);

  const plan = await planBackup(
    ["work=" + img, "work:data=" + noise, "mail=" + noise, "dom0=" + home].map(parseSourceSpec),
  );
  const sink = memorySink();
  const passphrase = "api test passphrase";
  const result = await createBackup(plan, {
    sink,
    passphrase,
    compression: { kind: "gzip", level: 6, jobs: 2 },
    chunkSize: 64 * 1024,
    scrypt: { logN: 10, r: 8, p: 1 },
  });
  expect(sink.committed).toBe(true);
  expect(result.bytesWritten).toBe(sink.bytes().length);
  expect(sink.bytes().length % 10240).toBe(0);

  const x = path.join(dir, "x");
  fs.mkdirSync(x);
  fs.writeFileSync(path.join(dir, "b.bin"), sink.bytes());
  execFileSync("tar", ["-i", "-xf", path.join(dir, "b.bin"), "-C", x]);

  const header = fs.readFileSync(path.join(x, "backup-header"));
  const authenticated = await scrypt.open(
    fs.readFileSync(path.join(x, "backup-header.hmac")),
    Buffer.from(`backup-header!${passphrase}`),
  );
  expect(authenticated.equals(header)).toBe(true);
  const parsed = backupHeader.parseBackupHeader(header);
  expect(parsed).toMatchObject({
    version: 4,
    encrypted: true,
    compressed: true,
    compressionFilter: "gzip",
    backupId: result.backupId,
  });

  const xmlChunk = await scrypt.open(
    fs.readFileSync(path.join(x, "qubes.xml.000.enc")),
    Buffer.from(`${result.backupId}!qubes.xml.000!${passphrase}`),
  );
  const xmlTar = gunzipSync(xmlChunk);
  fs.writeFileSync(path.join(dir, "xml.tar"), xmlTar);
  const xml = execFileSync("tar", ["-xOf", path.join(dir, "xml.tar"), "qubes.xml"]);
  const manifest = qubesXml.parseQubesXml(xml);
  const byName = new Map(manifest.domains.map((d) => [d.name, d]));
  expect(byName.get("dom0")).toMatchObject({ klass: "AdminVM", included: true, backupPath: "dom0-home/user" });
  expect(byName.get("work")).toMatchObject({ klass: "StandaloneVM", included: true, backupPath: "vm1/", label: "red" });
  expect(byName.get("work")!.volumes).toEqual([
    { name: "private", saveOnStop: true, size: 8 * 1024 * 1024 },
    { name: "data", saveOnStop: true, size: 300_000 },
  ]);
  expect(byName.get("mail")).toMatchObject({ included: true, backupPath: "vm2/" });

  // backup-size is a hard upper bound for the reference reader restoring from a qube (spec §2.5)
  const storedUnder = (prefix: string) =>
    fs
      .readdirSync(path.join(x, prefix), { recursive: true, withFileTypes: true })
      .filter((e) => e.isFile())
      .reduce((n, e) => n + fs.statSync(path.join(e.parentPath, e.name)).size, 0);
  for (const [name, prefix] of [
    ["work", "vm1"],
    ["mail", "vm2"],
    ["dom0", "dom0-home"],
  ] as const) {
    const stored = storedUnder(prefix);
    expect(result.qubes.find((q) => q.name === name)!.storedBytes).toBe(stored);
    expect(byName.get(name)!.backupSize).toBeGreaterThanOrEqual(stored);
  }
});

it("aborts the sink and rethrows when a source fails mid-way", async () => {
  const img = path.join(dir, "vanishing.img");
  fs.writeFileSync(img, prng("v", 10_000));
  const plan = await planBackup([parseSourceSpec("work=" + img)]);
  fs.truncateSync(img, 100); // shrinks between planning and reading
  let aborted = false;
  const sink = { ...memorySink(), abort: async () => void (aborted = true) };
  await expect(
    createBackup(plan, {
      sink,
      passphrase: "p4ss",
      compression: { kind: "none" },
      chunkSize: 4096,
      scrypt: { logN: 10, r: 8, p: 1 },
    }),
  ).rejects.toMatchObject({ code: "ERR_INPUT", message: expect.stringMatching(/shrank/) });
  expect(aborted).toBe(true);
  expect(sink.committed).toBe(false);
});
