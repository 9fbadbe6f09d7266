/**
 * `npm run fuzz -- [--seconds N] [--runs N] [--seed S] [--timeout MS] [--batch N] [--save-corpus DIR] [target ...]`:
 * fuzzes each target (all by default) with fuzz/engine.ts for N seconds (default 60) or N runs,
 * whichever ends first, and prints per target: executions, exec/s, corpus size, blocks covered and
 * crashes. Exit status 1 if anything crashed. Crash inputs are written to fuzz/crashes/<target>/;
 * with --save-corpus DIR, inputs that reached new code are also written to DIR/<target>/.
 */
import * as path from "node:path";
import { DEFAULT_BATCH, DEFAULT_SECONDS, DEFAULT_TIMEOUT_MS, fuzzTarget } from "./engine.js";
import type { FuzzOptions } from "./engine.js";
import { TARGETS, TARGET_NAMES } from "./targets.js";

const USAGE = `usage: npm run fuzz -- [--seconds N] [--runs N] [--seed S] [--timeout MS] [--batch N]
         [--save-corpus DIR] [target ...]
targets: ${TARGET_NAMES.join(", ")}`;
const SHOWN_INPUT_BYTES = 64;

function fail(message: string): never {
  console.error(`fuzz: ${message}\n${USAGE}`);
  process.exit(2);
}

function parseArgs(argv: readonly string[]): { options: FuzzOptions; targets: string[] } {
  const options: FuzzOptions = {
    seconds: DEFAULT_SECONDS,
    seed: 1,
    timeoutMs: DEFAULT_TIMEOUT_MS,
    batch: DEFAULT_BATCH,
  };
  const targets: string[] = [];
  const numbers: Record<string, keyof FuzzOptions> = {
    "--seconds": "seconds",
    "--seed": "seed",
    "--timeout": "timeoutMs",
    "--batch": "batch",
    "--runs": "maxExecutions",
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "-h" || arg === "--help") {
      console.log(USAGE);
      process.exit(0);
    }
    const key = numbers[arg];
    if (key !== undefined) {
      const value = Number(argv[++i]);
      if (!Number.isFinite(value) || value < 0) fail(`${arg} needs a non-negative number`);
      (options as Record<string, number>)[key] = value;
    } else if (arg === "--save-corpus") {
      const dir = argv[++i];
      if (dir === undefined) fail("--save-corpus needs a directory");
      options.corpusOut = dir;
    } else if (arg.startsWith("-")) {
      fail(`unknown option ${arg}`);
    } else if (TARGETS[arg] === undefined) {
      fail(`unknown target ${arg}`);
    } else {
      targets.push(arg);
    }
  }
  return { options, targets: targets.length > 0 ? targets : [...TARGET_NAMES] };
}

async function main(): Promise<void> {
  const { options, targets } = parseArgs(process.argv.slice(2));
  console.log(`fuzzing ${targets.join(", ")} for ${options.seconds} s each, seed ${options.seed}`);
  let crashed = 0;
  for (const name of targets) {
    const r = await fuzzTarget(TARGETS[name]!, options);
    console.log(
      `${name.padEnd(16)} executions ${String(r.executions).padStart(9)}  exec/s ${String(r.execPerSecond).padStart(6)}` +
        `  corpus ${String(r.corpusSize).padStart(5)}  blocks ${String(r.blocksCovered).padStart(5)}  crashes ${r.crashes.length}`,
    );
    for (const c of r.crashes) {
      crashed++;
      const hex = c.input.subarray(0, SHOWN_INPUT_BYTES).toString("hex");
      const more = c.input.length > SHOWN_INPUT_BYTES ? `… (${c.input.length} bytes)` : "";
      console.log(`  CRASH (${c.kind}, ${c.count} input(s)): ${c.summary}`);
      console.log(`    ${c.stackTop}`);
      console.log(`    input ${path.relative(process.cwd(), c.file)}: ${hex}${more}`);
    }
  }
  process.exitCode = crashed > 0 ? 1 : 0;
}

await main();
