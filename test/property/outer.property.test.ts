/**
 * Property tests across layers (spec §2.1, §2.4, §2.7): the outer archive writer (OuterArchiveWriter
 * over the codec's member framing) and the restore side's OuterReader agree on random member names,
 * sizes and data, with or without REF-W-style pax headers in front of members, whatever the read
 * sizes, with positional look-ahead, and with exact per-member size limits. Random edits of a valid
 * outer archive make the reader throw a QbackupError (never another exception) or return members
 * whose bytes really are in the input.
 */

import { Buffer } from "node:buffer";
import { createCipheriv, createHash } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { refreshTarChecksum } from "../support/byte-edits.js";
import { BLOCK_SIZE, encodePaxHeader, splitUstarName, validateOuterMemberName } from "../../src/codec/tar/index.js";
import { OuterArchiveWriter } from "../../src/create/outer.js";
import { QbackupError } from "../../src/errors.js";
import { OuterReader } from "../../src/restore/outer-reader.js";
import type { MemberSizeLimit, OuterMember } from "../../src/restore/outer-reader.js";
import type { BackupSink } from "../../src/transport/sink.js";
import type { ByteSource } from "../../src/transport/source.js";

const ROUND_TRIP_RUNS = 200;
const LIMIT_RUNS = 100;
const MUTATION_RUNS = 600;
const MAX_MEMBERS = 8;
const MAX_COMPONENTS = 4;
const MAX_MEMBER_BYTES = 6000;
const MAX_READ_BYTES = 3000;
const MAX_EDITS = 4;
const MAX_READS = 64;
const MTIME = 1_700_000_000;
/** What the reader's size limit is in the mutation property (far above any member written here). */
const GENEROUS_LIMIT = 1024 * 1024;
/** Printable ASCII without space and '/': what both the writer and the reader accept in a component. */
const NAME_CHARS = Array.from({ length: 0x7e - 0x21 + 1 }, (_, i) => String.fromCharCode(0x21 + i)).filter(
  (c) => c !== "/",
);
const REAL_NAMES = ["backup-header", "backup-header.hmac", "qubes.xml.000.enc", "vm5/private.img.000.enc"];

// ---- generators ----

function bytesOf(length: number, seed: number): Buffer {
  const key = createHash("sha256").update(`outer ${seed}`).digest();
  return createCipheriv("aes-256-ctr", key, Buffer.alloc(16)).update(Buffer.alloc(length));
}

function nameArb(chars: readonly string[]): fc.Arbitrary<string> {
  const component = fc
    .oneof(
      fc.string({ unit: fc.constantFrom(...chars), minLength: 1, maxLength: 12 }),
      fc.string({ unit: fc.constantFrom(...chars), minLength: 40, maxLength: 100 }),
    )
    .filter((c) => c !== "." && c !== "..");
  return fc
    .oneof(
      fc.constantFrom(...REAL_NAMES),
      fc.array(component, { minLength: 1, maxLength: MAX_COMPONENTS }).map((parts) => parts.join("/")),
    )
    .filter((name) => splitUstarName(name) !== undefined);
}

const sizeArb = fc.oneof(
  fc.integer({ min: 0, max: 3 }),
  fc.constantFrom(511, 512, 513, 10240 - 1536, 10240 - 1535),
  fc.integer({ min: 0, max: MAX_MEMBER_BYTES }),
);

interface MemberCase {
  name: string;
  data: Buffer;
  /** How the writer receives the data: cut at these fractions. */
  cuts: number[];
  /** A REF-W-style pax header (mtime only) in front of the member. */
  pax: boolean;
  /** Read the data (in pieces) or let next() skip it. */
  read: boolean;
  /** Look ahead this many members after next() returned this one. */
  peek: number;
}

function membersArb(chars: readonly string[]): fc.Arbitrary<MemberCase[]> {
  return fc
    .uniqueArray(
      fc.record({
        name: nameArb(chars),
        size: sizeArb,
        seed: fc.integer(),
        cuts: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 3 }),
        pax: fc.boolean(),
        read: fc.boolean(),
        peek: fc.integer({ min: 0, max: 3 }),
      }),
      { minLength: 1, maxLength: MAX_MEMBERS, selector: (m) => m.name },
    )
    .map((ms) => ms.map(({ size, seed, ...m }) => ({ ...m, data: bytesOf(size, seed) })));
}

const readSizesArb = fc.array(fc.integer({ min: 1, max: MAX_READ_BYTES }), { minLength: 1, maxLength: 5 });

// ---- writing and reading ----

function memorySink(parts: Buffer[]): BackupSink {
  return {
    location: "memory",
    async write(data) {
      parts.push(Buffer.from(data));
    },
    async commit() {},
    async abort() {},
  };
}

async function writeOuter(members: readonly MemberCase[]): Promise<Buffer> {
  const parts: Buffer[] = [];
  const writer = new OuterArchiveWriter(memorySink(parts), MTIME);
  for (const m of members) {
    if (m.pax) {
      const base = m.name.slice(m.name.lastIndexOf("/") + 1).slice(0, 80);
      parts.push(encodePaxHeader(`PaxHeaders/${base}`, [["mtime", `${MTIME}.123456789`]]));
    }
    const cuts = [...new Set(m.cuts.map((f) => Math.floor(f * m.data.length)))].sort((a, b) => a - b);
    const pieces = [0, ...cuts, m.data.length]
      .slice(1)
      .map((end, i, ends) => m.data.subarray(i === 0 ? 0 : ends[i - 1], end));
    check((await writer.member(m.name, pieces)) === m.data.length, `writer size of ${m.name}`);
  }
  return Buffer.concat(parts);
}

/** A seekable in-memory source; reads return exactly what was asked for unless the input ends. */
function memorySource(bytes: Buffer): ByteSource {
  let position = 0;
  let bytesRead = 0;
  return {
    description: "memory",
    seekable: true,
    get bytesRead() {
      return bytesRead;
    },
    async read(length) {
      const out = Buffer.from(bytes.subarray(position, position + length));
      position += out.length;
      bytesRead += out.length;
      return out;
    },
    async skip(length) {
      const n = Math.min(length, bytes.length - position);
      position += n;
      return n;
    },
    async close() {},
    async pread(at, length) {
      const out = Buffer.from(bytes.subarray(at, at + length));
      bytesRead += out.length;
      return out;
    },
  };
}

/**
 * Reads the current member's data in pieces cycling through `sizes` (at most MAX_READS reads, so
 * tiny sizes stay cheap), checking no piece is empty and nothing comes after the end.
 */
async function readData(reader: OuterReader, size: number, sizes: readonly number[]): Promise<Buffer> {
  const floor = Math.ceil(size / MAX_READS);
  const parts: Buffer[] = [];
  let got = 0;
  for (let i = 0; got < size; i++) {
    const piece = await reader.read(Math.max(sizes[i % sizes.length] ?? 1, floor));
    check(piece.length > 0, `empty read at ${got} of ${size}`);
    parts.push(piece);
    got += piece.length;
  }
  check(got === size, `read ${got} bytes of a ${size}-byte member`);
  check((await reader.read(1)).length === 0, "data after the end of a member");
  return Buffer.concat(parts);
}

/** A plain assertion (vitest's expect is too slow for per-member checks in hundreds of runs). */
function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`property violated: ${what}`);
}

function writerAccepts(name: string): boolean {
  try {
    validateOuterMemberName(name);
    return true;
  } catch (err) {
    if (err instanceof QbackupError && err.code === "ERR_UNSAFE_PATH") return false;
    throw err;
  }
}

function limitsOf(members: readonly MemberCase[]): MemberSizeLimit {
  const sizes = new Map(members.map((m) => [m.name, m.data.length]));
  return (name) => sizes.get(name) ?? 0;
}

async function expectRoundTrip(members: readonly MemberCase[], sizes: readonly number[]): Promise<void> {
  const archive = await writeOuter(members);
  const reader = new OuterReader(memorySource(archive), limitsOf(members));
  for (const [i, m] of members.entries()) {
    const got = await reader.next();
    check(got !== null, `archive ended before ${m.name}`);
    const member = got as OuterMember;
    check(member.name === m.name && member.size === m.data.length, `got ${member.name} (${member.size} bytes)`);
    check(archive.subarray(member.offset, member.offset + member.size).equals(m.data), `offset of ${m.name}`);
    if (m.peek > 0) {
      const ahead = await reader.peekAhead(m.peek);
      const want = members.slice(i + 1, i + 1 + m.peek);
      check(ahead.length === want.length, `peekAhead(${m.peek}) found ${ahead.length} of ${want.length}`);
      for (const [k, a] of ahead.entries()) {
        const w = want[k] as MemberCase;
        check(a.name === w.name && a.size === w.data.length, `peekAhead found ${a.name} instead of ${w.name}`);
        check((await reader.peekData(a, a.size))?.equals(w.data) === true, `peekData of ${a.name}`);
      }
    }
    if (m.read) check((await readData(reader, member.size, sizes)).equals(m.data), `data of ${m.name}`);
  }
  expect(await reader.next()).toBeNull();
  expect(await reader.next()).toBeNull();
}

describe("outer archive: writer → OuterReader", () => {
  it("round-trips random member names, sizes and data", async () => {
    await fc.assert(fc.asyncProperty(membersArb(NAME_CHARS), readSizesArb, expectRoundTrip), {
      numRuns: ROUND_TRIP_RUNS,
    });
  });

  // The writer refuses what the reader refuses (a space included), so this holds for any name.
  it("reads back every name the writer accepts, spaces offered too", async () => {
    const withSpace = [...NAME_CHARS, " "];
    const example: MemberCase = {
      name: "vm1/my file.img.000.enc",
      data: Buffer.from("x"),
      cuts: [],
      pax: false,
      read: true,
      peek: 0,
    };
    await fc.assert(
      fc.asyncProperty(membersArb(withSpace), readSizesArb, async (members, sizes) => {
        // Names the writer refuses are out of scope: only what it writes must read back.
        const accepted = members.filter((m) => writerAccepts(m.name));
        fc.pre(accepted.length > 0);
        await expectRoundTrip(accepted, sizes);
      }),
      { numRuns: LIMIT_RUNS, examples: [[[example], [1]]] },
    );
  });

  it("refuses a member one byte over its size limit before reading its data", async () => {
    const arb = fc.record({ members: membersArb(NAME_CHARS), which: fc.nat() });
    await fc.assert(
      fc.asyncProperty(arb, async ({ members, which }) => {
        const victim = members[which % members.length] as MemberCase;
        fc.pre(victim.data.length > 0);
        const archive = await writeOuter(members);
        const exact = limitsOf(members);
        const reader = new OuterReader(memorySource(archive), (name) =>
          name === victim.name ? victim.data.length - 1 : exact(name),
        );
        let err: unknown;
        try {
          for (let m = await reader.next(); m !== null; m = await reader.next()) check(m.name !== victim.name, m.name);
        } catch (e) {
          err = e;
        }
        expect(err).toBeInstanceOf(QbackupError);
        expect((err as QbackupError).code).toBe("ERR_TAR_MALFORMED");
        expect((err as QbackupError).message).toContain(victim.name);
      }),
      { numRuns: LIMIT_RUNS },
    );
  });
});

// ---- mutations ----

type Edit =
  | { kind: "set"; at: number; byte: number; fixChecksum: boolean }
  | { kind: "delete"; at: number; length: number }
  | { kind: "truncate"; at: number };

const editArb: fc.Arbitrary<Edit> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant("set" as const),
      at: fc.nat(),
      byte: fc.oneof(fc.constantFrom(0x00, 0x20, 0x2e, 0x2f, 0x30, 0x37, 0x78, 0x67, 0x80, 0xff), fc.nat(255)),
      fixChecksum: fc.boolean(),
    }),
  },
  fc.record({ kind: fc.constant("delete" as const), at: fc.nat(), length: fc.constantFrom(1, 3, BLOCK_SIZE) }),
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
    } else if (e.kind === "delete") {
      b = Buffer.concat([b.subarray(0, at), b.subarray(at + e.length)]);
    } else {
      b = b.subarray(0, at);
    }
  }
  return b;
}

describe("outer archive: mutations", () => {
  it("edited archives give members that are in the input, or a QbackupError", async () => {
    const arb = fc.record({
      members: membersArb(NAME_CHARS),
      edits: fc.array(editArb, { minLength: 1, maxLength: MAX_EDITS }),
      sizes: readSizesArb,
    });
    await fc.assert(
      fc.asyncProperty(arb, async ({ members, edits, sizes }) => {
        const archive = applyEdits(await writeOuter(members), edits);
        const reader = new OuterReader(memorySource(archive), () => GENEROUS_LIMIT);
        const seen = new Set<string>();
        try {
          for (let m = await reader.next(); m !== null; m = await reader.next()) {
            check(!seen.has(m.name), `${m.name} returned twice`);
            seen.add(m.name);
            // A member whose data the input does not hold must fail in read(), never come back short.
            const data = await readData(reader, m.size, sizes);
            check(data.equals(archive.subarray(m.offset, m.offset + m.size)), `data of ${m.name} not at its offset`);
            check(seen.size <= archive.length / BLOCK_SIZE, "more members than blocks");
          }
        } catch (err) {
          if (!(err instanceof QbackupError)) throw err;
          expect(["ERR_TAR_MALFORMED", "ERR_UNSAFE_PATH", "ERR_MISSING"]).toContain(err.code);
        }
      }),
      { numRuns: MUTATION_RUNS },
    );
  });
});
