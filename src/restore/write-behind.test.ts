import { randomBytes } from "node:crypto";
import * as fs from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { QbackupError } from "../errors.js";
import { WriteBehind } from "./write-behind.js";

let dir: string;
beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "qbackup-write-behind-"));
});
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

/** A real file handle whose writes are counted while they run. */
function watched(handle: FileHandle) {
  const seen = { running: 0, mostRunning: 0, bytes: 0, mostBytes: 0, completed: 0 };
  const spy = {
    write: async (data: Uint8Array, offset: number, length: number, position: number) => {
      seen.running++;
      seen.bytes += length;
      seen.mostRunning = Math.max(seen.mostRunning, seen.running);
      seen.mostBytes = Math.max(seen.mostBytes, seen.bytes);
      try {
        return await handle.write(data, offset, length, position);
      } finally {
        seen.running--;
        seen.bytes -= length;
        seen.completed++;
      }
    },
  };
  return { handle: spy as unknown as FileHandle, seen };
}

describe("WriteBehind", () => {
  it("writes every piece at its position, one at a time, without making the caller wait until its bound is queued", async () => {
    const file = path.join(dir, "out.img");
    const handle = await fs.open(file, "wx");
    const content = randomBytes(3 * 1024 * 1024);
    const { handle: spy, seen } = watched(handle);
    const writes = new WriteBehind(spy, file, 256 * 1024);
    // out of order, in 64 KiB pieces, each a view that is not touched again
    const order = Array.from({ length: content.length / 65536 }, (_, i) => (i * 17) % 48);
    let queuedBeforeAnyWritten = 0;
    for (const i of order) {
      await writes.write(content.subarray(i * 65536, (i + 1) * 65536), i * 65536);
      if (seen.completed === 0) queuedBeforeAnyWritten++;
    }
    await writes.drain();
    await handle.close();
    expect((await fs.readFile(file)).equals(content)).toBe(true);
    expect(queuedBeforeAnyWritten).toBe(4); // 4 × 64 KiB fill the bound; the fifth waits for the first
    expect(seen.mostRunning).toBe(1);
    expect(seen.completed).toBe(48);
  });

  it("takes a piece larger than its bound, alone", async () => {
    const file = path.join(dir, "big");
    const handle = await fs.open(file, "wx");
    const { handle: spy, seen } = watched(handle);
    const writes = new WriteBehind(spy, file, 1000);
    const big = randomBytes(50_000);
    await writes.write(big.subarray(0, 10), 0);
    await writes.write(big.subarray(10), 10);
    await writes.drain();
    await handle.close();
    expect((await fs.readFile(file)).equals(big)).toBe(true);
    expect(seen.mostRunning).toBe(1);
  });

  it("throws the first failure (a full disk) from the next write or from drain, naming the file; settle() does not throw", async () => {
    const handle = await fs.open("/dev/full", "w");
    try {
      const writes = new WriteBehind(handle, "vm/private.img");
      await writes.write(randomBytes(1000), 0); // started, fails on its way
      await writes.settle();
      const next = writes.write(randomBytes(10), 1000);
      await expect(next).rejects.toThrow(QbackupError);
      await expect(next).rejects.toMatchObject({ code: "ERR_DEST_FULL" });
      await expect(writes.drain()).rejects.toThrow("no space left writing vm/private.img");
      await expect(writes.settle()).resolves.toBeUndefined();
    } finally {
      await handle.close();
    }
  });
});
