/** Deterministic source data for tests: sparse images with data at chosen offsets, and trees. */
import { createCipheriv, createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";

/** Reproducible pseudo-random bytes: AES-128-CTR keystream keyed by a label. */
export function prng(label: string, length: number): Buffer {
  const key = createHash("sha256").update(label).digest().subarray(0, 16);
  return createCipheriv("aes-128-ctr", key, Buffer.alloc(16)).update(Buffer.alloc(length));
}

export interface DataRegion {
  offset: number;
  length: number;
  label: string;
}

/** The golden fixture's shape: 64 MiB, data at 0, 17 MiB, 40 MiB + 8 KiB, 60 MiB; ends in a hole. */
export const GOLDEN_REGIONS: DataRegion[] = [
  { offset: 0, length: 1024 * 1024, label: "region-a" },
  { offset: 17 * 1024 * 1024, length: 1536 * 1024, label: "region-b" },
  { offset: 40 * 1024 * 1024 + 8192, length: 4096, label: "region-c" },
  { offset: 60 * 1024 * 1024, length: 512 * 1024, label: "region-d" },
];

/** Apparent size of the golden image, and the bytes of data in it. */
export const GOLDEN_IMAGE_SIZE = 64 * 1024 * 1024;
export const GOLDEN_DATA_BYTES = GOLDEN_REGIONS.reduce((n, r) => n + r.length, 0);

export function makeSparseImage(file: string, size: number, regions: readonly DataRegion[]): void {
  const fd = fs.openSync(file, "w");
  try {
    fs.ftruncateSync(fd, size);
    for (const r of regions) fs.writeSync(fd, prng(r.label, r.length), 0, r.length, r.offset);
  } finally {
    fs.closeSync(fd);
  }
}

/** A small home-like tree: nested dirs, an empty dir, modes, a relative symlink, a long and a UTF-8 name. */
export function makeTree(root: string): void {
  const mtime = new Date("2024-01-02T03:04:05Z");
  const files: Array<[string, string | Buffer, number]> = [
    [".bashrc", "# test bashrc\nexport X=1\n", 0o644],
    ["Documents/todo.txt", "buy milk\nrestore backups\n", 0o600],
    ["Documents/report-ümlaut-日本.txt", "unicode name\n", 0o644],
    [`Documents/${"long-name-".repeat(12)}.bin`, prng("long", 70_000), 0o640],
    [".config/app/settings.ini", "[a]\nkey=value\n", 0o644],
    ["bin/run.sh", "#!/bin/sh\necho hi\n", 0o755],
  ];
  for (const [rel, content, mode] of files) {
    const p = path.join(root, rel);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, content);
    fs.chmodSync(p, mode);
  }
  fs.mkdirSync(path.join(root, "empty-dir"));
  fs.symlinkSync("Documents/todo.txt", path.join(root, "todo-link"));
  fs.symlinkSync("../missing-target", path.join(root, "Documents/dangling-link")); // dangling, but inside
  for (const rel of [
    ...files.map((f) => f[0]),
    "empty-dir",
    "Documents",
    ".config/app",
    ".config",
    "bin",
    "",
  ].reverse()) {
    fs.utimesSync(path.join(root, rel), mtime, mtime);
  }
  fs.lutimesSync(path.join(root, "todo-link"), mtime, mtime);
}

export interface TreeSnapshotEntry {
  type: "file" | "dir" | "symlink";
  mode: number;
  mtime: number;
  sha256?: string;
  target?: string;
}

/** Everything a restore must reproduce of a tree, by relative path. */
export function snapshotTree(root: string): Record<string, TreeSnapshotEntry> {
  const out: Record<string, TreeSnapshotEntry> = {};
  const visit = (rel: string) => {
    const p = path.join(root, rel);
    const st = fs.lstatSync(p);
    const base = { mode: st.mode & 0o7777, mtime: Math.floor(st.mtimeMs / 1000) };
    if (st.isSymbolicLink()) out[rel] = { type: "symlink", ...base, mode: 0, target: fs.readlinkSync(p) };
    else if (st.isDirectory()) {
      out[rel] = { type: "dir", ...base };
      for (const name of fs.readdirSync(p).sort()) visit(rel ? `${rel}/${name}` : name);
    } else out[rel] = { type: "file", ...base, sha256: sha256File(p) };
  };
  visit("");
  return out;
}

/** SHA-256 of a file of any size, read in 4 MiB pieces. */
export function sha256File(file: string): string {
  const hash = createHash("sha256");
  const buffer = Buffer.allocUnsafe(4 * 1024 * 1024);
  const fd = fs.openSync(file, "r");
  try {
    for (let n; (n = fs.readSync(fd, buffer, 0, buffer.length, null)) > 0;) hash.update(buffer.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  return hash.digest("hex");
}

/** Bytes actually allocated on disk. */
export function allocatedBytes(file: string): number {
  return fs.statSync(file).blocks * 512;
}
