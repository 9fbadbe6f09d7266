/**
 * gunzip(): libdeflate member by member where it can, node:zlib from the first member it cannot
 * take; the output, and every error, must be what node:zlib alone gives for the same bytes.
 */
import { createHash, randomBytes } from "node:crypto";
import { createGunzip, gzipSync } from "node:zlib";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { blockGzip } from "./block-gzip.js";
import { gunzip, loadLibdeflateGunzip, memberGunzip } from "./gunzip.js";
import type { GunzipStats } from "./gunzip.js";
import { through } from "./streams.js";

const library = loadLibdeflateGunzip();
const MiB = 1024 * 1024;

const text = (n: number, seed = 0) => {
  const words = ["tar", "qube", "backup", "chunk", "scrypt", "member", "volume", "sparse"];
  const parts: string[] = [];
  let x = seed + 1;
  let length = 0;
  while (length < n) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    const w = `${words[x % words.length]}${x % 7} `;
    parts.push(w);
    length += w.length;
  }
  return Buffer.from(parts.join("")).subarray(0, n);
};

/** What qbackup writes: 1 MiB blocks, each its own member, random ones stored. */
function qbackupStream(data: Buffer): Buffer {
  const members: Buffer[] = [];
  for (let off = 0; off < data.length; off += MiB) members.push(blockGzip().gzipSync(data.subarray(off, off + MiB), 1));
  return Buffer.concat(members);
}

async function* pieces(data: Buffer, sizes: number[]): AsyncGenerator<Buffer> {
  let i = 0;
  for (let off = 0; off < data.length; i++) {
    const n = Math.max(1, sizes[i % sizes.length]!);
    yield data.subarray(off, off + n);
    off += n;
  }
}

/** The output (as its length and SHA-256: comparing megabytes byte by byte in expect() is slow) or the error. */
type Outcome = { output: string } | { error: string };

const digest = (data: Buffer) => `${data.length} bytes, sha256 ${createHash("sha256").update(data).digest("hex")}`;

async function outcome(stream: AsyncIterable<Buffer>): Promise<Outcome> {
  const hash = createHash("sha256");
  let length = 0;
  try {
    for await (const p of stream) {
      hash.update(p);
      length += p.length;
    }
    return { output: `${length} bytes, sha256 ${hash.digest("hex")}` };
  } catch (err) {
    return { error: (err as Error).message };
  }
}

/** node:zlib alone, as restore decompressed before. */
const zlibOnly = (data: Buffer, sizes: number[]) => outcome(through(pieces(data, sizes), createGunzip()));

it("libdeflate is what restore uses where it is installed (CI installs libdeflate0)", () => {
  if (process.env.CI !== undefined) expect(library).not.toBeNull();
  expect(memberGunzip()?.name).toBe(library?.name);
});

describe.runIf(library !== null)("gunzip with libdeflate", () => {
  it("takes qbackup's members one by one, whatever the pieces they arrive in", async () => {
    // random data is stored: 10 MiB of members, so the staging buffer fills and is compacted several times
    const data = Buffer.concat([text(2 * MiB + 12345), randomBytes(10 * MiB + 7), text(300_000, 3)]);
    const stream = qbackupStream(data);
    for (const sizes of [[MiB], [3 * MiB], [7777, 1, 65536, 2 * MiB + 3], [stream.length]]) {
      const stats: GunzipStats = { members: 0 };
      const got = await outcome(gunzip(pieces(stream, sizes), { members: library, stats }));
      expect(got).toEqual({ output: digest(data) });
      expect(stats).toEqual({ members: Math.ceil(data.length / MiB) }); // every member by libdeflate, zlib never
    }
  });

  it("hands a member larger than a block (the stock writer's one big member) and all after it to zlib", async () => {
    const big = text(3 * MiB, 5);
    const small = text(200_000, 6);
    const stream = Buffer.concat([qbackupStream(small), gzipSync(big), qbackupStream(small)]);
    const stats: GunzipStats = { members: 0 };
    const got = await outcome(gunzip(pieces(stream, [100_000]), { members: library, stats }));
    expect(got).toEqual({ output: digest(Buffer.concat([small, big, small])) });
    expect(stats).toEqual({ members: 1, zlibFrom: qbackupStream(small).length });
  });

  it("hands a member with optional header fields (a file name) to zlib", async () => {
    const data = text(50_000, 9);
    const plain = gzipSync(data);
    // FLG.FNAME with a name after the 10-byte header
    const named = Buffer.concat([
      plain.subarray(0, 3),
      Buffer.from([0x08]),
      plain.subarray(4, 10),
      Buffer.from("x.tar\0"),
      plain.subarray(10),
    ]);
    const stats: GunzipStats = { members: 0 };
    expect(await outcome(gunzip(pieces(named, [999]), { members: library, stats }))).toEqual({ output: digest(data) });
    expect(stats).toEqual({ members: 0, zlibFrom: 0 });
  });

  it.each([
    ["empty", Buffer.alloc(0)],
    ["truncated in the last member", qbackupStream(text(1_500_000, 1)).subarray(0, -9)],
    [
      "cut right after a member header",
      Buffer.concat([qbackupStream(text(10_000)), gzipSync(Buffer.from("x")).subarray(0, 10)]),
    ],
    ["trailing zeros after the members", Buffer.concat([qbackupStream(text(40_000)), Buffer.alloc(1000)])],
    ["trailing garbage after the members", Buffer.concat([qbackupStream(text(40_000)), Buffer.from("garbage")])],
    ["a lone 0x1f after the members", Buffer.concat([qbackupStream(text(40_000)), Buffer.from([0x1f])])],
    ["not gzip at all", text(5000)],
    [
      "a member whose CRC is wrong",
      (() => {
        const m = qbackupStream(text(70_000, 2));
        m[m.length - 6]! ^= 0x40;
        return m;
      })(),
    ],
  ])("%s: the same output or error as zlib alone", async (_name, stream) => {
    for (const sizes of [[stream.length || 1], [4096, 1, 333]]) {
      const want = await zlibOnly(stream, sizes);
      expect(await outcome(gunzip(pieces(stream, sizes), { members: library }))).toEqual(want);
    }
  });

  it("gives what zlib alone gives for any mix of members, garbage and cuts, in any pieces", async () => {
    const member = fc.oneof(
      fc.integer({ min: 0, max: 300_000 }).map((n) => qbackupStream(text(n, n))),
      fc.integer({ min: 0, max: 3000 }).map((n) => gzipSync(randomBytes(n), { level: 0 })),
      fc.constant(Buffer.alloc(30)),
      fc.uint8Array({ minLength: 1, maxLength: 40 }).map((b) => Buffer.from(b)),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.array(member, { minLength: 0, maxLength: 5 }),
        fc.option(fc.nat(), { nil: undefined }),
        fc.array(fc.integer({ min: 1, max: 400_000 }), { minLength: 1, maxLength: 5 }),
        async (members, cut, sizes) => {
          let stream = Buffer.concat(members);
          if (cut !== undefined && stream.length > 0) stream = stream.subarray(0, cut % stream.length);
          expect(await outcome(gunzip(pieces(stream, sizes), { members: library }))).toEqual(
            await zlibOnly(stream, sizes),
          );
        },
      ),
      { numRuns: 60 },
    );
  });

  it("stops reading its input when the reader stops early, and lets the member in flight finish", async () => {
    const stream = qbackupStream(randomBytes(5 * MiB)); // stored: 5 MiB of members
    let closed = false;
    let pulled = 0;
    async function* source(): AsyncGenerator<Buffer> {
      try {
        for await (const p of pieces(stream, [256 * 1024])) {
          pulled += p.length;
          yield p;
        }
      } finally {
        closed = true;
      }
    }
    for await (const out of gunzip(source(), { members: library })) {
      expect(out.length).toBe(MiB);
      break;
    }
    expect(closed).toBe(true);
    expect(pulled).toBeLessThan(stream.length);
  });
});

describe("gunzip without libdeflate", () => {
  it("is zlib's streaming gunzip", async () => {
    const data = Buffer.concat([text(MiB + 5), randomBytes(1000)]);
    const stream = qbackupStream(data);
    expect(await outcome(gunzip(pieces(stream, [70_000]), { members: null }))).toEqual({ output: digest(data) });
    expect(await outcome(gunzip(pieces(stream.subarray(0, -1), [70_000]), { members: null }))).toEqual(
      await zlibOnly(stream.subarray(0, -1), [70_000]),
    );
  });
});
