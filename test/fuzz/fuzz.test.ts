/**
 * The fuzz harness in CI: saved regression inputs and seeds replay through their targets with
 * nothing but QbackupErrors; the engine finds planted crashes, hangs, huge allocations and
 * unhandled rejections; and a short run of every real target with a fixed seed finds no crash.
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { fuzzTarget, isExpectedError, readSeeds } from "../../fuzz/engine.js";
import type { FuzzOptions, FuzzReport } from "../../fuzz/engine.js";
import { TARGETS, TARGET_NAMES } from "../../fuzz/targets.js";
import { TARGETS as PLANTED } from "./planted-targets.js";

const FUZZ_DIR = fileURLToPath(new URL("../../fuzz/", import.meta.url));
const SHORT_RUN_SECONDS = 3;
const SEED = 20240102;
const SHOWN_INPUT_BYTES = 64;

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "qb-"));
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

function files(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isFile() && !e.name.startsWith("."))
    .map((e) => e.name)
    .sort();
}

/** Runs one input in-process; fails with the real error (and its stack) if it is not a QbackupError. */
async function expectOnlyQbackupErrors(target: string, file: string): Promise<void> {
  const err = await TARGETS[target]!.run(fs.readFileSync(file)).then(
    () => undefined,
    (e: unknown) => e,
  );
  if (err !== undefined && !isExpectedError(err)) {
    expect.fail(`${path.relative(FUZZ_DIR, file)}: ${err instanceof Error ? err.stack : String(err)}`);
  }
}

function crashLines(report: FuzzReport): string[] {
  return report.crashes.map(
    (c) => `${c.kind}: ${c.summary} ${c.stackTop} input ${c.input.subarray(0, SHOWN_INPUT_BYTES).toString("hex")}`,
  );
}

describe("fuzz regressions and seeds replay with only QbackupErrors", () => {
  for (const target of TARGET_NAMES) {
    const regressions = path.join(FUZZ_DIR, "regressions", target);
    it(`${target}: has a seed corpus and a regressions folder`, () => {
      expect(readSeeds(path.join(FUZZ_DIR, "corpus", target)).length).toBeGreaterThan(0);
      expect(fs.statSync(regressions).isDirectory()).toBe(true);
    });
    it(`${target}: every seed`, async () => {
      for (const file of files(path.join(FUZZ_DIR, "corpus", target))) {
        await expectOnlyQbackupErrors(target, path.join(FUZZ_DIR, "corpus", target, file));
      }
    });
    for (const file of files(regressions)) {
      it(`${target}/${file}`, () => expectOnlyQbackupErrors(target, path.join(regressions, file)));
    }
    for (const file of files(path.join(regressions, "pending"))) {
      it.skip(`${target}/pending/${file}: crashes until src/ is fixed (then move it out of pending/)`, () => {});
    }
  }
});

describe("the fuzz engine finds planted bugs", () => {
  const planted = (name: string, options: FuzzOptions = {}): Promise<FuzzReport> =>
    fuzzTarget(PLANTED[name]!, {
      seconds: 20,
      seed: SEED,
      stopOnCrash: true,
      timeoutMs: 500,
      corpusRoot: path.join(scratch, "no-seeds"),
      crashRoot: path.join(scratch, "crashes"),
      targetsModule: new URL("./planted-targets.ts", import.meta.url),
      coverageRoots: [new URL("./", import.meta.url)],
      ...options,
    });

  it("a crash behind four magic bytes, by following coverage; saved under its sha256", async () => {
    const r = await planted("planted-crash");
    expect(r.crashes).toHaveLength(1);
    const crash = r.crashes[0]!;
    expect(crash).toMatchObject({ kind: "error", summary: "TypeError: planted crash" });
    expect(crash.input.subarray(0, 4)).toEqual(Buffer.from([0x3c, 0x3d, 0x30, 0x20]));
    expect(path.basename(crash.file)).toBe(crypto.createHash("sha256").update(crash.input).digest("hex").slice(0, 16));
    expect(fs.readFileSync(crash.file)).toEqual(crash.input);
    expect(r.corpusSize).toBeGreaterThanOrEqual(4); // one entry per magic byte matched
  });

  it("a hang (the worker is terminated)", async () => {
    const r = await planted("planted-hang");
    expect(r.crashes.map((c) => c.kind)).toEqual(["hang"]);
    expect(r.crashes[0]!.input[0]).toBeLessThan(0x80);
  });

  it("an absurd allocation (the worker's heap limit)", async () => {
    const r = await planted("planted-allocation", { maxHeapMb: 64, timeoutMs: 10_000 });
    expect(r.crashes.map((c) => c.kind)).toEqual(["worker"]);
    expect(r.crashes[0]!.summary).toMatch(/memory/);
  });

  it("an unhandled rejection, blamed on the input that caused it", async () => {
    const r = await planted("planted-rejection");
    expect(r.crashes).toHaveLength(1);
    expect(r.crashes[0]).toMatchObject({ kind: "rejection", summary: "TypeError: planted rejection" });
    expect(r.crashes[0]!.input[0]).toBeLessThan(0x80);
  });

  it("a QbackupError with code ERR_INTERNAL (a bug, not bad input)", async () => {
    const r = await planted("internal-error");
    expect(r.crashes[0]).toMatchObject({ kind: "error", summary: "QbackupError: planted internal error" });
  });
});

describe(`a ${SHORT_RUN_SECONDS} s fuzz run of each target (seed ${SEED}) finds no crash`, () => {
  for (const target of TARGET_NAMES) {
    it(target, async () => {
      const r = await fuzzTarget(TARGETS[target]!, {
        seconds: SHORT_RUN_SECONDS,
        seed: SEED,
        crashRoot: path.join(scratch, "crashes"),
      });
      expect(crashLines(r)).toEqual([]);
      expect(r.executions).toBeGreaterThan(r.corpusSize);
      expect(r.blocksCovered).toBeGreaterThan(0); // coverage of src/ really is measured
    });
  }
});
