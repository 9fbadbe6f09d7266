/**
 * Regenerates the seed corpus in fuzz/corpus/<target>/ (`npx tsx fuzz/make-seeds.ts`): copies of the
 * small test vectors in src/**\/testdata/, plus inputs built with our own writers or, for the tar
 * forms we never write (old GNU sparse, GNU long names, pax 0.0/0.1 sparse, v7), by hand here.
 * Deterministic: every byte is fixed, so running it again changes nothing. Prints whether each
 * seed parses, since a corpus of inputs that all fail early teaches the fuzzer little.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { serializeBackupHeaderV4 } from "../src/codec/backup-header/index.js";
import { buildQubesXml } from "../src/codec/qubes-xml/index.js";
import {
  BLOCK_SIZE,
  RECORD_SIZE,
  encodeOuterMember,
  encodePaxHeader,
  encodePaxRecords,
  encodeTreeEntryHeader,
  endOfArchive,
  headerChecksum,
  outerMemberHeader,
  paddingFor,
  volumeArchiveHeader,
  volumeArchiveTrailer,
} from "../src/codec/tar/index.js";
import type { TreeEntry, VolumeArchiveSpec } from "../src/codec/tar/index.js";
import { Rng, isExpectedError } from "./engine.js";
import { TARGETS } from "./targets.js";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const CORPUS = path.join(ROOT, "fuzz", "corpus");
const MTIME = 1_700_000_000;

function fixture(relative: string): Buffer {
  return fs.readFileSync(path.join(ROOT, relative));
}

/** Deterministic filler bytes (stand-ins for ciphertext and file content). */
function filler(length: number, seed: number): Buffer {
  const rng = new Rng(seed);
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i++) out[i] = rng.below(256);
  return out;
}

function padded(data: Buffer): Buffer {
  return Buffer.concat([data, Buffer.alloc(paddingFor(data.length))]);
}

// ---- hand-made tar headers, for the forms our writers do not produce ----

interface RawHeader {
  name: string;
  typeflag: string;
  size: number;
  magic: "posix" | "gnu" | "v7";
  linkname?: string;
  mode?: number;
  /** Writes extra fields (old GNU sparse entries) before the checksum is computed. */
  extra?: (block: Buffer) => void;
}

function octal(block: Buffer, at: number, width: number, value: number): void {
  block.write(`${value.toString(8).padStart(width - 1, "0")}\0`, at, "latin1");
}

function rawHeader(h: RawHeader): Buffer {
  const b = Buffer.alloc(BLOCK_SIZE);
  b.write(h.name, 0, "latin1");
  octal(b, 100, 8, h.mode ?? 0o644);
  octal(b, 108, 8, 1000);
  octal(b, 116, 8, 1000);
  octal(b, 124, 12, h.size);
  octal(b, 136, 12, MTIME);
  b.write(h.typeflag, 156, "latin1");
  b.write(h.linkname ?? "", 157, "latin1");
  if (h.magic !== "v7") {
    b.write(h.magic === "posix" ? "ustar\u000000" : "ustar  \u0000", 257, "latin1");
    b.write("user", 265, "latin1");
    b.write("user", 297, "latin1");
  }
  h.extra?.(b);
  b.write(`${headerChecksum(b).toString(8).padStart(6, "0")}\0 `, 148, "latin1");
  return b;
}

/** An old GNU sparse entry (offset, numbytes) at `at`. */
function sparseEntry(block: Buffer, at: number, offset: number, numbytes: number): void {
  octal(block, at, 12, offset);
  octal(block, at + 12, 12, numbytes);
}

// ---- seeds per target ----

function outerSeeds(): Record<string, Buffer> {
  const header = serializeBackupHeaderV4({
    compressed: true,
    compressionFilter: "gzip",
    backupId: "20240102T030405-4242",
  });
  const framed = Buffer.concat([
    encodeOuterMember("backup-header", header, MTIME),
    encodeOuterMember("backup-header.hmac", filler(246, 1), MTIME),
    encodeOuterMember("qubes.xml.000.enc", filler(700, 2), MTIME),
  ]);
  // The same kind of members without the 10240-byte record padding (zero blocks are skipped).
  const compact = (name: string, data: Buffer) =>
    Buffer.concat([outerMemberHeader(name, data.length, MTIME), padded(data)]);
  const longName = `vm5/${"d".repeat(60)}/${"f".repeat(90)}.000.enc`;
  const members = Buffer.concat([
    compact("backup-header", header),
    compact("backup-header.hmac", filler(246, 3)),
    compact("vm5/private.img.000.enc", filler(1500, 4)),
    compact(longName, filler(40, 5)),
    compact("dom0-home/user.000.enc", Buffer.alloc(0)),
    endOfArchive(),
  ]);
  const pax = encodePaxHeader("././@PaxHeader", [
    ["mtime", "1700000000.123456789"],
    ["atime", "1700000000.5"],
  ]);
  const withPax = Buffer.concat([
    pax,
    compact("backup-header", header),
    pax,
    compact("backup-header.hmac", filler(246, 6)),
    endOfArchive(),
  ]);
  if (framed.length % RECORD_SIZE !== 0) throw new Error("outer framing is off");
  return {
    "golden-v4-first-member.tar": fixture("src/codec/tar/testdata/golden-v4-first-member.tar"),
    "v4-three-members-framed.tar": framed,
    "compact-members.tar": members,
    "pax-then-member.tar": withPax,
  };
}

function headerSeeds(): Record<string, Buffer> {
  const verdicts = JSON.parse(
    fixture("src/codec/backup-header/testdata/reference-reader-verdicts.json").toString("utf8"),
  ) as { cases: { name: string; header: string }[] };
  const seeds: Record<string, Buffer> = {
    "golden-v4.backup-header": fixture("src/codec/backup-header/testdata/golden-v4.backup-header"),
  };
  verdicts.cases.forEach((c, i) => {
    const slug = c.name
      .replace(/[^A-Za-z0-9]+/g, "-")
      .replace(/^-|-$/g, "")
      .slice(0, 40);
    seeds[`verdict-${String(i).padStart(2, "0")}-${slug}`] = Buffer.from(c.header, "latin1");
  });
  return seeds;
}

function innerSeeds(): Record<string, Buffer> {
  const entry = (e: Partial<TreeEntry> & Pick<TreeEntry, "path" | "type">): TreeEntry => ({
    size: 0,
    mode: 0o644,
    mtime: MTIME,
    uid: 1000,
    gid: 1000,
    uname: "user",
    gname: "user",
    ...e,
  });
  const text = filler(700, 10);
  const tree = Buffer.concat([
    encodeTreeEntryHeader(entry({ path: "user", type: "directory", mode: 0o755 })),
    encodeTreeEntryHeader(entry({ path: "user/notes.txt", type: "file", size: text.length })),
    padded(text),
    encodeTreeEntryHeader(entry({ path: "user/link", type: "symlink", linkname: "notes.txt" })),
    encodeTreeEntryHeader(entry({ path: `user/${"long/".repeat(30)}name.txt`, type: "file", size: 3 })),
    padded(Buffer.from("abc")),
    encodeTreeEntryHeader(entry({ path: "user/näme-é.txt", type: "file", uname: "ü".repeat(40) })),
    paxMember("x", [
      ["path", "user/pax-named"],
      ["mtime", "-1700000000.5"],
      ["uid", "4294967296"],
      ["gid", "0"],
      ["gname", "wheel"],
      ["size", "2"],
    ]),
    rawHeader({ name: "user/ustar-name", typeflag: "0", size: 0, magic: "posix" }),
    padded(Buffer.from("hi")),
    paxMember("x", [["linkpath", "user/notes.txt"]]),
    rawHeader({ name: "user/hardlink", typeflag: "1", size: 0, magic: "posix" }),
    endOfArchive(),
  ]);

  const volume: VolumeArchiveSpec = {
    name: "vm5/private.img",
    realSize: 65536,
    regions: [
      { offset: 0, length: 600 },
      { offset: 8192, length: 100 },
      { offset: 65536, length: 0 },
    ],
    mode: 0o644,
    mtime: MTIME,
  };
  const sparse10 = Buffer.concat([volumeArchiveHeader(volume), filler(700, 11), volumeArchiveTrailer(volume)]);

  // Old GNU 'S': two regions in the header, two more in one extension block.
  const oldGnu = Buffer.concat([
    rawHeader({
      name: "sparse.img",
      typeflag: "S",
      size: 40,
      magic: "gnu",
      extra: (b) => {
        sparseEntry(b, 386, 0, 10);
        sparseEntry(b, 410, 4096, 10);
        b[482] = 1;
        octal(b, 483, 12, 20000);
      },
    }),
    (() => {
      const ext = Buffer.alloc(BLOCK_SIZE);
      sparseEntry(ext, 0, 8192, 10);
      sparseEntry(ext, 24, 19990, 10);
      return ext;
    })(),
    padded(filler(40, 12)),
    endOfArchive(),
  ]);

  const longName = Buffer.from(`${"dir/".repeat(40)}file.txt\0`, "latin1");
  const longLink = Buffer.from(`${"target/".repeat(20)}x\0`, "latin1");
  const gnuLong = Buffer.concat([
    rawHeader({ name: "././@LongLink", typeflag: "L", size: longName.length, magic: "gnu" }),
    padded(longName),
    rawHeader({ name: "dir/dir/file.txt", typeflag: "0", size: 5, magic: "gnu" }),
    padded(Buffer.from("hello")),
    rawHeader({ name: "././@LongLink", typeflag: "K", size: longLink.length, magic: "gnu" }),
    padded(longLink),
    rawHeader({ name: "link", typeflag: "2", size: 0, magic: "gnu", linkname: "target/x" }),
    rawHeader({ name: "hard", typeflag: "1", size: 0, magic: "gnu", linkname: "dir/dir/file.txt" }),
    endOfArchive(),
  ]);

  const paxSparse = (records: [string, string][], seed: number) =>
    Buffer.concat([
      paxMember("x", records),
      rawHeader({ name: "GNUSparseFile.0/f", typeflag: "0", size: 150, magic: "posix" }),
      padded(filler(150, seed)),
      endOfArchive(),
    ]);
  const map01 = paxSparse(
    [
      ["GNU.sparse.size", "8192"],
      ["GNU.sparse.numblocks", "2"],
      ["GNU.sparse.name", "vm1/volatile.img"],
      ["GNU.sparse.map", "0,100,4096,50"],
    ],
    13,
  );
  const map00 = paxSparse(
    [
      ["GNU.sparse.size", "8192"],
      ["GNU.sparse.numblocks", "2"],
      ["GNU.sparse.offset", "0"],
      ["GNU.sparse.numbytes", "100"],
      ["GNU.sparse.offset", "4096"],
      ["GNU.sparse.numbytes", "50"],
    ],
    14,
  );
  const v7 = Buffer.concat([
    paxMember("g", [["comment", "made by make-seeds"]]),
    rawHeader({ name: "olddir/", typeflag: "\0", size: 0, magic: "v7", mode: 0o755 }),
    rawHeader({ name: "olddir/file", typeflag: "\0", size: 4, magic: "v7" }),
    padded(Buffer.from("data")),
    endOfArchive(),
  ]);

  return {
    "tree.tar": tree,
    "sparse-1.0-volume.tar": sparse10,
    "old-gnu-sparse.tar": oldGnu,
    "gnu-long-names-and-links.tar": gnuLong,
    "pax-sparse-0.1.tar": map01,
    "pax-sparse-0.0.tar": map00,
    "global-pax-and-v7.tar": v7,
  };
}

/** A pax extended header member ('x' local or 'g' global) with its records. */
function paxMember(typeflag: "x" | "g", records: [string, string][]): Buffer {
  const data = encodePaxRecords(records);
  return Buffer.concat([
    rawHeader({ name: "PaxHeaders/f", typeflag, size: data.length, magic: "posix" }),
    padded(data),
  ]);
}

function core3Seeds(): Record<string, Buffer> {
  const built = buildQubesXml({
    defaultTemplate: "debian-12-xfce",
    dom0: { user: "user", backupSize: 4096 },
    qubes: [
      {
        name: "debian-12-xfce",
        qid: 1,
        klass: "TemplateVM",
        label: "black",
        backupPath: "vm1/",
        backupSize: 10240,
        volumes: [{ name: "root", size: 1 << 20 }],
      },
      {
        name: "work",
        qid: 5,
        klass: "AppVM",
        label: "label-6",
        template: "debian-12-xfce",
        netvm: null,
        backupPath: "vm5/",
        backupSize: 20480,
        volumes: [{ name: "private", size: 1 << 20 }],
        properties: { memory: "400", kernelopts: "" },
        features: { "service.cups": "1", "gui-allow-fullscreen": "" },
        tags: ["created-by-dom0", "audiovm-dom0"],
      },
    ],
  }).toString("utf8");
  const devices = `<devices class="usb"><device backend-domain="sys-usb" id="1-1" required="no"><option name="k">v</option></device></devices>`;
  return {
    "golden-v4-qubes.xml": fixture("src/codec/qubes-xml/testdata/golden-v4-qubes.xml"),
    "minimal-spec-6.3.xml": fixture("src/codec/qubes-xml/testdata/minimal-spec-6.3.xml"),
    "built-with-devices.xml": Buffer.from(built.replace("</tags>", `</tags>${devices}`), "utf8"),
  };
}

function core2Seeds(): Record<string, Buffer> {
  const minimal = [
    `<QubesVmCollection default_template="1" default_netvm="2" clockvm="2" updatevm="2">`,
    `<QubesTemplateVm name="fedora-23" qid="1" label="black" template_qid="none"/>`,
    `<QubesNetVm name="sys-net" qid="2" label="red" template_qid="1" pcidevs="['00:19.0']"/>`,
    `<QubesProxyVm name="sys-firewall" qid="3" label="green" template_qid="1" netvm_qid="2"/>`,
    `<QubesHVm name="win" qid="6" label="orange" template_qid="none" backup_content="True" backup_path="appvms/win" backup_size="1024"/>`,
    `<QubesAppVm name="work" qid="5" label="blue" template_qid="1" netvm_qid="3" services="{'cups': True, 'meminfo-writer': False}" backup_content="True" backup_path="vm5" backup_size="4096"/>`,
    `</QubesVmCollection>`,
  ].join("\n");
  return {
    "golden-v3-qubes.xml": fixture("src/codec/qubes-xml/testdata/golden-v3-qubes.xml"),
    "r2-style-without-dom0.xml": Buffer.from(minimal, "utf8"),
  };
}

function dgstSeeds(): Record<string, Buffer> {
  const hex = filler(64, 20).toString("hex");
  return {
    "r3-stdin": Buffer.from(`(stdin)= ${hex}\n`),
    "openssl3-sha2-512": Buffer.from(`SHA2-512(stdin)= ${hex}\n`),
    "hmac-sha512": Buffer.from(`HMAC-SHA512(stdin)= ${hex.toUpperCase()}\n`),
    "hmac-with-file-name": Buffer.from(`HMAC-SHA2-512(vm5/private.img.000)= ${hex}\r\n`),
  };
}

const SEEDS: Record<string, () => Record<string, Buffer>> = {
  "outer-tar": outerSeeds,
  "backup-header": headerSeeds,
  "inner-tar": innerSeeds,
  "qubes-xml-core3": core3Seeds,
  "qubes-xml-core2": core2Seeds,
  "openssl-dgst": dgstSeeds,
};

async function main(): Promise<void> {
  for (const [target, make] of Object.entries(SEEDS)) {
    const spec = TARGETS[target];
    if (spec === undefined) throw new Error(`no target ${target}`);
    const dir = path.join(CORPUS, target);
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true });
    let total = 0;
    for (const [name, bytes] of Object.entries(make())) {
      fs.writeFileSync(path.join(dir, name), bytes);
      total += bytes.length;
      let verdict = "parses";
      try {
        await spec.run(bytes);
      } catch (err) {
        verdict = isExpectedError(err) ? `refused: ${(err as Error).message}` : `CRASHES: ${String(err)}`;
      }
      console.log(`${target}/${name} (${bytes.length} bytes): ${verdict}`);
    }
    console.log(`${target}: ${total} bytes in total`);
  }
}

await main();
