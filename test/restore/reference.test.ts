/**
 * Backups built with the stock tools exactly as Qubes' writer lays them out (test/support/
 * reference-v4.ts) restore byte-identically with qbackup, holes kept: several chunks, more than
 * 1000 chunks with an empty final chunk, bzip2, xz and no compression.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { passphraseFile, runQbackup, tempDir } from "../support/cli.js";
import {
  FIREWALL_XML_V4,
  FIXTURE_IMAGE_SHA256,
  FIXTURE_PASSPHRASE,
  NOTES_TXT,
  buildReferenceV4,
} from "../support/reference-v4.js";
import type { ReferenceBuildOptions } from "../support/reference-v4.js";
import { allocatedBytes, sha256File, snapshotTree } from "../support/sources.js";

let dir: string;
let pass: string;
beforeAll(() => {
  dir = tempDir("qb-reference-");
  pass = passphraseFile(dir, FIXTURE_PASSPHRASE);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const LOGN_10 = ["--logN", "10", "-r", "8", "-p", "1"];
const builds: Array<[string, ReferenceBuildOptions, (members: string[]) => void]> = [
  [
    "gzip, 1 MiB chunks",
    { compress: "gzip" },
    (m) => expect(m.filter((n) => n.startsWith("vm5/private.img.")).length).toBe(4),
  ],
  ["bzip2", { compress: "bzip2" }, () => undefined],
  ["xz", { compress: "xz" }, () => undefined],
  ["uncompressed", { compress: "none" }, () => undefined],
  [
    "uncompressed, 2048-byte chunks: > 1000 chunks and an empty final chunk",
    { compress: "none", chunkSize: 2048, qubesXmlChunkSize: 1024 * 1024 },
    (m) => {
      const chunks = m.filter((n) => n.startsWith("vm5/private.img."));
      expect(chunks.length).toBeGreaterThan(1000);
      expect(chunks).toContain("vm5/private.img.1000.enc");
    },
  ],
];

describe.each(builds)("a reference backup (%s)", (name, options, checkMembers) => {
  it("restores byte-identically with holes kept, and verifies", async () => {
    const work = path.join(dir, `build-${builds.findIndex((b) => b[0] === name)}`);
    const build = buildReferenceV4(work, { scryptArgs: LOGN_10, ...options });
    checkMembers(build.members.map((m) => m.name));
    if (options.chunkSize === 2048) {
      const last = build.members.filter((m) => m.name.startsWith("vm5/private.img.")).pop()!;
      expect(last.size).toBe(128); // the empty final chunk: a scrypt container of 0 bytes
    }

    const dest = path.join(work, "restored");
    const r = await runQbackup(["restore", "-p", pass, build.backupFile, dest], { timeoutMs: 280_000 });
    expect(r.status, r.stderr).toBe(0);
    const img = path.join(dest, "work/private.img");
    expect(sha256File(img)).toBe(FIXTURE_IMAGE_SHA256);
    expect(allocatedBytes(img)).toBeLessThan(4 * 1024 * 1024);
    expect(fs.readFileSync(path.join(dest, "work/firewall.xml"), "utf8")).toBe(FIREWALL_XML_V4);
    expect(fs.readFileSync(path.join(dest, "work/notes.txt"), "utf8")).toBe(NOTES_TXT);
    expect(snapshotTree(path.join(dest, "dom0-home/user"))).toEqual(snapshotTree(build.src.home));

    const v = await runQbackup(["verify", "-p", pass, build.backupFile], { timeoutMs: 280_000 });
    expect(v.status, v.stderr).toBe(0);
  }, 300_000);
});
