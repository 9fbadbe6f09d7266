/**
 * Proves the v3 reference builder right: R3-W's chunking rule, the R3 header and `(stdin)= ` HMAC
 * text (byte-identical to the golden v3 fixture's), R3-W's member order with every chunk followed
 * by its `.hmac`, a core2 qubes.xml that agrees with the members, and — the point of it all —
 * builds that restore byte-identically with the §9.2 emergency procedure (stock tools only), with
 * several chunks per file, gzip or uncompressed, encrypted (`vmN/`) or not (`appvms/<name>/`).
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseQubesXmlCore2 } from "../../src/codec/qubes-xml/index.js";
import { emergencyRestoreV3 } from "./emergency-v3.js";
import type { ReferenceV3Build, ReferenceV3Options } from "./reference-v3.js";
import { buildReferenceV3, cutChunksR3, r3ReadLengths, referenceHeaderV3 } from "./reference-v3.js";
import { allocatedBytes, sha256File, snapshotTree } from "./sources.js";

const GOLDEN_V3 = new URL("../fixtures/golden/v3/", import.meta.url);
const CHUNK = 64 * 1024;
const HMAC_LINE = /^\(stdin\)= [0-9a-f]{128}\n$/;

let tmp: string;
let build: ReferenceV3Build;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "qb-"));
  build = buildReferenceV3({ dir: path.join(tmp, "default"), template: true });
});

afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function build2(name: string, options: Omit<ReferenceV3Options, "dir">): ReferenceV3Build {
  return buildReferenceV3({ dir: path.join(tmp, name), ...options });
}

/** Every archived file restored by the emergency procedure equals its source. */
function expectRestoredIdentically(b: ReferenceV3Build, name: string): void {
  const r = emergencyRestoreV3(b.backup, path.join(tmp, `restore-${name}`), b.options.passphrase);
  expect(r.headerDigest).toBe("sha512");
  expect(r.files.map((f) => f.base).sort()).toEqual(b.files.map((f) => f.base).sort());
  for (const f of b.files) {
    expect(r.files.find((x) => x.base === f.base)!.chunks, f.base).toBe(f.chunks);
    const restored = path.join(r.extracted, f.base);
    if (fs.statSync(f.source).isDirectory()) {
      expect(snapshotTree(restored), f.base).toEqual(snapshotTree(f.source));
    } else {
      expect(fs.statSync(restored).size, f.base).toBe(fs.statSync(f.source).size);
      expect(sha256File(restored), f.base).toBe(sha256File(f.source));
    }
  }
  // sparse images come back sparse
  const img = b.files.find((f) => f.source.endsWith("/work/private.img"))!;
  expect(allocatedBytes(path.join(r.extracted, img.base))).toBeLessThan(fs.statSync(img.source).size / 4);
}

/** Outer member names as GNU tar lists them with -i (each member is its own archive). */
function tarList(file: string): string[] {
  const r = spawnSync("tar", ["-i", "-tf", file], { encoding: "utf8" });
  expect(r.status).toBe(0);
  return r.stdout.trim().split("\n");
}

describe("cutChunksR3: R3-W's copy loop", () => {
  const full = (n: number) => () => n;

  it("closes a chunk when the next read might overflow it; EOF closes the last one", () => {
    const sizes = (len: number) => cutChunksR3(Buffer.alloc(len), 10, 3, full(3)).map((c) => c.length);
    expect(sizes(0)).toEqual([0]);
    expect(sizes(5)).toEqual([5]);
    expect(sizes(9)).toEqual([9, 0]); // closed at 9 (9 + 3 > 10) before EOF was seen: empty last chunk
    expect(sizes(20)).toEqual([9, 9, 2]);
  });

  it("with short reads chunk sizes vary, never exceed the chunk size, and concatenate to the stream", () => {
    const stream = Buffer.from(Array.from({ length: 100_000 }, (_, i) => i % 251));
    const chunks = cutChunksR3(stream, 4096, 700, r3ReadLengths(700, true, "test"));
    expect(Buffer.concat(chunks).equals(stream)).toBe(true);
    for (const c of chunks) expect(c.length).toBeLessThanOrEqual(4096);
    expect(new Set(chunks.slice(0, -1).map((c) => c.length)).size).toBeGreaterThan(1);
  });

  it("refuses a read size larger than the chunk size", () => {
    expect(() => cutChunksR3(Buffer.alloc(1), 10, 11, full(11))).toThrow(/read size/);
  });
});

describe("buildReferenceV3: structure", () => {
  it("writes R3-W's header, and its HMAC text is byte-identical to the golden v3 fixture's", () => {
    const manifest = fs.readFileSync(new URL("manifest.txt", GOLDEN_V3), "utf8");
    const goldenHeader = /# backup-header:\n([\s\S]*?)# backup-header.hmac:\n/.exec(manifest)![1]!;
    const goldenHmac = /# backup-header.hmac:\n(.*\n)/.exec(manifest)![1]!;
    expect(build.header).toBe(goldenHeader);
    const dir = path.join(tmp, "outer-default");
    fs.mkdirSync(dir);
    expect(spawnSync("tar", ["-i", "-xf", build.backup, "-C", dir]).status).toBe(0);
    expect(fs.readFileSync(path.join(dir, "backup-header"), "utf8")).toBe(goldenHeader);
    expect(fs.readFileSync(path.join(dir, "backup-header.hmac"), "utf8")).toBe(goldenHmac);
    expect(referenceHeaderV3({ compress: "none", encrypt: false })).toBe(
      "version=3\nhmac-algorithm=SHA512\ncrypto-algorithm=aes-256-cbc\nencrypted=False\ncompressed=False\n",
    );
    // every .hmac is the R2/R3 "(stdin)= <hex>" line; encrypted chunks are salted openssl streams
    for (const m of build.members) {
      const data = fs.readFileSync(path.join(dir, m.name));
      if (m.name.endsWith(".hmac")) expect(data.toString("latin1")).toMatch(HMAC_LINE);
      else if (m.name.endsWith(".000")) expect(data.subarray(0, 8).toString("latin1")).toBe("Salted__");
    }
  });

  it("lays members out in R3-W's order, each chunk directly followed by its .hmac, one archive each", () => {
    const names = build.members.map((m) => m.name);
    expect(tarList(build.backup)).toEqual(names);
    expect(names.slice(0, 4)).toEqual(["backup-header", "backup-header.hmac", "qubes.xml.000", "qubes.xml.000.hmac"]);
    const data = names.slice(2);
    for (let i = 0; i < data.length; i += 2) expect(data[i + 1]).toBe(`${data[i]}.hmac`);
    // non-template qubes by name (personal = vm6, work = vm5), then the template, then dom0's home
    const owners = data.filter((_, i) => i % 2 === 0).map((n) => n.split("/")[0]);
    expect([...new Set(owners)]).toEqual(["qubes.xml.000", "vm6", "vm5", "vm1", "dom0-home"]);
    expect(names).toContain("vm1/..000"); // the template's whole-directory archive `vm1/.`
    const outerSize = fs.statSync(build.backup).size;
    expect(outerSize % 10240).toBe(0);
  });

  it("cuts chunks of at most chunkSize, of varying size, numbered without gaps", () => {
    const img = build.files.find((f) => f.base === "vm5/private.img")!;
    expect(img.chunks).toBeGreaterThanOrEqual(3);
    const sizes = build.members.filter((m) => /^vm5\/private\.img\.\d{3}$/.test(m.name)).map((m) => m.size);
    expect(sizes).toHaveLength(img.chunks);
    for (const s of sizes) expect(s).toBeLessThanOrEqual(CHUNK);
    expect(new Set(sizes.slice(0, -1)).size).toBeGreaterThan(1);
  });

  it("stores a core2 qubes.xml whose backup paths and sizes agree with the members", () => {
    const parsed = parseQubesXmlCore2(Buffer.from(build.qubesXml));
    const included = parsed.domains.filter((d) => d.included);
    expect(included.map((d) => [d.name, d.klass, d.backupPath])).toEqual([
      ["dom0", "AdminVM", "dom0-home/user"],
      ["fedora-23", "TemplateVM", "vm1/"],
      ["personal", "StandaloneVM", "vm6/"],
      ["work", "AppVM", "vm5/"],
    ]);
    expect(parsed.domains.find((d) => d.name === "personal")!.properties["netvm"]).toBeNull();
    for (const d of included) {
      const prefix = d.klass === "AdminVM" ? `${d.backupPath}.` : d.backupPath!;
      const stored = build.members.filter((m) => m.name.startsWith(prefix)).reduce((n, m) => n + m.size, 0);
      expect(d.backupSize, d.name).toBe(stored);
    }
    // every archived qube file is `<backupPath><file>`: the chunk base the reader looks for
    const bases = build.files.map((f) => f.base);
    expect(bases).toContain("vm5/private.img");
    expect(bases).toContain("vm1/.");
  });
});

describe("buildReferenceV3: the emergency procedure restores every build byte-identically", () => {
  it("encrypted, gzip, several chunks, with a template", () => {
    expectRestoredIdentically(build, "default");
  });

  it("encrypted, uncompressed, full reads (fixed-size chunks)", () => {
    const b = build2("enc-none", { compress: "none", shortReads: false, chunkSize: 128 * 1024 });
    const sizes = b.members.filter((m) => /^vm5\/private\.img\.\d{3}$/.test(m.name)).map((m) => m.size);
    expect(sizes.length).toBeGreaterThan(2);
    expect(new Set(sizes.slice(0, -1)).size).toBe(1);
    expectRestoredIdentically(b, "enc-none");
  });

  it("unencrypted, gzip: R3's real paths appvms/<name>/, plain gzip chunks", () => {
    const b = build2("plain-gzip", { encrypt: false, template: true });
    expect(b.header).toContain("encrypted=False\ncompressed=True\ncompression-filter=gzip\n");
    const bases = b.files.map((f) => f.base);
    expect(bases).toEqual(
      expect.arrayContaining(["appvms/work/private.img", "appvms/personal/root.img", "vm-templates/fedora-23/."]),
    );
    const parsed = parseQubesXmlCore2(Buffer.from(b.qubesXml));
    expect(parsed.domains.find((d) => d.name === "work")!.backupPath).toBe("appvms/work/");
    expectRestoredIdentically(b, "plain-gzip");
  });

  it("unencrypted, uncompressed", () => {
    expectRestoredIdentically(build2("plain-none", { encrypt: false, compress: "none" }), "plain-none");
  });
});

describe("the emergency procedure refuses", () => {
  it("a wrong passphrase at the header", () => {
    expect(() => emergencyRestoreV3(build.backup, path.join(tmp, "wrong-pass"), "not the passphrase")).toThrow(
      /backup-header HMAC does not verify/,
    );
  });

  it("a changed ciphertext byte at that chunk's HMAC", () => {
    const dir = path.join(tmp, "outer-tamper");
    fs.mkdirSync(dir);
    expect(spawnSync("tar", ["-i", "-xf", build.backup, "-C", dir]).status).toBe(0);
    const chunk = fs.readFileSync(path.join(dir, "vm5/private.img.001"));
    const outer = fs.readFileSync(build.backup);
    const at = outer.indexOf(chunk.subarray(0, 256));
    expect(at).toBeGreaterThan(0);
    outer[at + 1000]! ^= 0x01;
    const tampered = path.join(tmp, "tampered-v3.bin");
    fs.writeFileSync(tampered, outer);
    expect(() => emergencyRestoreV3(tampered, path.join(tmp, "restore-tampered"), build.options.passphrase)).toThrow(
      /HMAC mismatch on vm5\/private\.img\.001/,
    );
  });
});
