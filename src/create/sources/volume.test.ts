import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { PlannedVolume } from "../plan.js";
import { volumeArchive } from "./volume.js";

const KiB = 1024;
const MiB = 1024 * KiB;
const SIZE = 4 * MiB;

let dir: string;
let image: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "qb-volume-"));
  image = path.join(dir, "private.img");
  // holes, then at 1 MiB: 4 KiB of data, 4 KiB of written (allocated) zeros, 4 KiB of data
  const fd = fs.openSync(image, "w");
  fs.ftruncateSync(fd, SIZE);
  fs.writeSync(
    fd,
    Buffer.concat([Buffer.alloc(4 * KiB, 7), Buffer.alloc(4 * KiB), Buffer.alloc(4 * KiB, 9)]),
    0,
    12 * KiB,
    MiB,
  );
  fs.closeSync(fd);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

async function archive(holeSearch: PlannedVolume["holeSearch"]) {
  const volume: PlannedVolume = {
    kind: "volume",
    fileBase: "vm1/private.img",
    volume: "private",
    path: image,
    realSize: SIZE,
    isBlockDevice: false,
    holeSearch,
    estimate: 12 * KiB,
  };
  let scanned = 0;
  let read = 0;
  const parts: Buffer[] = [];
  for await (const part of volumeArchive(volume, { scanned: (n) => (scanned += n), read: (n) => (read += n) })) {
    parts.push(part);
  }
  return { archive: Buffer.concat(parts), scanned, read };
}

/** What GNU tar extracts from `archive`: the bytes and the allocated size of the volume. */
function extracted(archive: Buffer, name: string): { bytes: Buffer; allocated: number } {
  const out = path.join(dir, name);
  fs.mkdirSync(out);
  const r = spawnSync("tar", ["-x", "-C", out], { input: archive });
  expect(r.status, r.stderr?.toString()).toBe(0);
  const file = path.join(out, "vm1/private.img");
  return { bytes: fs.readFileSync(file), allocated: fs.statSync(file).blocks * 512 };
}

describe("volumeArchive", () => {
  it("asks the filesystem where the data is: holes are never read, written zeros stay data", async () => {
    const { archive: a, scanned, read } = await archive("filesystem");
    expect({ scanned, read }).toEqual({ scanned: 0, read: 12 * KiB });
    const out = extracted(a, "fs");
    expect(out.bytes.equals(fs.readFileSync(image))).toBe(true);
    expect(out.allocated).toBe(12 * KiB);
  });

  it("reading for zero blocks reads the whole volume and leaves written zeros out as holes", async () => {
    const { archive: a, scanned, read } = await archive("read");
    expect({ scanned, read }).toEqual({ scanned: SIZE, read: 8 * KiB });
    const out = extracted(a, "scan");
    expect(out.bytes.equals(fs.readFileSync(image))).toBe(true);
    expect(out.allocated).toBe(8 * KiB);
  });
});
