import { randomBytes } from "node:crypto";
import * as fs from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { QbackupError } from "../errors.js";
import { SLAB_BYTES, VolumeWriter } from "./volume-writer.js";

const KiB = 1024;
const MiB = 1024 * KiB;

let dir: string;
beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "qbackup-volume-writer-"));
});
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

/** Pieces of random data at ascending offsets with gaps of every kind, and the file they make. */
function layout(size: number, seed: number) {
  let state = seed;
  const next = (n: number) => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state % n;
  };
  const expected = Buffer.alloc(size);
  const pieces: Array<{ data: Buffer; position: number }> = [];
  const gaps = [0, 0, 0, 1, 100, 511, 4095, 4096, 5000, 64 * KiB, 3 * MiB];
  for (let at = next(3 * 4096); ;) {
    const length = 1 + next(2 * MiB);
    if (at + length > size) break;
    const data = randomBytes(length);
    data.copy(expected, at);
    pieces.push({ data, position: at });
    at += length + gaps[next(gaps.length)]!;
  }
  return { pieces, expected };
}

async function writeAll(
  writer: VolumeWriter,
  handle: FileHandle,
  pieces: ReturnType<typeof layout>["pieces"],
  size: number,
) {
  for (const { data, position } of pieces) await writer.write(data, position);
  await writer.drain();
  await handle.truncate(size);
}

/** A real file handle whose writes are counted while they run. */
function watched(handle: FileHandle) {
  const seen = { running: 0, mostRunning: 0, completed: 0, lengths: [] as number[], positions: [] as number[] };
  const spy = {
    stat: () => handle.stat(),
    write: async (data: Uint8Array, offset: number, length: number, position: number) => {
      seen.running++;
      seen.mostRunning = Math.max(seen.mostRunning, seen.running);
      seen.lengths.push(length);
      seen.positions.push(position);
      try {
        return await handle.write(data, offset, length, position);
      } finally {
        seen.running--;
        seen.completed++;
      }
    },
  };
  return { handle: spy as unknown as FileHandle, seen };
}

describe("VolumeWriter", () => {
  it("writes pieces with gaps of every size into the file they make, past the page cache where the filesystem allows", async () => {
    const size = 40 * MiB + 123;
    const { pieces, expected } = layout(size, 7);
    const file = path.join(dir, "out.img");
    const handle = await fs.open(file, "wx");
    const writer = await VolumeWriter.open(handle, file);
    // the temporary directory here (ext4, or tmpfs since Linux 6.6) takes O_DIRECT
    expect(writer.directIO).toBe(true);
    await writeAll(writer, handle, pieces, size);
    expect(writer.directIO).toBe(true);
    await writer.release();
    await handle.close();
    expect((await fs.readFile(file)).equals(expected)).toBe(true);
  });

  it("leaves gaps of a block or more as holes", async () => {
    const file = path.join(dir, "sparse.img");
    const handle = await fs.open(file, "wx");
    const writer = await VolumeWriter.open(handle, file);
    const size = 256 * MiB;
    await writer.write(randomBytes(10), 5);
    await writer.write(randomBytes(8 * KiB), 100 * MiB + 1);
    await writer.write(randomBytes(3), size - 3);
    await writer.drain();
    await handle.truncate(size);
    await writer.release();
    const stat = await handle.stat();
    await handle.close();
    expect(stat.size).toBe(size);
    expect(stat.blocks * 512).toBeLessThanOrEqual(64 * KiB); // three or four data blocks, not 256 MiB
  });

  it("falls back to the page cache, bytes unchanged, when a direct write is refused (EINVAL: memory not aligned)", async () => {
    const size = 20 * MiB + 5;
    const { pieces, expected } = layout(size, 11);
    const file = path.join(dir, "fallback.img");
    const handle = await fs.open(file, "wx");
    const staging = new Uint8Array(new ArrayBuffer(3 * SLAB_BYTES + 4096), 1, 3 * SLAB_BYTES);
    const writer = await VolumeWriter.open(handle, file, { staging });
    expect(writer.directIO).toBe(true);
    await writeAll(writer, handle, pieces, size);
    expect(writer.directIO).toBe(false);
    await writer.release();
    await handle.close();
    expect((await fs.readFile(file)).equals(expected)).toBe(true);
  });

  it("without direct I/O: slabs of aligned runs, one write at a time, the caller held only when every slab is taken", async () => {
    const file = path.join(dir, "buffered.img");
    const handle = await fs.open(file, "wx");
    const { handle: spy, seen } = watched(handle);
    const writer = await VolumeWriter.open(spy, file, { direct: false });
    expect(writer.directIO).toBe(false);
    const content = randomBytes(6 * SLAB_BYTES + 1000);
    let returnedBeforeAnyWritten = 0;
    for (let at = 0; at < content.length; at += 64 * KiB) {
      await writer.write(content.subarray(at, at + 64 * KiB), at);
      if (seen.completed === 0) returnedBeforeAnyWritten++;
    }
    await writer.drain();
    await handle.truncate(content.length);
    await writer.release();
    await handle.close();
    expect((await fs.readFile(file)).equals(content)).toBe(true);
    expect(seen.mostRunning).toBe(1);
    // three slabs: the caller fills all three before it waits for the first write
    expect(returnedBeforeAnyWritten).toBeGreaterThanOrEqual((3 * SLAB_BYTES) / (64 * KiB) - 1);
    expect(returnedBeforeAnyWritten).toBeLessThanOrEqual((3 * SLAB_BYTES) / (64 * KiB));
    expect(seen.lengths).toEqual([...Array(6).fill(SLAB_BYTES), 4096]);
    expect(seen.positions.every((p) => p % 4096 === 0)).toBe(true);
  });

  it("refuses a write before the end of the last one", async () => {
    const file = path.join(dir, "order.img");
    const handle = await fs.open(file, "wx");
    const writer = await VolumeWriter.open(handle, file);
    await writer.write(randomBytes(100), 1000);
    await expect(writer.write(randomBytes(10), 1050)).rejects.toMatchObject({ code: "ERR_INTERNAL" });
    await writer.release();
    await handle.close();
  });

  it("throws the first failure (a full disk) from the next write or from drain, naming the file; settle() does not throw", async () => {
    const handle = await fs.open("/dev/full", "w");
    try {
      const writer = await VolumeWriter.open(handle, "vm/private.img", { direct: false });
      await writer.write(randomBytes(SLAB_BYTES), 0); // fills a slab, written (and failing) once the next piece comes
      await writer.write(randomBytes(10), SLAB_BYTES);
      await writer.settle();
      const next = writer.write(randomBytes(10), SLAB_BYTES + 10);
      await expect(next).rejects.toThrow(QbackupError);
      await expect(next).rejects.toMatchObject({ code: "ERR_DEST_FULL" });
      await expect(writer.drain()).rejects.toThrow("no space left writing vm/private.img");
      await expect(writer.settle()).resolves.toBeUndefined();
      await writer.release();
    } finally {
      await handle.close();
    }
  });
});
