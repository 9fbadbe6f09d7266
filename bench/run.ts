/**
 * `npm run bench [-- --quick]`: qbackup against the reference pipelines, measured in one run on
 * one data set, alternating between the two so machine noise hits both; each timing is the best
 * of two rounds (one with --quick).
 *
 *   create   qbackup at its defaults      vs  tar --sparse | gzip | split | stock scrypt enc (reference-create.sh)
 *   create   both at logN 20, r 8, p 1
 *   restore  qbackup vs the emergency procedure (tar -i, scrypt dec, gzip -d | tar), on the
 *            reference backup; and qbackup on its own default backup
 *   list     qbackup on its default backup
 *   floor    the CPU floor of the default create (floor.ts): how fast any create could be here
 *
 * Every qbackup run reports peak RSS (GNU time) and the bytes it left in an empty TMPDIR; every
 * backup qbackup makes is restored with the emergency procedure and compared with the source.
 * Results: a table on stdout and bench/out/results[-quick].json. --quick is the small smoke
 * version CI runs (small data set, cheap KDF everywhere).
 */
import * as fs from "node:fs";
import { availableParallelism } from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { spawnSync } from "node:child_process";
import { DEFAULT_SCRYPT_LOGN } from "../src/cli/create.js";
import { scryptKdf } from "../src/codec/scrypt/kdf.js";
import { blockGzip } from "../src/runtime/block-gzip.js";
import { DEFAULT_GZIP_LEVEL } from "../src/create/compress.js";
import { emergencyRestoreV4 } from "../test/support/emergency-v4.js";
import { sha256File, snapshotTree } from "../test/support/sources.js";
import { FULL, QUICK, ensureDataset } from "./dataset.js";
import { measureCreateFloor } from "./floor.js";
import { timed } from "./measure.js";
import type { Run } from "./measure.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, "..");
const QBACKUP = path.join(REPO, "bin/qbackup.js");
const MiB = 1024 * 1024;
const quick = process.argv.includes("--quick");
const OUT = path.join(HERE, "out");
const PASSPHRASE = "benchmark passphrase";

function timedInProcess(name: string, work: () => void): Run {
  const started = performance.now();
  work();
  const seconds = (performance.now() - started) / 1000;
  console.error(`  ${name}: ${seconds.toFixed(1)} s`);
  return { name, seconds };
}

async function main(): Promise<void> {
  fs.mkdirSync(OUT, { recursive: true });
  const spec = quick ? QUICK : FULL;
  console.error(`data set (${quick ? "quick" : "full"}): generating or reusing ${path.join(OUT, "data")}`);
  const data = ensureDataset(path.join(OUT, "data"), spec);
  const passFile = path.join(OUT, "passphrase");
  fs.writeFileSync(passFile, `${PASSPHRASE}\n`, { mode: 0o600 });
  const home = path.join(OUT, "home-link");
  fs.rmSync(home, { force: true });
  fs.symlinkSync(data.files, home); // the dom0 home's name in both backups: "home-link"
  const work = fs.mkdtempSync(path.join(OUT, "work-"));
  const p = (name: string) => path.join(work, name);

  // KDF settings: the tools' own defaults, or cheap ones for the quick smoke run
  const stock = quick ? "--logN 12 -r 8 -p 1" : "";
  const qbDefault = quick ? ["--scrypt-logn", "12"] : [];
  const equal = quick ? 12 : 20;

  const qb = (...args: string[]) => [process.execPath, QBACKUP, ...args];
  const refCreate = (out: string, scryptArgs: string) =>
    [
      ["bash", path.join(HERE, "reference-create.sh"), out, passFile, data.image, home],
      { SCRYPT_ARGS: scryptArgs },
    ] as const;
  const sources = [`vm=${data.image}`, `dom0:home-link=${data.files}`];

  // Every timing is the best of `rounds` alternating runs: noise on a shared machine only ever
  // adds time, and it hits both sides alike. Peak RSS and temp bytes are the worst of the runs.
  const rounds = quick ? 1 : 2;
  const runs = new Map<string, Run[]>();
  const record = (key: string, run: Run) => runs.set(key, [...(runs.get(key) ?? []), run]);
  // restores, list and the sizes read the first round's backups
  const first = rounds === 1 ? "" : "-1";
  /** qbackup restores `backup` into `into`, timed under `key`, and the result is checked against the sources. */
  const qbRestore = (key: string, name: string, backup: string, into: string) => {
    record(key, timed(OUT, name, qb("restore", "-p", passFile, p(backup), p(into))));
    check(p(into), "vm/private.img", "dom0-home/home-link");
  };
  for (let round = 1; round <= rounds; round++) {
    const r = rounds === 1 ? "" : `-${round}`;
    console.error(`round ${round} of ${rounds}: create, defaults:`);
    const [refCmd, refEnv] = refCreate(p(`ref-stock${r}.bin`), stock);
    record("refDefault", timed(OUT, "reference create (stock scrypt parameters)", [...refCmd], refEnv));
    record(
      "qbCreate",
      timed(
        OUT,
        "qbackup create (defaults)",
        qb("create", "-y", "-p", passFile, ...qbDefault, p(`qb-default${r}.bin`), ...sources),
      ),
    );

    console.error(`round ${round} of ${rounds}: create, equal parameters (logN ${equal}, r 8, p 1):`);
    record(
      "qbEqual",
      timed(
        OUT,
        `qbackup create (logN ${equal})`,
        qb("create", "-y", "-p", passFile, "--scrypt-logn", String(equal), p(`qb-equal${r}.bin`), ...sources),
      ),
    );
    const [refCmd2, refEnv2] = refCreate(p(`ref-equal${r}.bin`), `--logN ${equal} -r 8 -p 1`);
    record("refEqual", timed(OUT, `reference create (logN ${equal})`, [...refCmd2], refEnv2));

    // every restore writes a directory of its own
    console.error(`round ${round} of ${rounds}: restore:`);
    let extracted = "";
    record(
      "emergency",
      timedInProcess("emergency procedure, reference backup", () => {
        extracted = emergencyRestoreV4(p(`ref-stock${first}.bin`), p(`er-stock${r}`), PASSPHRASE).extracted;
      }),
    );
    check(extracted, "vm1/private.img", "dom0-home/home-link");
    qbRestore("qbRestoreStock", "qbackup restore, reference backup", `ref-stock${first}.bin`, `qr-stock${r}`);
    qbRestore("qbRestoreOwn", "qbackup restore, qbackup default backup", `qb-default${first}.bin`, `qr-own${r}`);
  }
  const best = (key: string): Run => {
    const all = runs.get(key)!;
    const fastest = all.reduce((a, b) => (b.seconds < a.seconds ? b : a));
    const worst = (f: (r: Run) => number | undefined) => Math.max(...all.map((r) => f(r) ?? 0));
    return { ...fastest, peakRssMiB: worst((r) => r.peakRssMiB), tempBytes: worst((r) => r.tempBytes) };
  };
  const [refDefault, qbCreate, qbEqual, refEqual] = ["refDefault", "qbCreate", "qbEqual", "refEqual"].map(best);
  const [emergency, qbRestoreStock, qbRestoreOwn] = ["emergency", "qbRestoreStock", "qbRestoreOwn"].map(best);
  const defaultBackup = p(`qb-default${first}.bin`);
  const qbList = timed(OUT, "qbackup list, qbackup default backup", qb("list", "-p", passFile, defaultBackup));

  console.error("checking qbackup's backups with the emergency procedure:");
  for (const b of fs
    .readdirSync(work)
    .filter((f) => /^qb-.*\.bin$/.test(f))
    .sort()) {
    check(emergencyRestoreV4(p(b), p(`er-${b}`), PASSPHRASE).extracted, "vm1/private.img", "dom0-home/home-link");
    console.error(`  ${b} restores byte-identically`);
  }

  console.error("the CPU floor of the default create (each part on one core, then over all cores):");
  const floor = await measureCreateFloor({
    image: data.image,
    files: data.files,
    logN: quick ? 12 : DEFAULT_SCRYPT_LOGN,
    gzipLevel: DEFAULT_GZIP_LEVEL,
    containers: containersIn(defaultBackup),
    backupBytes: fs.statSync(defaultBackup).size,
    cores: availableParallelism(),
  });
  console.error(
    `  KDFs ${floor.kdfSeconds.toFixed(1)} + gzip ${floor.gzipSeconds.toFixed(1)} + seal ${floor.sealSeconds.toFixed(1)} core-s: at least ${floor.seconds.toFixed(1)} s`,
  );

  const rate = (r: Run) => data.dataBytes / MiB / r.seconds;
  const rows = [
    { what: "create, defaults", qbackup: qbCreate, reference: refDefault, target: 10 },
    { what: `create, logN ${equal}`, qbackup: qbEqual, reference: refEqual, target: 3 },
    { what: "restore, reference backup", qbackup: qbRestoreStock, reference: emergency, target: 1.8 },
    {
      what: "restore, qbackup backup vs emergency on reference",
      qbackup: qbRestoreOwn,
      reference: emergency,
      target: 5,
    },
  ].map((r) => ({
    what: r.what,
    qbackupMiBs: rate(r.qbackup),
    referenceMiBs: rate(r.reference),
    ratio: rate(r.qbackup) / rate(r.reference),
    target: r.target,
    peakRssMiB: r.qbackup.peakRssMiB,
    tempBytes: r.qbackup.tempBytes,
  }));
  const results = {
    date: new Date().toISOString(),
    quick,
    dataBytes: data.dataBytes,
    imageApparentBytes: spec.imageSize,
    smallFiles: spec.smallFiles,
    rounds,
    cores: availableParallelism(),
    kdf: scryptKdf().name,
    gzip: blockGzip().name,
    rows,
    list: { seconds: qbList.seconds, peakRssMiB: qbList.peakRssMiB },
    createFloor: {
      ...floor,
      MiBs: data.dataBytes / MiB / floor.seconds,
      ratio: data.dataBytes / MiB / floor.seconds / rate(refDefault),
      qbackupShare: floor.seconds / qbCreate.seconds,
    },
    backups: {
      referenceStockBytes: fs.statSync(p(`ref-stock${first}.bin`)).size,
      qbackupDefaultBytes: fs.statSync(defaultBackup).size,
    },
  };

  const fmt = (n: number, d = 1) => n.toFixed(d);
  console.log(
    `\nqbackup benchmark (${quick ? "quick" : "full"}): ${fmt(data.dataBytes / MiB, 0)} MiB of data, ${results.cores} cores, scrypt from ${results.kdf}, gzip from ${results.gzip}`,
  );
  console.log("| what | qbackup MiB/s | reference MiB/s | ratio | target | qbackup peak RSS MiB | temp bytes |");
  console.log("|---|---:|---:|---:|---:|---:|---:|");
  for (const r of rows) {
    console.log(
      `| ${r.what} | ${fmt(r.qbackupMiBs)} | ${fmt(r.referenceMiBs)} | ${fmt(r.ratio, 2)}× | ≥ ${r.target}× | ${fmt(r.peakRssMiB ?? 0, 0)} | ${r.tempBytes} |`,
    );
  }
  console.log(
    `| list, qbackup backup | ${fmt(qbList.seconds, 2)} s | | | | ${fmt(qbList.peakRssMiB ?? 0, 0)} | ${qbList.tempBytes} |`,
  );
  const f = results.createFloor;
  console.log(
    `create floor at the defaults (${fmt(f.kdfSeconds)} core-s of KDFs, ${fmt(f.gzipSeconds)} of gzip, ${fmt(f.sealSeconds)} of AES+HMAC over ${results.cores} cores): ${fmt(f.MiBs)} MiB/s, ${fmt(f.ratio, 2)}× the reference; qbackup ran at ${fmt(f.qbackupShare * 100, 0)}% of it`,
  );
  console.log(
    `backup sizes: reference ${fmt(results.backups.referenceStockBytes / MiB)} MiB, qbackup ${fmt(results.backups.qbackupDefaultBytes / MiB)} MiB`,
  );
  const json = path.join(OUT, quick ? "results-quick.json" : "results.json");
  fs.writeFileSync(json, `${JSON.stringify(results, null, 2)}\n`);
  console.log(`written: ${path.relative(REPO, json)}`);
  fs.rmSync(work, { recursive: true, force: true });
  if (rows.some((r) => (r.tempBytes ?? 0) > 0)) throw new Error("a qbackup run left temporary files");

  /** scrypt containers in a backup: backup-header.hmac and every .enc member. */
  function containersIn(backup: string): number {
    const r = spawnSync("tar", ["-tif", backup], { encoding: "utf8", maxBuffer: 16 * MiB });
    if (r.status !== 0) throw new Error(`tar -t ${backup}: ${r.stderr}`);
    return r.stdout.split("\n").filter((m) => m === "backup-header.hmac" || m.endsWith(".enc")).length;
  }

  function check(root: string, image: string, homeDir: string): void {
    if (sha256File(path.join(root, image)) !== sha256File(data.image))
      throw new Error(`${root}: ${image} differs from the source`);
    const a = JSON.stringify(snapshotTree(path.join(root, homeDir)));
    if (a !== JSON.stringify(snapshotTree(data.files))) throw new Error(`${root}: ${homeDir} differs from the source`);
  }
}

await main();
