/**
 * A volume (regular file or block device) as an inner archive: pax + GNU sparse 1.0, the form
 * Qubes' own tar writer produces (spec §4.3 b). The sparse map precedes the data, so the holes
 * are found first: asked of the filesystem where it can tell (SEEK_DATA, as GNU tar does; then
 * zeros inside allocated data stay data), else by reading the whole source for zero blocks, in
 * which case it is read twice.
 */
import * as fs from "node:fs/promises";
import { HoleScanner, volumeArchiveHeader, volumeArchiveTrailer } from "../../codec/tar/index.js";
import type { Region } from "../../codec/tar/index.js";
import { QbackupError } from "../../errors.js";
import { seekDataRegions } from "../../runtime/seek-data.js";
import { sourceError } from "../plan.js";
import type { PlannedVolume } from "../plan.js";

/** Filesystem block size: finer holes are rare in disk images and would only grow the map. */
export const HOLE_GRANULARITY = 4096;
const READ_SIZE = 1024 * 1024;

export interface SourceProgress {
  /** Bytes looked at while searching for holes. */
  scanned(bytes: number): void;
  /** Bytes of data put into the archive. */
  read(bytes: number): void;
}

export async function* volumeArchive(volume: PlannedVolume, progress: SourceProgress): AsyncGenerator<Buffer> {
  const handle = await fs.open(volume.path, "r").catch((err: unknown) => {
    throw sourceError(err, volume.path);
  });
  try {
    const st = await handle.stat();
    const spec = {
      name: volume.fileBase,
      realSize: volume.realSize,
      regions:
        (volume.holeSearch === "filesystem"
          ? seekDataRegions(handle.fd, volume.realSize, HOLE_GRANULARITY)
          : undefined) ?? (await findDataRegions(handle, volume, progress)),
      mode: volume.isBlockDevice ? 0o644 : st.mode & 0o7777,
      mtime: Math.floor(st.mtimeMs / 1000),
    };
    yield volumeArchiveHeader(spec);
    for (const region of spec.regions) {
      yield* readRegion(handle, volume, region, progress);
    }
    yield volumeArchiveTrailer(spec);
  } finally {
    await handle.close();
  }
}

async function findDataRegions(
  handle: fs.FileHandle,
  volume: PlannedVolume,
  progress: SourceProgress,
): Promise<readonly Region[]> {
  const scanner = new HoleScanner(HOLE_GRANULARITY);
  const buffer = Buffer.allocUnsafe(READ_SIZE);
  for (let pos = 0; pos < volume.realSize;) {
    const want = Math.min(READ_SIZE, volume.realSize - pos);
    const n = await readAt(handle, volume, buffer, want, pos);
    scanner.push(buffer.subarray(0, n));
    pos += n;
    progress.scanned(n);
  }
  return scanner.finish();
}

async function* readRegion(
  handle: fs.FileHandle,
  volume: PlannedVolume,
  region: Region,
  progress: SourceProgress,
): AsyncGenerator<Buffer> {
  for (let done = 0; done < region.length;) {
    // a fresh buffer each time: downstream stages may still hold the previous one
    const want = Math.min(READ_SIZE, region.length - done);
    const piece = Buffer.allocUnsafe(want);
    const n = await readAt(handle, volume, piece, want, region.offset + done);
    done += n;
    progress.read(n);
    yield n === want ? piece : piece.subarray(0, n);
  }
}

async function readAt(
  handle: fs.FileHandle,
  volume: PlannedVolume,
  buffer: Buffer,
  length: number,
  position: number,
): Promise<number> {
  const { bytesRead } = await handle.read(buffer, 0, length, position).catch((err: unknown) => {
    throw sourceError(err, volume.path);
  });
  if (bytesRead === 0) {
    throw new QbackupError(
      "ERR_INPUT",
      `source ${volume.path} shrank while it was being backed up (at byte ${position})`,
    );
  }
  return bytesRead;
}
