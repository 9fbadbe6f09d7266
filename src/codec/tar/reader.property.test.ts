/**
 * Property tests of the inner-archive writers against readInnerTar (spec §4.3, §7): random sparse maps
 * (holes at start and end, tiny and adjacent regions, sizes off the 512/4096 grid) through the volume
 * writer, images through HoleScanner, and random directory trees (files, directories, symlinks,
 * hardlinks, long and unicode names, values that need pax records) come back with the same entries and
 * bytes, read in random chunk sizes; random edits of a valid archive make the reader throw
 * ERR_TAR_MALFORMED (ERR_MISSING when cut short) or yield only well-formed entries, never another exception, and it always ends.
 */

import { Buffer } from "node:buffer";
import { createCipheriv, createHash } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { refreshTarChecksum, writeTarChecksum } from "../../../test/support/byte-edits.js";
import { cutInPieces } from "../../../test/support/byte-source.js";
import { QbackupError } from "../../errors.js";
import { BLOCK_SIZE, MAX_OCTAL_11, MODE_MASK } from "./header.js";
import { F_TYPEFLAG } from "./layout.js";
import { readInnerTar } from "./reader.js";
import type { DataPiece, InnerEntry, InnerEntryType } from "./reader.js";
import { HoleScanner } from "./sparse.js";
import type { Region } from "./sparse.js";
import { encodeTreeEntryHeader, endOfArchive, entryPadding } from "./tree.js";
import type { TreeEntry } from "./tree.js";
import { volumeArchiveHeader, volumeArchiveTrailer } from "./volume.js";
import type { VolumeArchiveSpec } from "./volume.js";

const SPARSE_RUNS = 150;
const SCAN_RUNS = 60;
const TREE_RUNS = 150;
const MUTATION_RUNS = 600;
const MAX_REGIONS = 12;
const MAX_GAP = 20_000;
const MAX_REGION_BYTES = 10_000;
const MAX_TREE_ENTRIES = 8;
const MAX_FILE_BYTES = 3000;
const MAX_COMPONENTS = 4;
const MAX_CHUNK_BYTES = 5000;
const MAX_CHUNKS = 400;
const MAX_EDITS = 4;
const TYPEFLAG_HARDLINK = "1";
const ENTRY_TYPES: ReadonlySet<InnerEntryType> = new Set(["file", "directory", "symlink", "hardlink"]);
/** Byte values that steer a tar parser: digits, octal, separators, typeflags, base-256 leads. */
const INTERESTING_BYTES = [
  0x00, 0x20, 0x0a, 0x3d, 0x2f, 0x30, 0x31, 0x32, 0x35, 0x37, 0x39, 0x4b, 0x4c, 0x53, 0x67, 0x78, 0x7f, 0x80, 0xff,
];

// ---- generators ----

/** Deterministic pseudo-random bytes (AES-CTR keystream of the seed). */
function bytesOf(length: number, seed: number): Buffer {
  const key = createHash("sha256").update(`tar ${seed}`).digest();
  return createCipheriv("aes-256-ctr", key, Buffer.alloc(16)).update(Buffer.alloc(length));
}

/** Sizes around the interesting boundaries (1, 511/512/513, 4095/4096/4097) and anything else. */
const sizeArb = (max: number): fc.Arbitrary<number> =>
  fc.oneof(
    fc.integer({ min: 1, max: 3 }),
    fc.constantFrom(511, 512, 513, 4095, 4096, 4097).map((n) => Math.min(n, max)),
    fc.integer({ min: 1, max }),
  );

const gapArb = fc.oneof(fc.constant(0), sizeArb(MAX_GAP));

const ASCII_NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-+@~ #%=,";
/** Non-ASCII (composed, decomposed, astral, NBSP) and control characters a file name may hold. */
const OTHER_NAME_CHARS = ["é", "Ü", "ß", "日", "本", "ж", "\u{1F600}", "\u00A0", "e\u0301", "\t", "\n", "\\"];

function componentArb(): fc.Arbitrary<string> {
  const ascii = fc.string({ unit: fc.constantFrom(...ASCII_NAME_CHARS), minLength: 1, maxLength: 20 });
  const mixed = fc.string({
    unit: fc.oneof(fc.constantFrom(...ASCII_NAME_CHARS), fc.constantFrom(...OTHER_NAME_CHARS)),
    minLength: 1,
    maxLength: 12,
  });
  const long = fc.string({ unit: fc.constantFrom(...ASCII_NAME_CHARS), minLength: 90, maxLength: 160 });
  return fc
    .oneof({ weight: 4, arbitrary: ascii }, { weight: 2, arbitrary: mixed }, { weight: 1, arbitrary: long })
    .filter((c) => c !== "." && c !== "..");
}

function pathArb(): fc.Arbitrary<string> {
  return fc.array(componentArb(), { minLength: 1, maxLength: MAX_COMPONENTS }).map((parts) => parts.join("/"));
}

interface SparseCase {
  spec: VolumeArchiveSpec;
  /** The whole image, holes as zeros. */
  image: Buffer;
}

/** Random region layouts: optional leading hole, adjacent or separated regions, optional trailing hole. */
const sparseCaseArb: fc.Arbitrary<SparseCase> = fc
  .record({
    parts: fc.array(fc.record({ gap: gapArb, length: sizeArb(MAX_REGION_BYTES) }), { maxLength: MAX_REGIONS }),
    tail: gapArb,
    seed: fc.integer(),
    name: fc.oneof(
      fc.integer({ min: 0, max: 9999 }).map((q) => `vm${q}/private.img`),
      pathArb(),
    ),
    mode: fc.integer({ min: 0, max: 0o177777 }),
    mtime: fc.integer({ min: 0, max: MAX_OCTAL_11 }),
  })
  .map(({ parts, tail, seed, name, mode, mtime }) => {
    const regions: Region[] = [];
    let end = 0;
    for (const { gap, length } of parts) {
      regions.push({ offset: end + gap, length });
      end += gap + length;
    }
    const realSize = end + tail;
    // A file that ends in a hole (or has no data) ends its map with { realSize, 0 } (spec §4.3).
    if (tail > 0 || regions.length === 0) regions.push({ offset: realSize, length: 0 });
    const image = Buffer.alloc(realSize);
    const data = bytesOf(
      regions.reduce((s, r) => s + r.length, 0),
      seed,
    );
    let at = 0;
    for (const r of regions) {
      data.copy(image, r.offset, at, at + r.length);
      at += r.length;
    }
    return { spec: { name, realSize, regions, mode, mtime }, image };
  });

type TreeCaseEntry = TreeEntry | (Omit<TreeEntry, "type"> & { type: "hardlink" });

interface TreeCase {
  entries: TreeCaseEntry[];
  contents: Map<string, Buffer>;
}

const ownerArb = fc.oneof(
  fc.constantFrom("", "root", "user", "a".repeat(31)),
  fc.string({ unit: fc.constantFrom(..."abcxyz_-0189"), maxLength: 40 }),
  fc.string({ unit: fc.constantFrom("ü", "名", "a", "-"), maxLength: 8 }),
);
const idArb = fc.oneof(fc.integer({ min: 0, max: 70_000 }), fc.integer({ min: 0, max: 2 ** 40 }));
const mtimeArb = fc.oneof(
  fc.integer({ min: 0, max: MAX_OCTAL_11 }),
  fc.integer({ min: -(2 ** 40), max: -1 }),
  fc.integer({ min: MAX_OCTAL_11 + 1, max: Number.MAX_SAFE_INTEGER }),
);
const linkArb = fc.oneof(
  pathArb(),
  fc.string({ unit: fc.constantFrom(..."./ab-"), minLength: 1, maxLength: 30 }),
  fc.string({ unit: fc.constantFrom(...ASCII_NAME_CHARS, "/", "ü"), minLength: 95, maxLength: 130 }),
);

const treeCaseArb: fc.Arbitrary<TreeCase> = fc
  .uniqueArray(
    fc.record({
      path: pathArb(),
      type: fc.constantFrom("file" as const, "directory" as const, "symlink" as const, "hardlink" as const),
      size: fc.oneof(fc.constant(0), sizeArb(MAX_FILE_BYTES)),
      mode: fc.integer({ min: 0, max: 0o177777 }),
      mtime: mtimeArb,
      uid: idArb,
      gid: idArb,
      uname: ownerArb,
      gname: ownerArb,
      linkname: linkArb,
      seed: fc.integer(),
    }),
    { maxLength: MAX_TREE_ENTRIES, selector: (e) => e.path },
  )
  .map((raw) => {
    const contents = new Map<string, Buffer>();
    const entries = raw.map(({ seed, linkname, size, ...e }): TreeCaseEntry => {
      if (e.type === "file") {
        contents.set(e.path, bytesOf(size, seed));
        return { ...e, size };
      }
      return e.type === "directory" ? { ...e, size: 0 } : { ...e, size: 0, linkname };
    });
    return { entries, contents };
  });

// ---- building archives ----

/** The header of a hardlink: tree.ts writes no hardlinks, so a symlink header gets typeflag '1'. */
function hardlinkHeader(e: TreeCaseEntry): Buffer {
  const bytes = encodeTreeEntryHeader({ ...e, type: "symlink" });
  const block = bytes.subarray(bytes.length - BLOCK_SIZE);
  block.write(TYPEFLAG_HARDLINK, F_TYPEFLAG, "latin1");
  writeTarChecksum(block);
  return bytes;
}

function treeArchive(c: TreeCase): Buffer {
  const parts: Buffer[] = [];
  for (const e of c.entries) {
    if (e.type === "hardlink") {
      parts.push(hardlinkHeader(e));
      continue;
    }
    parts.push(encodeTreeEntryHeader(e));
    const data = c.contents.get(e.path);
    if (data !== undefined) parts.push(data, Buffer.alloc(entryPadding(data.length)));
  }
  parts.push(endOfArchive());
  return Buffer.concat(parts);
}

function volumeArchive(c: SparseCase): Buffer {
  const data = c.spec.regions.map((r) => c.image.subarray(r.offset, r.offset + r.length));
  return Buffer.concat([volumeArchiveHeader(c.spec), ...data, volumeArchiveTrailer(c.spec)]);
}

// ---- reading ----

/**
 * `bytes` as an async stream of chunks whose sizes cycle through `sizes`, but never more than
 * MAX_CHUNKS chunks (tiny chunk sizes apply in full to small archives only; keeps runs fast).
 */
async function* chunked(bytes: Buffer, sizes: readonly number[]): AsyncGenerator<Uint8Array> {
  yield* cutInPieces(bytes, sizes, Math.ceil(bytes.length / MAX_CHUNKS));
}

const chunkSizesArb = fc.array(fc.oneof(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: MAX_CHUNK_BYTES })), {
  minLength: 1,
  maxLength: 6,
});

interface ReadItem {
  entry: InnerEntry;
  pieces: DataPiece[];
}

/**
 * Every entry and all of its data, checking what any consumer may rely on: well-formed fields,
 * pieces non-empty, ascending, non-overlapping, inside the file, and never more data than input.
 */
async function readAll(archive: Buffer, sizes: readonly number[]): Promise<ReadItem[]> {
  const items: ReadItem[] = [];
  let dataBytes = 0;
  for await (const { entry, data } of readInnerTar(chunked(archive, sizes))) {
    checkWellFormed(entry);
    const pieces: DataPiece[] = [];
    let end = 0;
    for await (const piece of data) {
      check(piece.bytes.length > 0, "empty data piece");
      check(piece.offset >= end, `piece at ${piece.offset} overlaps or precedes the previous one`);
      end = piece.offset + piece.bytes.length;
      check(end <= entry.size, `piece ends at ${end}, past the size ${entry.size}`);
      dataBytes += piece.bytes.length;
      check(dataBytes <= archive.length, "more data than input");
      pieces.push({ offset: piece.offset, bytes: Buffer.from(piece.bytes) });
    }
    items.push({ entry, pieces });
    check(items.length <= archive.length / BLOCK_SIZE, "more entries than header blocks");
  }
  return items;
}

/** A plain assertion (vitest's expect is too slow for per-piece checks in hundreds of runs). */
function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`property violated: ${what}`);
}

function checkWellFormed(e: InnerEntry): void {
  const what = JSON.stringify(e);
  check(typeof e.path === "string" && e.path.length > 0, `empty path: ${what}`);
  check(!e.path.includes("\0") && !e.path.endsWith("/"), `bad path: ${what}`);
  check(ENTRY_TYPES.has(e.type), `bad type: ${what}`);
  check(Number.isSafeInteger(e.size) && e.size >= 0, `bad size: ${what}`);
  check(e.type === "file" || e.size === 0, `non-file with a size: ${what}`);
  check(Number.isInteger(e.mode) && e.mode >= 0 && e.mode <= MODE_MASK, `bad mode: ${what}`);
  check(
    [e.mtime, e.uid, e.gid].every((n) => Number.isSafeInteger(n)),
    `bad number: ${what}`,
  );
  check(e.uid >= 0 && e.gid >= 0, `negative owner: ${what}`);
  check(typeof e.uname === "string" && typeof e.gname === "string", `bad owner name: ${what}`);
  if (e.type === "symlink" || e.type === "hardlink") {
    check(typeof e.linkname === "string" && e.linkname.length > 0, `link without target: ${what}`);
    check(!(e.linkname ?? "").includes("\0"), `link target with NUL: ${what}`);
  } else {
    check(e.linkname === undefined, `linkname on a ${e.type}: ${what}`);
  }
  check(!e.sparse || e.type === "file", `sparse non-file: ${what}`);
}

/** The file rebuilt from its pieces (holes as zeros). */
function rebuild(item: ReadItem): Buffer {
  const out = Buffer.alloc(item.entry.size);
  for (const p of item.pieces) p.bytes.copy(out, p.offset);
  return out;
}

/** Byte ranges covered, adjacent ranges merged. */
function coverage(ranges: ReadonlyArray<{ offset: number; length: number }>): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (const { offset, length } of ranges) {
    if (length === 0) continue;
    const last = out[out.length - 1];
    if (last !== undefined && last[1] === offset) last[1] = offset + length;
    else out.push([offset, offset + length]);
  }
  return out;
}

async function expectSparseRoundTrip(c: SparseCase, sizes: readonly number[]): Promise<void> {
  const items = await readAll(volumeArchive(c), sizes);
  expect(items.length).toBe(1);
  const [item] = items as [ReadItem];
  expect(item.entry).toEqual({
    path: c.spec.name,
    type: "file",
    size: c.spec.realSize,
    mode: c.spec.mode & MODE_MASK,
    mtime: c.spec.mtime,
    uid: 0,
    gid: 0,
    uname: "",
    gname: "",
    sparse: true,
  });
  // The same data ranges (holes stay holes) and the same bytes.
  expect(coverage(item.pieces.map((p) => ({ offset: p.offset, length: p.bytes.length })))).toEqual(
    coverage(c.spec.regions),
  );
  expect(rebuild(item).equals(c.image)).toBe(true);
}

describe("inner tar: sparse volume archives", () => {
  it("random sparse maps round-trip through the volume writer and readInnerTar", async () => {
    await fc.assert(fc.asyncProperty(sparseCaseArb, chunkSizesArb, expectSparseRoundTrip), { numRuns: SPARSE_RUNS });
  });

  it("images scanned by HoleScanner (random push sizes, 512/4096 granularity) round-trip", async () => {
    const blocks = fc.array(fc.record({ zero: fc.boolean(), length: sizeArb(9000), seed: fc.integer() }), {
      maxLength: 10,
    });
    const arb = fc.record({
      blocks,
      granularity: fc.constantFrom(512, 4096),
      pushes: chunkSizesArb,
      reads: chunkSizesArb,
    });
    await fc.assert(
      fc.asyncProperty(arb, async ({ blocks: parts, granularity, pushes, reads }) => {
        const image = Buffer.concat(parts.map((p) => (p.zero ? Buffer.alloc(p.length) : bytesOf(p.length, p.seed))));
        const scanner = new HoleScanner(granularity);
        let i = 0;
        for (let off = 0; off < image.length; i++) {
          const n = pushes[i % pushes.length] ?? 1;
          scanner.push(image.subarray(off, off + n));
          off += n;
        }
        const regions = scanner.finish();
        // Every byte outside the regions is zero, so the image is fully described by them.
        const spec: VolumeArchiveSpec = {
          name: "vm1/root.img",
          realSize: image.length,
          regions,
          mode: 0o600,
          mtime: 1,
        };
        await expectSparseRoundTrip({ spec, image }, reads);
      }),
      { numRuns: SCAN_RUNS },
    );
  });
});

function expectedEntry(e: TreeCaseEntry): InnerEntry {
  const out: InnerEntry = {
    path: e.path,
    type: e.type,
    size: e.type === "file" ? e.size : 0,
    mode: e.mode & MODE_MASK,
    mtime: e.mtime,
    uid: e.uid,
    gid: e.gid,
    uname: e.uname,
    gname: e.gname,
    sparse: false,
  };
  if (e.type === "symlink" || e.type === "hardlink") out.linkname = e.linkname;
  return out;
}

describe("inner tar: directory trees", () => {
  it("random trees round-trip through tree.ts and readInnerTar", async () => {
    await fc.assert(
      fc.asyncProperty(treeCaseArb, chunkSizesArb, async (c, sizes) => {
        const items = await readAll(treeArchive(c), sizes);
        expect(items.map((i) => i.entry)).toEqual(c.entries.map(expectedEntry));
        for (const item of items) {
          const want = c.contents.get(item.entry.path) ?? Buffer.alloc(0);
          expect(rebuild(item).equals(want)).toBe(true);
        }
      }),
      { numRuns: TREE_RUNS },
    );
  });
});

// ---- mutations ----

type Edit =
  | { kind: "set"; at: number; byte: number; fixChecksum: boolean }
  | { kind: "insert" | "delete"; at: number; length: number }
  | { kind: "truncate"; at: number };

const editArb: fc.Arbitrary<Edit> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant("set" as const),
      at: fc.nat(),
      byte: fc.oneof(fc.constantFrom(...INTERESTING_BYTES), fc.integer({ min: 0, max: 255 })),
      fixChecksum: fc.boolean(),
    }),
  },
  fc.record({
    kind: fc.constantFrom("insert" as const, "delete" as const),
    at: fc.nat(),
    length: fc.oneof(fc.integer({ min: 1, max: 4 }), fc.constant(BLOCK_SIZE)),
  }),
  fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }),
);

function applyEdits(input: Buffer, edits: readonly Edit[]): Buffer {
  let b = Buffer.from(input);
  for (const e of edits) {
    const at = e.at % (b.length + 1);
    if (e.kind === "set") {
      if (at === b.length) continue;
      b[at] = e.byte;
      if (e.fixChecksum) refreshTarChecksum(b, at);
    } else if (e.kind === "insert") {
      b = Buffer.concat([b.subarray(0, at), Buffer.alloc(e.length, 0x31), b.subarray(at)]);
    } else if (e.kind === "delete") {
      b = Buffer.concat([b.subarray(0, at), b.subarray(at + e.length)]);
    } else {
      b = b.subarray(0, at);
    }
  }
  return b;
}

describe("inner tar: mutations", () => {
  it("edited archives throw ERR_TAR_MALFORMED or ERR_MISSING or yield only well-formed entries", async () => {
    const source = fc.oneof(treeCaseArb.map(treeArchive), sparseCaseArb.map(volumeArchive));
    await fc.assert(
      fc.asyncProperty(
        source,
        fc.array(editArb, { minLength: 1, maxLength: MAX_EDITS }),
        chunkSizesArb,
        async (archive, edits, sizes) => {
          const edited = applyEdits(archive, edits);
          try {
            await readAll(edited, sizes);
          } catch (err) {
            if (!(err instanceof QbackupError)) throw err;
            expect(err.code).toBe(/archive truncated/.test(err.message) ? "ERR_MISSING" : "ERR_TAR_MALFORMED");
            expect(err.message).not.toContain("\n");
          }
        },
      ),
      { numRuns: MUTATION_RUNS },
    );
  });
});
