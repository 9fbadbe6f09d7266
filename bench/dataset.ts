/**
 * The benchmark's deterministic data set: a sparse VM image holding mixed data in regions with
 * holes between them (text-like, binary-like and random thirds), and a directory of many small
 * files. Same bytes on every run and machine; regenerated only when missing.
 */
import { createCipheriv, createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";

const MiB = 1024 * 1024;
const REGION = 16 * MiB;

export interface DatasetSpec {
  imageSize: number;
  /** Bytes of data in the image, in 16 MiB regions spread over it. */
  imageData: number;
  smallFiles: number;
}

export const FULL: DatasetSpec = { imageSize: 2048 * MiB, imageData: 1024 * MiB, smallFiles: 20_000 };
export const QUICK: DatasetSpec = { imageSize: 256 * MiB, imageData: 96 * MiB, smallFiles: 500 };

/** A small seeded PRNG (xorshift32): reproducible, fast, not for secrets. */
function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 4294967296;
  };
}

/** Prose-like text: a 4000-word vocabulary of syllables, sentences, numbers; compresses about 3:1. */
function textLike(size: number, seed: number): Buffer {
  const r = prng(seed);
  const syllables = [
    "ka",
    "to",
    "re",
    "mi",
    "sen",
    "dor",
    "al",
    "que",
    "pli",
    "ver",
    "ax",
    "no",
    "ti",
    "bra",
    "eu",
    "lon",
  ];
  const vocab = Array.from({ length: 4000 }, () => {
    const n = 1 + Math.floor(r() * 4);
    return Array.from({ length: n }, () => syllables[Math.floor(r() * syllables.length)]).join("");
  });
  const out = Buffer.alloc(size);
  let off = 0;
  while (off < size) {
    const w = r() < 0.05 ? String(Math.floor(r() * 100000)) : vocab[Math.floor(Math.pow(r(), 2) * vocab.length)]!;
    const sep = r() < 0.08 ? ".\n" : r() < 0.1 ? ", " : " ";
    off += out.write(w + sep, off);
  }
  return out;
}

/** Structured records like a database or executable: counters, small ints, names, padding. */
function binaryLike(size: number, seed: number): Buffer {
  const r = prng(seed);
  const names = Array.from({ length: 256 }, (_, i) =>
    Buffer.from(`sym_${i.toString(36)}_${Math.floor(r() * 1e6)}`.padEnd(16, "\0")),
  );
  const out = Buffer.alloc(size);
  for (let off = 0, n = 0; off + 64 <= size; off += 64, n++) {
    out.writeBigUInt64LE(BigInt(n), off);
    out.writeUInt32LE(Math.floor(r() * 1000), off + 8);
    out.writeUInt32LE(Math.floor(r() * 4294967296), off + 12);
    names[Math.floor(r() * names.length)]!.copy(out, off + 16);
    out.writeDoubleLE(r() * 1000, off + 32);
  }
  return out;
}

function randomBytes(size: number, seed: number): Buffer {
  const key = createHash("sha256").update(`bench-${seed}`).digest().subarray(0, 16);
  return createCipheriv("aes-128-ctr", key, Buffer.alloc(16)).update(Buffer.alloc(size));
}

export function regionContent(index: number, size = REGION): Buffer {
  const kind = index % 3;
  return kind === 0
    ? textLike(size, index + 1)
    : kind === 1
      ? binaryLike(size, index + 1)
      : randomBytes(size, index + 1);
}

export interface Dataset {
  image: string;
  files: string;
  /** Data bytes (not counting holes) in the image and the files. */
  dataBytes: number;
}

export function ensureDataset(dir: string, spec: DatasetSpec): Dataset {
  const stamp = path.join(dir, "dataset.json");
  const image = path.join(dir, "vm.img");
  const files = path.join(dir, "files");
  const regions = Math.floor(spec.imageData / REGION);
  const stride = Math.floor(spec.imageSize / regions / 4096) * 4096;
  let fileBytes = 0;
  const want = JSON.stringify(spec);
  if (!(fs.existsSync(stamp) && fs.readFileSync(stamp, "utf8") === want)) {
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(files, { recursive: true });
    const fd = fs.openSync(image, "w");
    fs.ftruncateSync(fd, spec.imageSize);
    for (let i = 0; i < regions; i++) fs.writeSync(fd, regionContent(i), 0, REGION, i * stride);
    fs.closeSync(fd);
    const r = prng(7);
    for (let i = 0; i < spec.smallFiles; i++) {
      const sub = path.join(files, `d${i % 100}`);
      if (i < 100) fs.mkdirSync(sub);
      const size = Math.floor(r() * r() * 16 * 1024);
      fs.writeFileSync(path.join(sub, `f${i}.txt`), textLike(size, 1000 + i));
    }
    fs.writeFileSync(stamp, want);
  }
  for (const d of fs.readdirSync(files))
    for (const f of fs.readdirSync(path.join(files, d))) fileBytes += fs.statSync(path.join(files, d, f)).size;
  return { image, files, dataBytes: regions * REGION + fileBytes };
}
