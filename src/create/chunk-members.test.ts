import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { open as openContainer } from "../codec/scrypt/index.js";
import { chunkPassphraseString } from "../format/names.js";
import type { BackupSink } from "../transport/sink.js";
import { ChunkBuffer } from "./chunk.js";
import { MAX_WAITING_BYTES, writeChunkMembers } from "./chunk-members.js";
import { OuterArchiveWriter } from "./outer.js";
import { ChunkSealer } from "./seal.js";

const ID = "20261122T120000-42";
const PASS = "chunk members test";
const BASE = "vm1/private.img";
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "qb-members-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Bytes in memory; with `seekable`, writeAt() overwrites earlier bytes like a file. */
function memorySink(seekable: boolean): BackupSink & { bytes(): Buffer } {
  const parts: Buffer[] = [];
  const sink: BackupSink & { bytes(): Buffer } = {
    location: "memory",
    async write(data) {
      parts.push(Buffer.from(data));
    },
    async commit() {},
    async abort() {},
    bytes: () => Buffer.concat(parts),
  };
  if (seekable) {
    sink.writeAt = async (position, data) => {
      const all = Buffer.concat(parts);
      expect(position + data.length).toBeLessThanOrEqual(all.length);
      Buffer.from(data).copy(all, position);
      parts.splice(0, parts.length, all);
    };
  }
  return sink;
}

async function* piecesOf(data: Buffer, sizes: number[]): AsyncGenerator<Buffer> {
  let off = 0;
  for (let i = 0; off < data.length; i++) {
    const n = sizes[i % sizes.length]!;
    yield Buffer.from(data.subarray(off, off + n)); // fresh, as the compressors give them
    off += n;
  }
}

/** Writes `data` as chunk members; extracts them with GNU tar and opens each container. */
async function roundTrip(seekable: boolean, data: Buffer, chunkSize: number, sizes: number[], logN = 10) {
  const chunkCount = Math.max(1, Math.ceil(data.length / chunkSize));
  const sink = memorySink(seekable);
  const outer = new OuterArchiveWriter(sink, 1_700_000_000);
  const sealer = new ChunkSealer(ID, PASS, { logN, r: 8, p: 1 }, 2);
  const events: Array<[string, number]> = [];
  const result = await writeChunkMembers(piecesOf(data, sizes), {
    fileBase: BASE,
    chunkSize,
    sealer,
    outer,
    chunkBuffer: new ChunkBuffer(chunkSize),
    onData: (index) => sealer.prepareAhead(BASE, index, 2, chunkCount),
    onMember: (name, size) => events.push([name, size]),
  });
  const dir = fs.mkdtempSync(path.join(tmp, "x-"));
  const r = spawnSync("tar", ["-x", "-i", "-C", dir], { input: sink.bytes(), maxBuffer: 256 * 1024 * 1024 });
  expect(r.status, r.stderr.toString()).toBe(0);
  const plain: Buffer[] = [];
  for (const [i, [name, size]] of events.entries()) {
    expect(name).toBe(`${BASE}.${String(i).padStart(3, "0")}.enc`);
    const container = fs.readFileSync(path.join(dir, name));
    expect(container.length).toBe(size);
    plain.push(await openContainer(container, chunkPassphraseString(ID, BASE, i, PASS)));
  }
  return {
    result,
    events,
    plain: Buffer.concat(plain),
    sizes: plain.map((p) => p.length),
    derivations: sealer.derivations,
  };
}

const data = (n: number) => {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + (i >> 9)) & 0xff;
  return b;
};

describe("writeChunkMembers", () => {
  for (const seekable of [true, false]) {
    const how = seekable ? "streamed to a seekable sink" : "buffered for a pipe";
    it(`${how}: GNU tar reads every member and the containers give back the stream`, async () => {
      const input = data(10_000);
      const { result, plain, sizes, derivations } = await roundTrip(seekable, input, 4096, [1000, 7, 5000]);
      expect(plain.equals(input)).toBe(true);
      expect(sizes).toEqual([4096, 4096, 1808]);
      expect(result.chunks).toBe(3);
      expect(derivations).toBe(3); // one KDF per chunk, however many pieces arrive after it was opened
    });

    it(`${how}: an exact multiple adds no empty chunk; an empty stream is one empty chunk`, async () => {
      const exact = await roundTrip(seekable, data(8192), 4096, [3000]);
      expect(exact.sizes).toEqual([4096, 4096]);
      const empty = await roundTrip(seekable, Buffer.alloc(0), 4096, [1]);
      expect(empty.sizes).toEqual([0]);
      expect(empty.events).toHaveLength(1);
    });
  }

  it("streamed: more than MAX_WAITING_BYTES while the first key is derived still comes out whole", async () => {
    const input = data(MAX_WAITING_BYTES + 3 * 1024 * 1024);
    const { plain, sizes } = await roundTrip(true, input, 12 * 1024 * 1024, [1024 * 1024], 14);
    expect(plain.equals(input)).toBe(true);
    expect(sizes).toEqual([12 * 1024 * 1024, input.length - 12 * 1024 * 1024]);
  });
});
