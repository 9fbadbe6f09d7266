/**
 * `npm run soak [-- --small]`: qbackup create, verify and restore of a large sparse data set — a
 * 10 GiB image with 8 GiB allocated (text-like, binary-like and random data) and a directory of
 * small files — at the default settings, checking that
 *   - the restored data equals the source (image bytes, tree contents and metadata),
 *   - every run's peak RSS stays within the README's bound: 256 MiB plus the KDFs running at
 *     once (--jobs of them, 128·r·N bytes each),
 *   - no run leaves a byte in its TMPDIR.
 * --small is the version CI runs (1 GiB image, 256 MiB allocated, cheap KDF). Results go to
 * stdout and bench/out/soak[-small].json; any limit exceeded makes the run fail.
 */
import * as fs from "node:fs";
import { availableParallelism } from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { sha256File, snapshotTree } from "../test/support/sources.js";
import { ensureDataset } from "./dataset.js";
import type { DatasetSpec } from "./dataset.js";
import { timed } from "./measure.js";
import type { Run } from "./measure.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const QBACKUP = path.resolve(HERE, "../bin/qbackup.js");
const OUT = path.join(HERE, "out");
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const small = process.argv.includes("--small");

const SOAK: DatasetSpec = { imageSize: 10 * GiB, imageData: 8 * GiB, smallFiles: 5_000 };
const SOAK_SMALL: DatasetSpec = { imageSize: 1 * GiB, imageData: 256 * MiB, smallFiles: 500 };
/** The README's memory bound: this much besides the KDFs. */
const BASE_RSS_MIB = 256;
const DEFAULT_LOGN = 18;
const SMALL_LOGN = 12;

function main(): void {
  const spec = small ? SOAK_SMALL : SOAK;
  const logN = small ? SMALL_LOGN : DEFAULT_LOGN;
  const jobs = availableParallelism();
  const rssLimitMiB = BASE_RSS_MIB + (jobs * 128 * 8 * 2 ** logN) / MiB;
  fs.mkdirSync(OUT, { recursive: true });
  console.error(`soak (${small ? "small" : "full"}): data set in ${path.join(OUT, small ? "soak-small" : "soak")}`);
  const data = ensureDataset(path.join(OUT, small ? "soak-small" : "soak"), spec);
  const work = fs.mkdtempSync(path.join(OUT, "soak-work-"));
  try {
    const pass = path.join(work, "passphrase");
    fs.writeFileSync(pass, "soak passphrase\n", { mode: 0o600 });
    const backup = path.join(work, "soak.bin");
    const qb = (...args: string[]) => [process.execPath, QBACKUP, ...args];
    const logNArgs = logN === DEFAULT_LOGN ? [] : ["--scrypt-logn", String(logN)];
    const runs: Run[] = [
      timed(
        work,
        "create",
        qb("create", "-y", "-p", pass, ...logNArgs, backup, `vm=${data.image}`, `dom0=${data.files}`),
      ),
      timed(work, "verify", qb("verify", "-p", pass, backup)),
      timed(work, "restore", qb("restore", "-p", pass, backup, path.join(work, "restored"))),
    ];
    console.error("comparing the restored data with the source");
    if (sha256File(path.join(work, "restored/vm/private.img")) !== sha256File(data.image)) {
      throw new Error("restored image differs from the source");
    }
    const home = path.join(work, "restored/dom0-home", path.basename(data.files));
    if (JSON.stringify(snapshotTree(home)) !== JSON.stringify(snapshotTree(data.files))) {
      throw new Error("restored home differs from the source");
    }

    const backupBytes = fs.statSync(backup).size;
    const results = {
      date: new Date().toISOString(),
      small,
      imageApparentBytes: spec.imageSize,
      dataBytes: data.dataBytes,
      backupBytes,
      scryptLogN: logN,
      jobs,
      rssLimitMiB,
      runs: runs.map((r) => ({ ...r, mibPerSecond: data.dataBytes / MiB / r.seconds })),
    };
    console.log(
      `\nqbackup soak (${small ? "small" : "full"}): ${(data.dataBytes / GiB).toFixed(2)} GiB of data in a ${(spec.imageSize / GiB).toFixed(0)} GiB image + ${spec.smallFiles} files, backup ${(backupBytes / GiB).toFixed(2)} GiB`,
    );
    console.log("| run | seconds | MiB/s | peak RSS MiB | limit MiB | temp bytes |");
    console.log("|---|---:|---:|---:|---:|---:|");
    for (const r of results.runs) {
      console.log(
        `| ${r.name} | ${r.seconds.toFixed(1)} | ${r.mibPerSecond.toFixed(1)} | ${(r.peakRssMiB ?? 0).toFixed(0)} | ${rssLimitMiB.toFixed(0)} | ${r.tempBytes} |`,
      );
    }
    const json = path.join(OUT, small ? "soak-small.json" : "soak.json");
    fs.writeFileSync(json, `${JSON.stringify(results, null, 2)}\n`);
    console.log(`restored data identical; written: ${path.relative(path.resolve(HERE, ".."), json)}`);
    const over = runs.filter((r) => (r.peakRssMiB ?? 0) > rssLimitMiB || (r.tempBytes ?? 0) > 0);
    if (over.length > 0) throw new Error(`over the limits: ${over.map((r) => r.name).join(", ")}`);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main();
