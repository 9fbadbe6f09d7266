/**
 * Proves the reference builder right: its backups restore byte-identically with the emergency
 * procedure (stock tools only), have the golden fixture's structure (same members, order, sizes,
 * header text, qubes.xml), cover the corners (bzip2/xz/none, > 1000 chunks, empty final chunks),
 * and its tampered variants are caught by the emergency procedure exactly where spec §4.8 says.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { emergencyRestoreV4 } from "./emergency-v4.js";
import type { ReferenceBuild } from "./reference-v4.js";
import {
  FIXTURE_IMAGE_SHA256,
  FIXTURE_IMAGE_SIZE,
  buildReferenceV4,
  chunkName,
  cutChunks,
  referenceHeader,
} from "./reference-v4.js";
import { sha256File, snapshotTree } from "./sources.js";
import type { TamperedVariant } from "./tamper-v4.js";
import { handWrittenMember, hostileScryptContainer, listOuterMembers, makeTamperedVariants } from "./tamper-v4.js";

const LOGN10 = ["--logN", "10", "-r", "8", "-p", "1"];
const GOLDEN = new URL("../fixtures/golden/", import.meta.url);
const RECORD = 10240;
const SCRYPT_OVERHEAD = 128;

interface GoldenManifest {
  members: Array<{ name: string; size: number }>;
  header: string;
  outerSize: number;
}

function readGoldenManifest(): GoldenManifest {
  const text = fs.readFileSync(new URL("v4/manifest.txt", GOLDEN), "utf8");
  const members: GoldenManifest["members"] = [];
  for (const line of text.split("\n")) {
    const m = /^(\S+) \| (\d+) \| /.exec(line);
    if (m) members.push({ name: m[1]!, size: Number(m[2]) });
  }
  return {
    members,
    header: text.slice(text.indexOf("# backup-header:\n") + "# backup-header:\n".length),
    outerSize: Number(/^outer-size: (\d+)$/m.exec(text)![1]),
  };
}

/** Golden SHA256SUMS entries, by path relative to src/. */
function goldenSums(): Map<string, string> {
  const sums = new Map<string, string>();
  for (const line of fs.readFileSync(new URL("src/SHA256SUMS", GOLDEN), "utf8").trim().split("\n")) {
    const [sum, rel] = line.split(/ +/) as [string, string];
    sums.set(rel.replace(/^\.\//, ""), sum);
  }
  return sums;
}

const withoutBackupSize = (xml: string) => xml.replace(/(name="backup-size">)\d+</g, "$1N<");

let tmp: string;
let build: ReferenceBuild;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "qb-"));
  build = buildReferenceV4(path.join(tmp, "default"), { scryptArgs: LOGN10 });
});

afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Restore with the emergency procedure into a fresh dir; the caller removes it. */
function restore(file: string, name: string, passphrase = build.options.passphrase) {
  return emergencyRestoreV4(file, path.join(tmp, `restore-${name}`), passphrase);
}

function expectSourcesRestored(extracted: string, b: ReferenceBuild): void {
  const img = path.join(extracted, `vm${b.options.vmQid}/private.img`);
  expect(fs.statSync(img).size).toBe(FIXTURE_IMAGE_SIZE);
  expect(sha256File(img)).toBe(FIXTURE_IMAGE_SHA256);
  expect(fs.readFileSync(path.join(extracted, `vm${b.options.vmQid}/firewall.xml`))).toEqual(
    fs.readFileSync(b.src.firewallXml),
  );
  expect(fs.readFileSync(path.join(extracted, `vm${b.options.vmQid}/notes.txt`))).toEqual(
    fs.readFileSync(b.src.notesTxt),
  );
  expect(snapshotTree(path.join(extracted, `dom0-home/${b.options.dom0User}`))).toEqual(snapshotTree(b.src.home));
  expect(fs.readFileSync(path.join(extracted, "qubes.xml"), "utf8")).toBe(b.qubesXml);
}

describe("buildReferenceV4 (default knobs, logN 10)", () => {
  it("builds the golden fixture's sources", () => {
    const sums = goldenSums();
    const srcRoot = path.dirname(path.dirname(path.dirname(build.src.privateImg)));
    for (const rel of [
      "vm/work/private.img",
      "vm/work/firewall.xml",
      "vm/work/notes.txt",
      "home/user/.bashrc",
      "home/user/Documents/todo.txt",
      "home/user/.config/fixture/settings.ini",
    ]) {
      expect(sha256File(path.join(srcRoot, rel)), rel).toBe(sums.get(rel));
    }
    expect(fs.readlinkSync(path.join(build.src.home, "todo-link"))).toBe("Documents/todo.txt");
    expect(fs.lstatSync(path.join(build.src.home, "todo-link")).mtime.toISOString()).toBe("2024-01-02T03:04:05.000Z");
    // sparse: 64 MiB apparent, about 3 MiB allocated
    expect(fs.statSync(build.src.privateImg).blocks * 512).toBeLessThan(4 * 1024 * 1024);
  });

  it("restores byte-identically with the emergency procedure", () => {
    const r = restore(build.backupFile, "default");
    expectSourcesRestored(r.extracted, build);
    expect(r.files).toEqual([
      { base: "dom0-home/user", chunks: 1 },
      { base: "qubes.xml", chunks: 1 },
      { base: "vm5/firewall.xml", chunks: 1 },
      { base: "vm5/notes.txt", chunks: 1 },
      { base: "vm5/private.img", chunks: 4 },
    ]);
    expect(sha256File(path.join(r.extracted, "vm5/private.img"))).toBe(FIXTURE_IMAGE_SHA256);
    fs.rmSync(path.dirname(r.extracted), { recursive: true });
  });

  it("has the golden fixture's structure: members, order, sizes, header, qubes.xml, outer size", () => {
    const golden = readGoldenManifest();
    expect(build.members.map((m) => m.name)).toEqual(golden.members.map((m) => m.name));
    expect(listOuterMembers(build.backupFile).map((m) => m.name)).toEqual(golden.members.map((m) => m.name));
    // every member's size follows from its plaintext; qubes.xml's inner tar carries the build time as
    // mtime, so its gzip output may differ by a byte or two
    for (const [i, m] of build.members.entries()) {
      if (m.name === "qubes.xml.000.enc") expect(Math.abs(m.size - golden.members[i]!.size)).toBeLessThanOrEqual(4);
      else expect(m.size, m.name).toBe(golden.members[i]!.size);
    }
    expect(fs.statSync(build.backupFile).size).toBe(golden.outerSize);
    // header bytes: identical to the golden one (same backup id)
    const r = restore(build.backupFile, "structure");
    const header = fs.readFileSync(path.join(path.dirname(r.extracted), "backup-header"), "utf8");
    expect(header).toBe(golden.header);
    expect(header).toBe(referenceHeader(build.options));
    // qubes.xml: the golden document; backup-size = max(stored bytes, du) of the qube's sources
    const goldenXml = fs.readFileSync(new URL("v4/qubes.xml.plain", GOLDEN), "utf8");
    expect(withoutBackupSize(build.qubesXml)).toBe(withoutBackupSize(goldenXml));
    const vmStored = build.members.filter((m) => m.name.startsWith("vm5/")).reduce((n, m) => n + m.size, 0);
    const vmSize = Number(
      /"backup-path">vm5\/<\/feature>\s*<feature name="backup-size">(\d+)</.exec(build.qubesXml)![1],
    );
    expect(vmSize).toBeGreaterThanOrEqual(vmStored);
    fs.rmSync(path.dirname(r.extracted), { recursive: true });
  });

  it("frames every outer member as its own tar run on a 10240-byte record", () => {
    const listed = listOuterMembers(build.backupFile);
    const outer = fs.readFileSync(build.backupFile);
    for (const m of listed) {
      expect(m.offset % RECORD).toBe(0);
      // a pax 'x' header first, named <dir>/PaxHeaders/<base>
      expect(outer[m.offset + 156]).toBe("x".charCodeAt(0));
      const dir = m.name.includes("/") ? m.name.slice(0, m.name.lastIndexOf("/")) : ".";
      expect(outer.toString("latin1", m.offset, m.offset + 100).replace(/\0+$/, "")).toBe(
        `${dir}/PaxHeaders/${path.basename(m.name)}`,
      );
    }
    expect(listed.map((m) => m.offset).slice(0, 4)).toEqual([0, 10240, 20480, 30720]);
  });

  it("the copied golden v4 fixture restores to the same sources", () => {
    const r = restore(new URL("v4/qubes-backup-v4.bin", GOLDEN).pathname, "golden");
    expectSourcesRestored(r.extracted, {
      ...build,
      qubesXml: fs.readFileSync(new URL("v4/qubes.xml.plain", GOLDEN), "utf8"),
    });
    fs.rmSync(path.dirname(r.extracted), { recursive: true });
  });
});

describe("chunking helpers", () => {
  it("cuts like the script: at least one piece, an empty tail on exact multiples", () => {
    const lengths = (n: number, size: number, tail: boolean) =>
      cutChunks(Buffer.alloc(n), size, tail).map((p) => p.length);
    expect(lengths(0, 4, true)).toEqual([0]);
    expect(lengths(3, 4, true)).toEqual([3]);
    expect(lengths(8, 4, true)).toEqual([4, 4, 0]);
    expect(lengths(8, 4, false)).toEqual([4, 4]);
    expect(lengths(9, 4, true)).toEqual([4, 4, 1]);
    expect([chunkName("a", 0), chunkName("a", 999), chunkName("a", 1000)]).toEqual(["a.000", "a.999", "a.1000"]);
  });
});

describe.each(["none", "bzip2", "xz"] as const)("buildReferenceV4 with compress=%s", (compress) => {
  it("restores byte-identically; the header names the filter as REF-W does", () => {
    const b = buildReferenceV4(path.join(tmp, `c-${compress}`), {
      compress,
      scryptArgs: LOGN10,
      chunkSize: 512 * 1024,
    });
    const r = restore(b.backupFile, `c-${compress}`);
    expectSourcesRestored(r.extracted, b);
    expect(r.header).toMatchObject(
      compress === "none"
        ? { compressed: "False", "compression-filter": "gzip" }
        : { compressed: "True", "compression-filter": compress },
    );
    fs.rmSync(path.join(tmp, `c-${compress}`), { recursive: true });
    fs.rmSync(path.dirname(r.extracted), { recursive: true });
  });
});

describe("buildReferenceV4 with 2048-byte chunks, no compression", () => {
  // ~3100 tool runs to build and ~1600 to restore: about 45 s alone, more beside other test files
  it("writes > 1000 private.img chunks, .1000 names, empty final chunks, and restores", { timeout: 300_000 }, () => {
    const b = buildReferenceV4(path.join(tmp, "many"), {
      chunkSize: 2048,
      qubesXmlChunkSize: 1024 * 1024,
      compress: "none",
      scryptArgs: LOGN10,
    });
    const img = b.members.filter((m) => m.name.startsWith("vm5/private.img."));
    expect(img.length).toBeGreaterThan(1000);
    expect(img.map((m) => m.name)).toContain("vm5/private.img.1000.enc");
    expect(img.map((m) => m.name)).toEqual(img.map((_, i) => `${chunkName("vm5/private.img", i)}.enc`));
    // an uncompressed GNU tar stream is a multiple of 10240 = 5 · 2048: R4 adds an empty chunk
    expect(img.at(-1)!.size).toBe(SCRYPT_OVERHEAD);
    expect(img.slice(0, -1).every((m) => m.size === 2048 + SCRYPT_OVERHEAD)).toBe(true);
    const fw = b.members.filter((m) => m.name.startsWith("vm5/firewall.xml."));
    expect(fw.map((m) => m.size)).toEqual([...Array<number>(5).fill(2048 + SCRYPT_OVERHEAD), SCRYPT_OVERHEAD]);
    expect(b.members.filter((m) => m.name.startsWith("qubes.xml."))).toHaveLength(1);

    const r = restore(b.backupFile, "many");
    expectSourcesRestored(r.extracted, b);
    expect(r.files.find((f) => f.base === "vm5/private.img")!.chunks).toBe(img.length);
    fs.rmSync(path.join(tmp, "many"), { recursive: true });
    fs.rmSync(path.dirname(r.extracted), { recursive: true });
  });

  it("refuses a qubes.xml that would need more than one chunk", () => {
    // the gzip'ed qubes.xml stream is about 1 KiB: two 512-byte chunks
    expect(() => buildReferenceV4(path.join(tmp, "xml2"), { qubesXmlChunkSize: 512, scryptArgs: LOGN10 })).toThrow(
      /qubes\.xml needs 2 chunks, not 1/,
    );
    fs.rmSync(path.join(tmp, "xml2"), { recursive: true });
  });
});

describe("hand-made tamper pieces", () => {
  it("a hand-written member has a valid ustar checksum and frames like tar -cO", () => {
    const m = handWrittenMember("vm5/../escape.000.enc", Buffer.from("abc"));
    expect(m.length).toBe(RECORD);
    const h = Buffer.from(m.subarray(0, 512));
    const stored = parseInt(h.toString("latin1", 148, 154), 8);
    h.fill(" ", 148, 156);
    expect(h.reduce((n, b) => n + b, 0)).toBe(stored);
    expect(m.toString("latin1", 257, 265)).toBe("ustar\x0000");
  });

  it("the logN 40 container passes the header checksum and is refused by scrypt without a KDF", () => {
    const c = hostileScryptContainer(246);
    expect(c.subarray(0, 8)).toEqual(Buffer.from("scrypt\x00\x28", "latin1"));
    const file = path.join(tmp, "h40");
    fs.writeFileSync(file, c);
    const t0 = Date.now();
    expect(() => restoreHeaderOnly(file)).toThrow(/too much memory/);
    expect(Date.now() - t0).toBeLessThan(5000);
  });
});

/** scrypt dec of a lone container, through the same runner: a minimal outer file around it. */
function restoreHeaderOnly(hmacFile: string): void {
  const dir = path.join(tmp, "lone");
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "backup-header"), referenceHeader(build.options));
  fs.copyFileSync(hmacFile, path.join(dir, "backup-header.hmac"));
  const outer = Buffer.concat([
    handWrittenMember("backup-header", fs.readFileSync(path.join(dir, "backup-header"))),
    handWrittenMember("backup-header.hmac", fs.readFileSync(hmacFile)),
  ]);
  fs.writeFileSync(path.join(dir, "outer.bin"), outer);
  try {
    restore(path.join(dir, "outer.bin"), "lone");
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(path.join(tmp, "restore-lone"), { recursive: true, force: true });
  }
}

describe("makeTamperedVariants", () => {
  let variants: TamperedVariant[];
  beforeAll(() => {
    variants = makeTamperedVariants(build, path.join(tmp, "tampered"));
  });

  const SCRIPT_VARIANTS = [
    "header-modified",
    "header-filter-swapped",
    "header-hmac-modified",
    "chunk-bitflip",
    "chunk-header-bitflip",
    "chunks-swapped",
    "chunks-reordered",
    "file-substituted",
    "chunk-moved-vm",
    "last-chunk-dropped",
    "middle-chunk-dropped",
    "file-dropped",
    "chunk-duplicated",
    "foreign-member",
    "qubes-xml-missing",
    "chunk-truncated",
  ];
  const EXTRA_VARIANTS = [
    "member-moved-between-qubes",
    "chunk-from-other-backup",
    "duplicated-member",
    "header-logn-40",
    "dotdot-member",
    "wrong-passphrase",
  ];

  it("produces the 16 script variants, the extras, and a cut at every member boundary", () => {
    const names = variants.map((v) => v.name);
    const truncations = build.members.slice(1).map((_, k) => `truncated-at-${k + 1}`);
    expect(names.sort()).toEqual([...SCRIPT_VARIANTS, ...EXTRA_VARIANTS, ...truncations].sort());
    for (const v of variants) {
      expect(fs.statSync(v.file).size % RECORD, v.name).toBe(0);
      expect(v.description.length).toBeGreaterThan(20);
    }
    expect(variants.find((v) => v.name === "wrong-passphrase")!.passphrase).not.toBe(build.options.passphrase);
    expect(variants.find((v) => v.name === "file-dropped")!.expect).toBe("undetectable");
    expect(variants.find((v) => v.name === "chunk-moved-vm")!.expect).toBe("report");
    expect(fs.existsSync(path.join(tmp, "tampered", "README"))).toBe(true);
  });

  it("edits what it says (member lists of a few variants)", () => {
    const names = (n: string) => listOuterMembers(variants.find((v) => v.name === n)!.file).map((m) => m.name);
    const original = build.members.map((m) => m.name);
    expect(names("chunks-reordered")).toEqual(
      original.map((m) =>
        m === "vm5/private.img.001.enc"
          ? "vm5/private.img.002.enc"
          : m === "vm5/private.img.002.enc"
            ? "vm5/private.img.001.enc"
            : m,
      ),
    );
    expect(names("chunk-duplicated")).toEqual([...original, "vm5/private.img.000.enc"]);
    expect(names("duplicated-member").filter((m) => m === "vm5/firewall.xml.000.enc")).toHaveLength(2);
    expect(names("dotdot-member")).toContain("vm5/../escape.000.enc");
    expect(names("chunk-moved-vm")).toContain("vm6/firewall.xml.000.enc");
    expect(names("member-moved-between-qubes")).toContain("dom0-home/notes.txt.000.enc");
    expect(names("truncated-at-3")).toEqual(original.slice(0, 3));
    expect(names("wrong-passphrase")).toEqual(original);
  });

  /**
   * What the emergency procedure (this project's runner, which restores every directory) does with
   * each variant, per spec §4.8's table. "accepts" rows are the procedure's documented blind spots.
   */
  const EMERGENCY_ACCEPTS: Record<string, string> = {
    "chunks-reordered": "accepted and correct (it works by name)",
    "file-dropped": "whole file missing: not detected",
    "chunk-duplicated": "duplicate chunk member: — (tar overwrites it with the same bytes)",
    "duplicated-member": "duplicate chunk member: — (tar overwrites it with the same bytes)",
    "foreign-member": "non-.enc member in a selected qube dir: ignored",
    "qubes-xml-missing": "qubes.xml.000.enc missing: not applicable (the procedure never needs it)",
  };

  /** A cut after member k is a whole-file drop unless it falls inside a file (or before the .hmac). */
  function truncationAccepted(k: number): boolean {
    const names = build.members.map((m) => m.name);
    if (k < 2) return false; // backup-header.hmac missing: the header cannot be verified
    if (k < 3) return false; // no *.000.enc member at all: the runner refuses a backup without data
    const base = (n: string) => /^(.*)\.\d{3,}\.enc$/.exec(n)?.[1];
    const last = base(names[k - 1]!);
    return !build.members.slice(k).some((m) => base(m.name) === last && m.size > SCRYPT_OVERHEAD);
  }

  it("every variant meets the emergency procedure's documented verdict", () => {
    for (const v of variants) {
      const truncated = /^truncated-at-(\d+)$/.exec(v.name);
      const accepted = truncated ? truncationAccepted(Number(truncated[1])) : v.name in EMERGENCY_ACCEPTS;
      let error: unknown;
      let restored: ReturnType<typeof emergencyRestoreV4> | undefined;
      try {
        restored = restore(v.file, `t-${v.name}`, v.passphrase ?? build.options.passphrase);
      } catch (e) {
        error = e;
      }
      if (accepted) {
        expect(error, `${v.name} (${EMERGENCY_ACCEPTS[v.name] ?? "whole files cut off"})`).toBeUndefined();
        const img = path.join(restored!.extracted, "vm5/private.img");
        if (fs.existsSync(img)) expect(sha256File(img), v.name).toBe(FIXTURE_IMAGE_SHA256);
      } else {
        expect(error, `${v.name} must be rejected`).toBeInstanceOf(Error);
        expect(v.expect, v.name).not.toBe("undetectable");
      }
      if (v.name === "chunk-moved-vm") expect(String(error)).toContain("vm6/firewall.xml.000.enc");
      if (v.name === "header-logn-40") expect(String(error)).toContain("too much memory");
      if (v.name === "wrong-passphrase") expect(String(error)).toContain("Passphrase is incorrect");
      if (v.name === "chunks-reordered")
        expect(restored!.files.find((f) => f.base === "vm5/private.img")!.chunks).toBe(4);
      if (v.name === "file-dropped")
        expect(fs.existsSync(path.join(restored!.extracted, "vm5/firewall.xml"))).toBe(false);
      if (v.name === "dotdot-member") {
        expect(String(error)).toContain("Member name contains '..'");
        // GNU tar skips the member: no escape.000.enc next to vm5/, nor anywhere above it
        expect(fs.existsSync(path.join(tmp, `restore-t-${v.name}`, "escape.000.enc"))).toBe(false);
        expect(fs.readdirSync(tmp).filter((n) => n.includes("escape"))).toEqual([]);
      }
      fs.rmSync(path.join(tmp, `restore-t-${v.name}`), { recursive: true, force: true });
    }
    // every variant the procedure accepts is one the table lists (or a cut at a file boundary)
    expect(Object.keys(EMERGENCY_ACCEPTS).every((n) => variants.some((v) => v.name === n))).toBe(true);
  });
});
