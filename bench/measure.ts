/**
 * Runs a qbackup (or reference) command the way the benchmark and the soak run measure it: wall
 * time, peak RSS (GNU time) and the bytes it left in a fresh, empty TMPDIR.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

const MiB = 1024 * 1024;

export interface Run {
  name: string;
  seconds: number;
  peakRssMiB?: number;
  tempBytes?: number;
}

/** `argv` under /usr/bin/time, with TMPDIR an empty directory in `scratch`. Throws if it fails. */
export function timed(scratch: string, name: string, argv: string[], env: Record<string, string> = {}): Run {
  const tmp = fs.mkdtempSync(path.join(scratch, "tmp-"));
  const started = performance.now();
  const r = spawnSync("/usr/bin/time", ["-f", "%M", ...argv], {
    env: { ...process.env, TMPDIR: tmp, ...env },
    stdio: ["ignore", "ignore", "pipe"],
    maxBuffer: 64 * MiB,
  });
  const seconds = (performance.now() - started) / 1000;
  const stderr = r.stderr.toString();
  if (r.status !== 0)
    throw new Error(`${name} failed (${r.status}): ${stderr.trim().split("\n").slice(-3).join(" | ")}`);
  const peakRssMiB = Number(stderr.trim().split("\n").pop()) / 1024;
  const tempBytes =
    fs.readdirSync(tmp, { recursive: true }).length === 0
      ? 0
      : Number(spawnSync("du", ["-sb", tmp]).stdout.toString().split("\t")[0]);
  fs.rmSync(tmp, { recursive: true, force: true });
  const run = { name, seconds, peakRssMiB, tempBytes };
  console.error(`  ${name}: ${seconds.toFixed(1)} s, peak RSS ${peakRssMiB.toFixed(0)} MiB`);
  return run;
}
