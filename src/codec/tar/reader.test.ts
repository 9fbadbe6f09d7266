import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Buffer } from "node:buffer";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isQbackupError } from "../../errors.js";
import { BLOCK_SIZE, encodeBase256, encodeHeader, headerChecksum } from "./header.js";
import { encodePaxHeader } from "./pax.js";
import { readInnerTar } from "./reader.js";
import type { InnerEntry, InnerTarLimits } from "./reader.js";
import { HoleScanner } from "./sparse.js";
import { encodeTreeEntryHeader, endOfArchive, entryPadding } from "./tree.js";
import type { TreeEntry } from "./tree.js";
import { volumeArchiveHeader, volumeArchiveTrailer } from "./volume.js";
import type { VolumeArchiveSpec } from "./volume.js";

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
/** Files up to this size are rebuilt in memory and compared whole; bigger ones piece by piece. */
const REBUILD_LIMIT = 16 * MiB;
const SLICES = [1, 511, 513, 4096, Infinity];
const TIMEOUT_MS = 5000;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "qb-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const root = path.join(tmp, "root");

function tar(args: string[]): void {
  const r = spawnSync("tar", args, { env: { ...process.env, LC_ALL: "C", TZ: "UTC" }, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`tar ${args.join(" ")} failed: ${r.stderr}`);
}

let archiveCounter = 0;
function makeArchive(args: string[], members: string[]): Buffer {
  const out = path.join(tmp, `a${archiveCounter++}.tar`);
  tar(["-C", root, ...args, "-cf", out, ...members]);
  return fs.readFileSync(out);
}

/** Random bytes without any zero byte (so no block of them is ever a hole). */
function dataBytes(n: number): Buffer {
  const b = randomBytes(n);
  for (let i = 0; i < n; i++) if (b[i] === 0) b[i] = 0x5a;
  return b;
}

/** A file of `size` bytes (holes everywhere) with data written at the given offsets. */
function sparseFile(rel: string, size: number, writes: ReadonlyArray<readonly [offset: number, length: number]>): void {
  const fd = fs.openSync(path.join(root, rel), "w");
  try {
    fs.ftruncateSync(fd, size);
    for (const [offset, length] of writes) fs.writeSync(fd, dataBytes(length), 0, length, offset);
  } finally {
    fs.closeSync(fd);
  }
  WRITES.set(rel, writes);
}

const WRITES = new Map<string, ReadonlyArray<readonly [number, number]>>();
const LONG_PATH = `long/${"a".repeat(70)}/${"b".repeat(74)}`; // 150 chars, fits ustar prefix + name
const LONG_BASE = `longbase/${"c".repeat(120)}`; // needs pax path / GNU 'L'
const LONG_TARGET = "t".repeat(120); // needs pax linkpath / GNU 'K'
const UTF8_NAME = "dir/Ünïcødé-日本語.txt";
const BIG_SIZE = 9 * GiB + 12345;

const BASE_MEMBERS = ["dir", "empty", "sparse.img", "holes-only", "link", "hard"];
const SPARSE_FILES = ["sparse.img", "holes-only", "big.img", "many30.img", "many100.img"];

interface Format {
  name: string;
  args: string[];
  members: string[];
  sparse: boolean;
  owners: boolean;
}

const FORMATS: Format[] = [
  { name: "v7", args: ["--format=v7"], members: BASE_MEMBERS, sparse: false, owners: false },
  { name: "ustar", args: ["--format=ustar"], members: [...BASE_MEMBERS, "long"], sparse: false, owners: true },
  ...["gnu", "posix"].map((f) => ({
    name: f,
    args: [`--format=${f}`],
    members: [...BASE_MEMBERS, "long", "longbase", "longlink"],
    sparse: false,
    owners: true,
  })),
  ...[["--format=gnu"], ...["0.0", "0.1", "1.0"].map((v) => ["--format=posix", `--sparse-version=${v}`])].map(
    (args) => ({
      name: `${args.join(" ")} --sparse`,
      args: [...args, "--sparse"],
      members: [...BASE_MEMBERS, "long", "longbase", "longlink", "big.img", "many30.img", "many100.img"],
      sparse: true,
      owners: true,
    }),
  ),
];

beforeAll(() => {
  fs.mkdirSync(path.join(root, "dir/sub"), { recursive: true });
  fs.writeFileSync(path.join(root, "dir/small.txt"), "hello, tar\n");
  fs.chmodSync(path.join(root, "dir/small.txt"), 0o640);
  fs.writeFileSync(path.join(root, "dir/medium.bin"), dataBytes(70_001));
  fs.writeFileSync(path.join(root, "dir/sub/x.sh"), "#!/bin/sh\n");
  fs.chmodSync(path.join(root, "dir/sub/x.sh"), 0o755);
  fs.writeFileSync(path.join(root, UTF8_NAME), "utf-8 name\n");
  fs.writeFileSync(path.join(root, "empty"), "");
  fs.chmodSync(path.join(root, "empty"), 0o600);
  sparseFile("sparse.img", 300_000, [
    [0, 100],
    [100_000, 5000],
    [250_000, 3],
  ]);
  sparseFile("holes-only", 100_000, []);
  sparseFile("big.img", BIG_SIZE, [
    [4096, 1000],
    [5 * GiB, 3000],
    [BIG_SIZE - 10, 10],
  ]);
  sparseFile(
    "many30.img",
    30 * 64 * KiB,
    Array.from({ length: 30 }, (_, i) => [i * 64 * KiB + 8192, 100] as const),
  );
  sparseFile(
    "many100.img",
    100 * 64 * KiB + 7,
    Array.from({ length: 100 }, (_, i) => [i * 64 * KiB + 8192, 33] as const),
  );
  fs.symlinkSync("dir/small.txt", path.join(root, "link"));
  fs.linkSync(path.join(root, "dir/medium.bin"), path.join(root, "hard"));
  fs.mkdirSync(path.join(root, path.dirname(LONG_PATH)), { recursive: true });
  fs.writeFileSync(path.join(root, LONG_PATH), "long path\n");
  fs.mkdirSync(path.join(root, "longbase"));
  fs.writeFileSync(path.join(root, LONG_BASE), "long base name\n");
  fs.symlinkSync(LONG_TARGET, path.join(root, "longlink"));
  fs.chmodSync(path.join(root, "dir"), 0o750);
  // Fractional mtimes (pax keeps them, the reader floors); children before parents.
  let t = 1_600_000_000.75;
  const touch = (rel: string): void => {
    t += 1000;
    fs.lutimesSync(path.join(root, rel), t, t);
  };
  for (const rel of walk("")
    .map((e) => e.rel)
    .reverse()) {
    touch(rel);
  }
});

/** Every path under `root/rel` (rel itself included when not ""), parents first. */
function walk(rel: string): Array<{ rel: string; st: fs.BigIntStats }> {
  const out: Array<{ rel: string; st: fs.BigIntStats }> = [];
  const visit = (r: string): void => {
    const st = fs.lstatSync(path.join(root, r), { bigint: true });
    if (r !== "") out.push({ rel: r, st });
    if (st.isDirectory())
      for (const name of fs.readdirSync(path.join(root, r)).sort()) visit(r === "" ? name : `${r}/${name}`);
  };
  visit(rel);
  return out;
}

async function* slices(buf: Buffer, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}

interface ReadBack {
  entry: InnerEntry;
  /** whole content when entry.size ≤ REBUILD_LIMIT */
  content?: Buffer;
  /** pieces (copied, coalesced) when bigger */
  pieces: Array<{ offset: number; bytes: Buffer }>;
}

/** Reads everything; checks piece order (increasing, non-overlapping, inside the file) on the way. */
async function readAll(
  source: AsyncIterable<Uint8Array>,
  limits?: Partial<InnerTarLimits>,
): Promise<Map<string, ReadBack>> {
  const out = new Map<string, ReadBack>();
  for await (const { entry, data } of readInnerTar(source, limits)) {
    const rb: ReadBack = { entry, pieces: [] };
    if (entry.size <= REBUILD_LIMIT) rb.content = Buffer.alloc(entry.size);
    let end = 0;
    for await (const p of data) {
      // plain checks: expect() per piece is far too slow for 1-byte slices
      if (p.bytes.length === 0 || p.offset < end || p.offset + p.bytes.length > entry.size) {
        throw new Error(`bad piece ${p.offset}+${p.bytes.length} after ${end} in ${entry.path} (${entry.size})`);
      }
      end = p.offset + p.bytes.length;
      if (rb.content !== undefined) {
        p.bytes.copy(rb.content, p.offset);
        continue;
      }
      const last = rb.pieces[rb.pieces.length - 1];
      if (last !== undefined && last.offset + last.bytes.length === p.offset) {
        last.bytes = Buffer.concat([last.bytes, p.bytes]);
      } else {
        rb.pieces.push({ offset: p.offset, bytes: Buffer.from(p.bytes) });
      }
    }
    expect(out.has(entry.path)).toBe(false);
    out.set(entry.path, rb);
  }
  return out;
}

function withTimeout<T>(p: Promise<T>, ms = TIMEOUT_MS): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}

/** The error readAll throws (ERR_TAR_MALFORMED, or ERR_MISSING when the input ends early; within the timeout). */
async function rejection(input: Buffer | AsyncIterable<Uint8Array>, limits?: Partial<InnerTarLimits>): Promise<Error> {
  const source = Buffer.isBuffer(input) ? slices(input, 4096) : input;
  try {
    await withTimeout(readAll(source, limits));
  } catch (err) {
    const truncated = /archive truncated/.test(String(err));
    expect(isQbackupError(err, truncated ? "ERR_MISSING" : "ERR_TAR_MALFORMED"), String(err)).toBe(true);
    expect((err as Error).message).not.toContain("\n");
    return err as Error;
  }
  throw new Error("archive was accepted");
}

function sha256(b: Buffer): string {
  return createHash("sha256").update(b).digest("hex");
}

function expectedUname(): string | undefined {
  try {
    return os.userInfo().username;
  } catch {
    return undefined;
  }
}

/** Compares what was read with the files under root (lstat, content, link targets). */
function checkAgainstDisk(read: Map<string, ReadBack>, fmt: Format): void {
  const expected = fmt.members.flatMap((m) => walk(m));
  expect([...read.keys()].sort()).toEqual(expected.map((e) => e.rel).sort());
  for (const { rel, st } of expected) {
    const rb = read.get(rel);
    if (rb === undefined) throw new Error(`missing ${rel}`);
    const e = rb.entry;
    const what = `${fmt.name}: ${rel}`;
    expect(e.mode, what).toBe(Number(st.mode) & 0o7777);
    expect(e.mtime, what).toBe(Number(st.mtimeNs / 1_000_000_000n));
    expect(e.uid, what).toBe(Number(st.uid));
    expect(e.gid, what).toBe(Number(st.gid));
    if (fmt.owners) {
      const uname = expectedUname();
      if (uname !== undefined) expect(e.uname, what).toBe(uname);
    } else {
      expect(e.uname, what).toBe("");
    }
    const abs = path.join(root, rel);
    if (st.isSymbolicLink()) {
      expect(e.type, what).toBe("symlink");
      expect(e.linkname, what).toBe(fs.readlinkSync(abs));
      expect(e.size).toBe(0);
    } else if (st.isDirectory()) {
      expect(e.type, what).toBe("directory");
      expect(e.size).toBe(0);
    } else if (e.type === "hardlink") {
      expect(e.linkname, what).toBeDefined();
      expect(e.linkname).not.toBe(rel);
      expect(fs.statSync(path.join(root, e.linkname ?? "")).ino, what).toBe(fs.statSync(abs).ino);
      expect(read.get(e.linkname ?? "")?.entry.type, what).toBe("file");
    } else {
      expect(e.type, what).toBe("file");
      expect(e.size, what).toBe(Number(st.size));
      expect(e.sparse, what).toBe(fmt.sparse && SPARSE_FILES.includes(rel));
      if (rb.content !== undefined) {
        expect(sha256(rb.content), what).toBe(sha256(fs.readFileSync(abs)));
      } else {
        checkBigPieces(abs, rb, WRITES.get(rel) ?? []);
      }
    }
  }
}

/** A file too big to rebuild: every piece equals the file at its offset, every written range is covered. */
function checkBigPieces(abs: string, rb: ReadBack, writes: ReadonlyArray<readonly [number, number]>): void {
  const fd = fs.openSync(abs, "r");
  try {
    for (const p of rb.pieces) {
      const orig = Buffer.alloc(p.bytes.length);
      fs.readSync(fd, orig, 0, orig.length, p.offset);
      expect(p.bytes.equals(orig)).toBe(true);
    }
  } finally {
    fs.closeSync(fd);
  }
  for (const [offset, length] of writes) {
    const covered = rb.pieces.some((p) => p.offset <= offset && p.offset + p.bytes.length >= offset + length);
    expect(covered, `written range ${offset}+${length}`).toBe(true);
  }
}

describe("readInnerTar: GNU tar 1.34 archives", () => {
  for (const fmt of FORMATS) {
    it(`reads tar ${fmt.name} in 1, 511, 513, 4096 and whole-archive slices`, async () => {
      const archive = makeArchive(fmt.args, fmt.members);
      for (const size of SLICES) {
        const read = await readAll(slices(archive, size === Infinity ? archive.length : size));
        checkAgainstDisk(read, fmt);
      }
    });
  }

  it("reads old GNU sparse members with extension blocks (30 and 100 regions)", async () => {
    const archive = makeArchive(["--format=gnu", "--sparse"], ["many30.img", "many100.img"]);
    // header typeflag 'S', isextended set: the map continues in extension blocks
    expect(String.fromCharCode(archive[156] ?? 0)).toBe("S");
    expect(archive[482]).toBe(1);
    // whole archive in one chunk: one piece per region, so the piece count is the region count
    const pieceCounts = new Map<string, number>();
    for await (const { entry, data } of readInnerTar(slices(archive, archive.length))) {
      let n = 0;
      for await (const _piece of data) n++;
      pieceCounts.set(entry.path, n);
    }
    // GNU tar stores each 100- or 33-byte write as one 4096-byte region (plus a final empty one)
    expect(Object.fromEntries(pieceCounts)).toEqual({ "many30.img": 30, "many100.img": 100 });
    const read = await readAll(slices(archive, 4096));
    for (const name of ["many30.img", "many100.img"]) {
      expect(read.get(name)?.entry.sparse).toBe(true);
      expect(read.get(name)?.content?.equals(fs.readFileSync(path.join(root, name)))).toBe(true);
    }
  });

  it("reads GNU base-256 uid and negative mtime, and the pax equivalents", async () => {
    const owner = ["--owner=big:4000000", "--group=grp:3000000", "--mtime=@-1000"];
    for (const args of [
      ["--format=gnu", "--sparse"],
      ["--format=posix", "--sparse"],
    ]) {
      const archive = makeArchive([...args, ...owner], ["dir/small.txt", "big.img"]);
      const read = await readAll(slices(archive, 513));
      for (const rb of read.values()) {
        expect(rb.entry).toMatchObject({ uid: 4000000, gid: 3000000, uname: "big", gname: "grp", mtime: -1000 });
      }
      expect(read.get("big.img")?.entry.size).toBe(BIG_SIZE);
    }
  });

  it("accepts a stream ending right after the two-block end marker (no 10240 padding)", async () => {
    const archive = makeArchive(["--format=posix"], ["dir/small.txt"]);
    const trimmed = archive.subarray(0, 4 * BLOCK_SIZE + 2 * BLOCK_SIZE); // pax header + records, header, data
    const read = await readAll(slices(trimmed, 100));
    expect([...read.keys()]).toEqual(["dir/small.txt"]);
  });
});

describe("readInnerTar: pull semantics", () => {
  it("skips data that is not read, and refuses to read it after moving on", async () => {
    const archive = makeArchive(["--format=gnu", "--sparse"], ["dir", "sparse.img"]);
    const seen: string[] = [];
    let stale: AsyncIterator<unknown> | undefined;
    for await (const { entry, data } of readInnerTar(slices(archive, 777))) {
      seen.push(entry.path);
      if (entry.path === "dir/medium.bin") {
        stale = data[Symbol.asyncIterator]();
        await stale.next(); // one piece, then move on
      }
      if (entry.path === "sparse.img") {
        const it2 = data[Symbol.asyncIterator]();
        const first = await it2.next();
        expect(first.done).toBe(false);
        expect(() => data[Symbol.asyncIterator]()).toThrow(expect.objectContaining({ code: "ERR_INTERNAL" }));
      }
    }
    expect([...seen].sort()).toEqual([...walk("dir").map((e) => e.rel), "sparse.img"].sort());
    await expect(stale?.next()).rejects.toMatchObject({ code: "ERR_INTERNAL" });
  });

  it("closes the source when the consumer stops early", async () => {
    const archive = makeArchive(["--format=posix"], ["dir"]);
    let closed = false;
    async function* source(): AsyncGenerator<Uint8Array> {
      try {
        yield* slices(archive, 512);
      } finally {
        closed = true;
      }
    }
    for await (const item of readInnerTar(source())) {
      expect(item.entry.path).toBe("dir");
      break;
    }
    expect(closed).toBe(true);
  });
});

/** Our volume archive writer's output for `img`, holes found by HoleScanner. */
function volumeArchive(img: Buffer, name: string, granularity = 4096): { archive: Buffer; spec: VolumeArchiveSpec } {
  const scanner = new HoleScanner(granularity);
  scanner.push(img);
  const regions = scanner.finish();
  const spec: VolumeArchiveSpec = { name, realSize: img.length, regions, mode: 0o644, mtime: 1_700_000_000 };
  const parts = [volumeArchiveHeader(spec)];
  for (const r of regions) parts.push(img.subarray(r.offset, r.offset + r.length));
  parts.push(volumeArchiveTrailer(spec));
  return { archive: Buffer.concat(parts), spec };
}

describe("readInnerTar: our writers' output", () => {
  it("reads a volume archive (pax + GNU sparse 1.0) back byte for byte", async () => {
    const img = Buffer.alloc(3 * MiB + 512);
    dataBytes(5000).copy(img, 0);
    dataBytes(70_000).copy(img, MiB + 4096);
    dataBytes(512).copy(img, img.length - 512);
    const { archive } = volumeArchive(img, "vm5/private.img");
    for (const size of SLICES) {
      const read = await readAll(slices(archive, size === Infinity ? archive.length : size));
      expect([...read.keys()]).toEqual(["vm5/private.img"]);
      const rb = read.get("vm5/private.img");
      expect(rb?.entry).toEqual({
        path: "vm5/private.img",
        type: "file",
        size: img.length,
        mode: 0o644,
        mtime: 1_700_000_000,
        uid: 0,
        gid: 0,
        uname: "",
        gname: "",
        sparse: true,
      });
      expect(rb?.content?.equals(img)).toBe(true);
    }
  });

  it("reads a volume that ends in a hole and one that is all holes", async () => {
    for (const img of [Buffer.concat([dataBytes(8192), Buffer.alloc(MiB)]), Buffer.alloc(MiB)]) {
      const { archive } = volumeArchive(img, "vm5/root.img", 512);
      const read = await readAll(slices(archive, 511));
      expect(read.get("vm5/root.img")?.content?.equals(img)).toBe(true);
    }
  });

  it("accepts REF-W tarwriter's unpadded last region followed by 1024 zeros", async () => {
    const img = Buffer.concat([Buffer.alloc(4096), dataBytes(1000)]);
    const { archive, spec } = volumeArchive(img, "vm5/private.img", 512);
    const dataEnd = archive.length - volumeArchiveTrailer(spec).length;
    const tarwriterForm = Buffer.concat([archive.subarray(0, dataEnd), Buffer.alloc(2 * BLOCK_SIZE)]);
    const read = await readAll(slices(tarwriterForm, 513));
    expect(read.get("vm5/private.img")?.content?.equals(img)).toBe(true);
    // one byte less is a truncated end marker
    await rejection(tarwriterForm.subarray(0, tarwriterForm.length - 1));
  });

  it("reads directory-tree entries written by encodeTreeEntryHeader", async () => {
    const entries: TreeEntry[] = [
      {
        path: "dom0-home/user",
        type: "directory",
        size: 0,
        mode: 0o700,
        mtime: 1_700_000_001,
        uid: 1000,
        gid: 1000,
        uname: "user",
        gname: "user",
      },
      {
        path: "dom0-home/user/a.txt",
        type: "file",
        size: 1234,
        mode: 0o644,
        mtime: 1_700_000_002,
        uid: 1000,
        gid: 1000,
        uname: "user",
        gname: "user",
      },
      {
        path: `dom0-home/user/${"ü".repeat(80)}/${"n".repeat(120)}`,
        type: "file",
        size: 0,
        mode: 0o600,
        mtime: 1_700_000_003,
        uid: 5_000_000,
        gid: 7,
        uname: "a-very-long-user-name-over-31-bytes",
        gname: "g",
      },
      {
        path: "dom0-home/user/ln",
        type: "symlink",
        size: 0,
        mode: 0o777,
        mtime: 1_700_000_004,
        uid: 1000,
        gid: 1000,
        uname: "user",
        gname: "user",
        linkname: "../x".repeat(40),
      },
    ];
    const contents = new Map<string, Buffer>();
    const parts: Buffer[] = [];
    for (const e of entries) {
      parts.push(encodeTreeEntryHeader(e));
      if (e.type === "file") {
        const body = dataBytes(e.size);
        contents.set(e.path, body);
        parts.push(body, Buffer.alloc(entryPadding(e.size)));
      }
    }
    parts.push(endOfArchive());
    const read = await readAll(slices(Buffer.concat(parts), 513));
    expect([...read.keys()]).toEqual(entries.map((e) => e.path));
    for (const e of entries) {
      const rb = read.get(e.path);
      const { size: _size, ...rest } = e;
      expect(rb?.entry).toMatchObject({ ...rest, sparse: false, size: e.type === "file" ? e.size : 0 });
      if (e.type === "file") expect(rb?.content?.equals(contents.get(e.path) ?? Buffer.alloc(0))).toBe(true);
    }
  });
});

describe("readInnerTar: crafted headers", () => {
  it("applies pax overrides (size, path, linkpath, owners, fractional and negative mtime) and skips global headers", async () => {
    const body = dataBytes(700);
    const header = encodeHeader({
      name: "short",
      type: "0",
      size: 0,
      mode: 0o4755,
      mtime: 5,
      uid: 1,
      gid: 2,
      gname: "hdr",
    });
    const archive = Buffer.concat([
      encodePaxHeader("g", [["comment", "global, ignored"]]).fill("g", 156, 157),
      encodePaxHeader("x", [
        ["size", "700"],
        ["path", "real/ name\nwith newline"],
        ["uid", "4294967294"],
        ["gid", "0"],
        ["uname", "ünïcode"],
        ["gname", ""], // empty value: the header field stays
        ["mtime", "-12.25"],
      ]),
      header,
      body,
      Buffer.alloc(512 - (700 % 512)),
      encodePaxHeader("x", [["linkpath", "x".repeat(300)]]),
      encodeHeader({ name: "ln", type: "2", size: 0, mode: 0o777, mtime: 1, linkname: "short" }),
      END,
    ]);
    fixChecksum(archive, 0);
    const read = await readAll(slices(archive, 200));
    expect(read.get("real/ name\nwith newline")).toMatchObject({
      entry: { size: 700, mode: 0o4755, uid: 4294967294, gid: 0, uname: "ünïcode", gname: "hdr", mtime: -13 },
    });
    expect(read.get("real/ name\nwith newline")?.content?.equals(body)).toBe(true);
    expect(read.get("ln")?.entry.linkname).toBe("x".repeat(300));
  });

  it("treats an old regular member whose name ends in '/' as a directory, and reads hardlinks", async () => {
    const oldDir = patch(encodeHeader({ name: "olddir/", type: "0", size: 0, mode: 0o755, mtime: 1 }), 156, "\0");
    const hard = encodeHeader({ name: "h", type: "0", size: 0, mode: 0o644, mtime: 1, linkname: "olddir/f" });
    const read = await readAll(slices(Buffer.concat([oldDir, patch(hard, 156, "1"), END]), 512));
    expect(read.get("olddir")?.entry.type).toBe("directory");
    expect(read.get("h")?.entry).toMatchObject({ type: "hardlink", linkname: "olddir/f", size: 0 });
  });
});

/** Recomputes the checksum of the header block at `offset` in place. */
function fixChecksum(buf: Buffer, offset: number): void {
  const block = buf.subarray(offset, offset + BLOCK_SIZE);
  block.write(`${headerChecksum(block).toString(8).padStart(6, "0")}\0 `, 148, "latin1");
}

// ---- crafted archives for the rejection cases ----

/** Sets bytes at `offset` of a header block and recomputes its checksum. */
function patch(block: Buffer, offset: number, bytes: Buffer | string): Buffer {
  const b = Buffer.from(block);
  (typeof bytes === "string" ? Buffer.from(bytes, "latin1") : bytes).copy(b, offset);
  b.write(`${headerChecksum(b).toString(8).padStart(6, "0")}\0 `, 148, "latin1");
  return b;
}

function fileMember(name: string, data: Buffer, extra: Buffer[] = []): Buffer {
  const header = encodeHeader({ name, type: "0", size: data.length, mode: 0o644, mtime: 1 });
  return Buffer.concat([...extra, header, data, Buffer.alloc((BLOCK_SIZE - (data.length % BLOCK_SIZE)) % BLOCK_SIZE)]);
}

const END = Buffer.alloc(2 * BLOCK_SIZE);

describe("readInnerTar: rejections", () => {
  it("rejects a header with a bad checksum", async () => {
    const archive = makeArchive(["--format=gnu"], ["dir/small.txt"]);
    archive[0] = (archive[0] ?? 0) ^ 1;
    expect((await rejection(archive)).message).toMatch(/header at byte 0: .*checksum mismatch/u);
  });

  it("rejects unsupported entry types, naming the entry", async () => {
    fs.mkdirSync(path.join(tmp, "special"), { recursive: true });
    const fifo = path.join(tmp, "special/fifo");
    if (!fs.existsSync(fifo)) spawnSync("mkfifo", [fifo]);
    const out = path.join(tmp, "fifo.tar");
    tar(["-C", path.join(tmp, "special"), "--format=posix", "-cf", out, "fifo"]);
    expect((await rejection(fs.readFileSync(out))).message).toBe(`inner tar: unsupported entry type '6' for "fifo"`);
    tar(["-C", root, "--format=gnu", "--label=VOL1", "-cf", out, "empty"]);
    expect((await rejection(fs.readFileSync(out))).message).toBe(`inner tar: unsupported entry type 'V' for "VOL1"`);
    const base = encodeHeader({ name: "dev/thing", type: "0", size: 0, mode: 0o600, mtime: 1 });
    for (const flag of ["3", "4", "M", "7", "D", "N", "A"]) {
      const err = await rejection(Buffer.concat([patch(base, 156, flag), END]));
      expect(err.message).toBe(`inner tar: unsupported entry type '${flag}' for "dev/thing"`);
    }
  });

  it("rejects a pax header over the limit, a long name over the limit, and too many entries or regions", async () => {
    const pax = makeArchive(["--format=posix"], ["dir/small.txt"]);
    expect((await rejection(pax, { maxPaxBytes: 16 })).message).toMatch(
      /pax header of \d+ bytes exceeds the limit of 16/u,
    );
    const gnu = makeArchive(["--format=gnu"], ["longbase"]);
    expect((await rejection(gnu, { maxLongNameBytes: 100 })).message).toMatch(/GNU long name of 130 bytes exceeds/u);
    expect((await rejection(gnu, { maxEntries: 1 })).message).toMatch(/more than 1 entries/u);
    const sparseGnu = makeArchive(["--format=gnu", "--sparse"], ["many100.img"]);
    expect((await rejection(sparseGnu, { maxSparseRegions: 50 })).message).toMatch(/more than 50 regions/u);
    for (const v of ["0.0", "0.1", "1.0"]) {
      const px = makeArchive(["--format=posix", "--sparse", `--sparse-version=${v}`], ["many100.img"]);
      expect((await rejection(px, { maxSparseRegions: 50 })).message).toMatch(/more than 50 regions/u);
    }
  });

  it("rejects malformed and negative numbers", async () => {
    const good = fileMember("f", Buffer.from("abc"));
    const withSize = (field: Buffer | string): Buffer =>
      Buffer.concat([patch(good.subarray(0, 512), 124, field), good.subarray(512), END]);
    expect((await rejection(withSize("0000000000x\0"))).message).toMatch(/size: not an octal number/u);
    expect((await rejection(withSize(encodeBase256(-3, 12)))).message).toMatch(/negative size/u);
    expect((await rejection(withSize("\0\0\0\0\0\0\0\0\0\0\0\0"))).message).toMatch(/empty numeric field/u);
    // base-256 size that is fine
    const read = await readAll(slices(withSize(encodeBase256(3, 12)), 100));
    expect(read.get("f")?.content?.toString()).toBe("abc");
    const paxSize = Buffer.concat([encodePaxHeader("x", [["size", "-3"]]), good, END]);
    expect((await rejection(paxSize)).message).toMatch(/pax size: bad number "-3"/u);
    const paxMtime = Buffer.concat([encodePaxHeader("x", [["mtime", "1e9"]]), good, END]);
    expect((await rejection(paxMtime)).message).toMatch(/bad pax mtime/u);
  });

  it("rejects malformed pax records, NUL in names, and dangling or repeated extended headers", async () => {
    const good = fileMember("f", Buffer.from("abc"));
    const paxData = Buffer.from("30 path=abc\n", "latin1"); // length 30 is wrong
    const paxHeader = encodeHeader({ name: "x", type: "x", size: paxData.length, mode: 0o644, mtime: 0 });
    const bad = Buffer.concat([paxHeader, paxData, Buffer.alloc(512 - paxData.length), good, END]);
    expect((await rejection(bad)).message).toMatch(/pax header at byte 0: pax header: record length out of bounds/u);
    const nul = Buffer.concat([encodePaxHeader("x", [["path", "a\0b"]]), good, END]);
    expect((await rejection(nul)).message).toMatch(/contains NUL/u);
    const twice = Buffer.concat([
      encodePaxHeader("x", [["path", "a"]]),
      encodePaxHeader("x", [["path", "b"]]),
      good,
      END,
    ]);
    expect((await rejection(twice)).message).toMatch(/two pax headers in a row/u);
    const dangling = Buffer.concat([good, encodePaxHeader("x", [["path", "a"]]), END]);
    expect((await rejection(dangling)).message).toMatch(/extended header not followed by an entry/u);
  });

  it("rejects data after the end marker and a missing end marker", async () => {
    const archive = makeArchive(["--format=posix"], ["dir/small.txt"]);
    const after = Buffer.from(archive);
    after[after.length - 1] = 1;
    expect((await rejection(after)).message).toBe("inner tar: data after end of archive");
    const loneZero = Buffer.concat([
      archive.subarray(0, 4 * BLOCK_SIZE),
      Buffer.alloc(BLOCK_SIZE),
      archive.subarray(0, 4 * BLOCK_SIZE),
      END,
    ]);
    expect((await rejection(loneZero)).message).toBe("inner tar: data after end of archive");
    const noEnd = archive.subarray(0, 4 * BLOCK_SIZE);
    expect((await rejection(noEnd)).message).toMatch(/archive truncated \(no end-of-archive marker\)/u);
    const oneZero = archive.subarray(0, 5 * BLOCK_SIZE);
    expect((await rejection(oneZero)).message).toMatch(/archive truncated inside the end-of-archive marker/u);
  });

  it("rejects bad pax sparse 0.0 maps: overlapping, past the real size, wrong total, unpaired", async () => {
    const sparse00 = (
      map: Array<[number, number]>,
      realSize: number,
      stored: number,
      extra: Array<[string, string]> = [],
    ): Buffer => {
      const records: Array<[string, string]> = [
        ["GNU.sparse.size", String(realSize)],
        ["GNU.sparse.numblocks", String(map.length)],
      ];
      for (const [o, n] of map) records.push(["GNU.sparse.offset", String(o)], ["GNU.sparse.numbytes", String(n)]);
      return Buffer.concat([encodePaxHeader("x", [...records, ...extra]), fileMember("s.img", dataBytes(stored)), END]);
    };
    // sanity: a good one reads
    const ok = await readAll(
      slices(
        sparse00(
          [
            [0, 10],
            [100, 20],
          ],
          200,
          30,
        ),
        512,
      ),
    );
    expect(ok.get("s.img")?.entry).toMatchObject({ size: 200, sparse: true });
    expect(
      (
        await rejection(
          sparse00(
            [
              [0, 100],
              [50, 20],
            ],
            200,
            120,
          ),
        )
      ).message,
    ).toMatch(/"s\.img": sparse region 1 at 50 overlaps/u);
    expect(
      (
        await rejection(
          sparse00(
            [
              [100, 20],
              [0, 10],
            ],
            200,
            30,
          ),
        )
      ).message,
    ).toMatch(/overlaps or precedes/u);
    expect(
      (
        await rejection(
          sparse00(
            [
              [0, 10],
              [190, 20],
            ],
            200,
            30,
          ),
        )
      ).message,
    ).toMatch(/ends at 210, past the real size 200/u);
    expect(
      (
        await rejection(
          sparse00(
            [
              [0, 10],
              [100, 20],
            ],
            200,
            40,
          ),
        )
      ).message,
    ).toMatch(/hold 30 bytes, the member stores 40/u);
    expect((await rejection(sparse00([[0, 10]], 200, 10, [["GNU.sparse.offset", "50"]]))).message).toMatch(
      /offset without numbytes/u,
    );
    expect((await rejection(sparse00([[0, 10]], 200, 10, [["GNU.sparse.numblocks", "2"]]))).message).toMatch(
      /numblocks 2 does not match/u,
    );
    const noSize = Buffer.concat([
      encodePaxHeader("x", [["GNU.sparse.map", "0,3"]]),
      fileMember("s.img", dataBytes(3)),
      END,
    ]);
    expect((await rejection(noSize)).message).toMatch(/without a real size/u);
    const version = Buffer.concat([
      encodePaxHeader("x", [
        ["GNU.sparse.major", "2"],
        ["GNU.sparse.minor", "0"],
      ]),
      fileMember("s.img", dataBytes(3)),
      END,
    ]);
    expect((await rejection(version)).message).toMatch(/unsupported sparse version 2\.0/u);
  });

  it("rejects bad sparse 1.0 maps and bad old GNU extension blocks", async () => {
    const map10 = (text: string, realSize: number, data: Buffer): Buffer => {
      const map = Buffer.alloc(Math.ceil(text.length / 512) * 512);
      map.write(text, "latin1");
      const records: Array<[string, string]> = [
        ["GNU.sparse.major", "1"],
        ["GNU.sparse.minor", "0"],
        ["GNU.sparse.name", "v.img"],
        ["GNU.sparse.realsize", String(realSize)],
      ];
      return Buffer.concat([
        encodePaxHeader("x", records),
        fileMember("GNUSparseFile.0/v.img", Buffer.concat([map, data])),
        END,
      ]);
    };
    const ok = await readAll(slices(map10("1\n10\n5\n", 20, dataBytes(5)), 512));
    expect(ok.get("v.img")?.entry).toMatchObject({ size: 20, sparse: true });
    expect((await rejection(map10("1\n10\n5\nxx", 20, dataBytes(5)))).message).toMatch(/garbage after the sparse map/u);
    expect((await rejection(map10("2\n10\n5\n", 20, dataBytes(5)))).message).toMatch(/not decimal lines/u);
    expect((await rejection(map10("1\n10\n5\n", 12, dataBytes(5)))).message).toMatch(/past the real size 12/u);
    // map claims more numbers than the member holds
    const longMap = `300\n${"1\n".repeat(600)}`;
    expect((await rejection(map10(longMap.slice(0, 510), 20, Buffer.alloc(0)))).message).toMatch(
      /sparse map runs past the member data|not decimal lines/u,
    );

    // old GNU: isextended set, extension block empty
    const gnu = makeArchive(["--format=gnu", "--sparse"], ["many30.img"]);
    const ext = Buffer.from(gnu);
    ext.fill(0, 512, 1024);
    expect((await rejection(ext)).message).toMatch(/"many30\.img": empty sparse extension block/u);
    const numbytes = Buffer.from(gnu);
    numbytes.write("0000000000x\0", 512 + 12, "latin1");
    expect((await rejection(numbytes)).message).toMatch(
      /sparse extension block: sparse entry numbytes: not an octal number/u,
    );
  });

  it("rejects a stream cut at any point before the end marker, without hanging", async () => {
    for (const args of [
      ["--format=gnu", "--sparse"],
      ["--format=posix", "--sparse", "--sparse-version=1.0"],
      ["--format=posix"],
    ]) {
      const archive = makeArchive(args, ["dir/small.txt", "sparse.img", "longbase", "link"]);
      // the last member (a symlink) has no data, so the end marker starts right after its header
      let end = archive.length;
      while (end > 0 && archive[end - 1] === 0) end--;
      end = Math.ceil(end / BLOCK_SIZE) * BLOCK_SIZE + 2 * BLOCK_SIZE;
      const cuts = new Set<number>([0, 1, 511, 512, 513, 1023, 1024, end - 1024, end - 513, end - 512, end - 1]);
      for (let k = 1; k < 40; k++) cuts.add(Math.floor((end * k) / 40) + k);
      for (const cut of cuts) {
        const err = await rejection(slices(archive.subarray(0, cut), 333));
        expect(err.message, `cut at ${cut}`).toMatch(/archive truncated/u);
      }
      // the full end marker is enough
      await readAll(slices(archive.subarray(0, end), 333));
    }
  });

  it("rejects a pax header declaring 100 MB before reading it", async () => {
    const header = encodeHeader({ name: "x", type: "x", size: 100_000_000, mode: 0o644, mtime: 0 });
    let pulled = 0;
    async function* endless(): AsyncGenerator<Uint8Array> {
      pulled += header.length;
      yield header;
      const zeros = Buffer.alloc(64 * KiB, 0x31);
      for (;;) {
        pulled += zeros.length;
        yield zeros;
      }
    }
    const started = Date.now();
    const err = await rejection(endless());
    expect(err.message).toBe("inner tar: pax header of 100000000 bytes exceeds the limit of 1048576");
    expect(pulled).toBeLessThanOrEqual(BLOCK_SIZE);
    expect(Date.now() - started).toBeLessThan(1000);
  });
});
