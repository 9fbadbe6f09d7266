/**
 * The CPU floor of a create: the work no implementation of the format can skip at given settings,
 * each part timed on one core of this machine, then spread over every core. One KDF per container
 * (header, qubes.xml, every chunk), deflate of the compressible data at the chosen level by the
 * compressor qbackup uses (what qbackup's rule stores as is costs nothing here), AES-256-CTR +
 * HMAC-SHA256 over the backup's bytes. Reading the sources, writing the backup and the program
 * itself are left out, so no create on these cores can be faster than this; the bench prints how
 * close qbackup gets.
 */
import { createCipheriv, createHmac, randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { scryptKdf } from "../src/codec/scrypt/kdf.js";
import { HoleScanner } from "../src/codec/tar/index.js";
import type { Region } from "../src/codec/tar/index.js";
import { looksIncompressible } from "../src/create/entropy.js";
import { GZIP_BLOCK_SIZE } from "../src/create/parallel-gzip.js";
import { HOLE_GRANULARITY } from "../src/create/sources/volume.js";
import { blockGzip } from "../src/runtime/block-gzip.js";
import { seekDataRegions } from "../src/runtime/seek-data.js";

export interface CreateFloorInput {
  image: string;
  files: string;
  logN: number;
  gzipLevel: number;
  /** scrypt containers in the backup (= key derivations). */
  containers: number;
  /** Bytes of the backup, all of which are encrypted and authenticated. */
  backupBytes: number;
  cores: number;
}

export interface CreateFloor {
  kdfSeconds: number;
  gzipSeconds: number;
  sealSeconds: number;
  coreSeconds: number;
  /** coreSeconds / cores: the shortest a create can take here. */
  seconds: number;
}

const seconds = (work: () => void): number => {
  const started = process.cpuUsage();
  work();
  const used = process.cpuUsage(started);
  return (used.user + used.system) / 1e6;
};

/** The image's data regions, as create finds them (from the filesystem, else by reading for zero blocks). */
function imageRegions(fd: number, size: number): Region[] {
  const asked = seekDataRegions(fd, size, HOLE_GRANULARITY);
  if (asked !== undefined) return asked;
  const scanner = new HoleScanner(HOLE_GRANULARITY);
  const piece = Buffer.allocUnsafe(GZIP_BLOCK_SIZE);
  for (let pos = 0; pos < size; pos += GZIP_BLOCK_SIZE) {
    const n = fs.readSync(fd, piece, 0, Math.min(GZIP_BLOCK_SIZE, size - pos), pos);
    scanner.push(piece.subarray(0, n));
  }
  return scanner.finish();
}

/** The image's data in pieces of up to 1 MiB, then the small files gathered into 1 MiB blocks. */
function* dataBlocks(image: string, files: string): Generator<Buffer> {
  const fd = fs.openSync(image, "r");
  try {
    for (const region of imageRegions(fd, fs.fstatSync(fd).size)) {
      for (let done = 0; done < region.length; done += GZIP_BLOCK_SIZE) {
        const piece = Buffer.allocUnsafe(Math.min(GZIP_BLOCK_SIZE, region.length - done));
        fs.readSync(fd, piece, 0, piece.length, region.offset + done);
        yield piece;
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  let block: Buffer[] = [];
  let filled = 0;
  for (const d of fs.readdirSync(files).sort()) {
    for (const f of fs.readdirSync(path.join(files, d)).sort()) {
      const content = fs.readFileSync(path.join(files, d, f));
      block.push(content);
      filled += content.length;
      if (filled >= GZIP_BLOCK_SIZE) {
        yield Buffer.concat(block);
        block = [];
        filled = 0;
      }
    }
  }
  if (filled > 0) yield Buffer.concat(block);
}

export async function measureCreateFloor(input: CreateFloorInput): Promise<CreateFloor> {
  // the best of three, with the KDF qbackup uses: a floor is what the machine can do, not what it did while busy elsewhere
  const kdf = scryptKdf();
  let kdfOne = Infinity;
  for (let round = 0; round < 3; round++) {
    const start = performance.now();
    await kdf.derive(Buffer.from("floor"), randomBytes(32), { logN: input.logN, r: 8, p: 1 }, 64, 2 ** 31);
    kdfOne = Math.min(kdfOne, (performance.now() - start) / 1000);
  }
  const gzip = blockGzip(); // the compressor qbackup uses
  let gzipSeconds = 0;
  for (const block of dataBlocks(input.image, input.files)) {
    if (!looksIncompressible(block)) gzipSeconds += seconds(() => gzip.gzipSync(block, input.gzipLevel));
  }
  const piece = randomBytes(GZIP_BLOCK_SIZE);
  const sealSeconds = seconds(() => {
    const cipher = createCipheriv("aes-256-ctr", randomBytes(32), Buffer.alloc(16));
    const mac = createHmac("sha256", randomBytes(32));
    for (let done = 0; done < input.backupBytes; done += piece.length) mac.update(cipher.update(piece));
    mac.digest();
  });
  const kdfSeconds = kdfOne * input.containers;
  const coreSeconds = kdfSeconds + gzipSeconds + sealSeconds;
  return { kdfSeconds, gzipSeconds, sealSeconds, coreSeconds, seconds: coreSeconds / input.cores };
}
