/**
 * The fuzz engine's worker thread (see engine.ts): runs one target over batches of inputs and
 * reports the blocks of our code that ran, per input or per batch, from V8's precise block coverage.
 *
 * V8 reports a function as nested ranges with execution counts, but merges a block into its parent
 * when both ran equally often, so a block's own range comes and goes between measurements. Blocks
 * are therefore identified by a range start ever seen in their function, and a block ran when the
 * innermost range reported around that start has a non-zero count.
 */
import { Session } from "node:inspector";
import type { Profiler } from "node:inspector";
import { parentPort, workerData } from "node:worker_threads";
import { describeFailure, isExpectedError } from "./engine.js";
import type { BatchRequest, Failure, TargetSpec, WorkerConfig, WorkerMessage } from "./engine.js";

const config = workerData as WorkerConfig;
const port = parentPort;
if (port === null) throw new Error("fuzz/worker.ts runs only as a worker thread");

const session = new Session();
session.connect();

/** In-thread inspector sessions answer synchronously. */
function post<T>(send: (done: (err: Error | null, result: T) => void) => void): T {
  let outcome: { err: Error | null; result: T } | undefined;
  send((err, result) => (outcome = { err, result }));
  if (outcome === undefined) throw new Error("inspector did not answer synchronously");
  if (outcome.err) throw outcome.err;
  return outcome.result;
}

post<unknown>((done) => session.post("Profiler.enable", done));
post<unknown>((done) => session.post("Profiler.startPreciseCoverage", { callCount: true, detailed: true }, done));

// Coverage is on before the target's modules load, so every function of theirs is measured.
async function loadTarget(): Promise<TargetSpec> {
  const module = (await import(config.targetsModule)) as { TARGETS: Readonly<Record<string, TargetSpec>> };
  const spec = module.TARGETS[config.target];
  if (spec === undefined) throw new Error(`no fuzz target named ${config.target}`);
  return spec;
}
const spec = await loadTarget();
const progress = new Int32Array(config.progress);

function mix(urlHash: number, offset: number): number {
  let h = Math.imul(urlHash ^ Math.imul(offset + 1, 0x9e3779b1), 0x85ebca6b);
  h ^= h >>> 13;
  return Math.imul(h, 0xc2b2ae35) >>> 0;
}

function fnv(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

class BlockTracker {
  /** Known block starts per function, keyed `url@functionStart`. */
  private readonly known = new Map<string, Set<number>>();
  private readonly urlHashes = new Map<string, number>();

  constructor(private readonly prefixes: readonly string[]) {}

  /** Adds the ids of the blocks that ran since the previous call (taking coverage resets the counts). */
  collect(into: Set<number>): void {
    const scripts = post<Profiler.TakePreciseCoverageReturnType>((done) =>
      session.post("Profiler.takePreciseCoverage", done),
    ).result;
    for (const script of scripts) {
      if (!this.prefixes.some((p) => script.url.startsWith(p))) continue;
      let urlHash = this.urlHashes.get(script.url);
      if (urlHash === undefined) this.urlHashes.set(script.url, (urlHash = fnv(script.url)));
      for (const fn of script.functions) this.collectFunction(script.url, urlHash, fn.ranges, into);
    }
  }

  private collectFunction(url: string, urlHash: number, ranges: Profiler.CoverageRange[], into: Set<number>): void {
    const first = ranges[0];
    if (first === undefined) return;
    const key = `${url}@${first.startOffset}`;
    let points = this.known.get(key);
    if (points === undefined) this.known.set(key, (points = new Set()));
    for (const r of ranges) points.add(r.startOffset);
    for (const p of points) {
      // Ranges come parent before child, so the last one containing p is the innermost.
      let count = 0;
      for (const r of ranges) if (r.startOffset <= p && p < r.endOffset) count = r.count;
      if (count > 0) into.add(mix(urlHash, p));
    }
  }
}

const tracker = new BlockTracker(config.coveragePrefixes);

/** Rejections nobody handled; they would end the process in real use, so they are crashes. */
const unhandled: unknown[] = [];
process.on("unhandledRejection", (reason) => unhandled.push(reason));

async function runOne(input: Uint8Array): Promise<Failure | null> {
  let failure: Failure | null = null;
  try {
    await spec.run(Buffer.from(input.buffer, input.byteOffset, input.byteLength));
  } catch (err) {
    if (!isExpectedError(err)) failure = describeFailure("error", err);
  }
  // Unhandled rejections are only reported once the microtask queue drains: let it, while this input is current.
  await new Promise((resolve) => setImmediate(resolve));
  const rejected = unhandled.splice(0);
  return failure ?? (rejected.length > 0 ? describeFailure("rejection", rejected[0]) : null);
}

port.on("message", (request: BatchRequest) => {
  void (async () => {
    tracker.collect(new Set()); // whatever ran between batches is not an input's doing
    const failures: (Failure | null)[] = [];
    const blocks: Uint32Array[] = [];
    for (let i = 0; i < request.inputs.length; i++) {
      Atomics.store(progress, 1, i);
      Atomics.add(progress, 0, 1);
      failures.push(await runOne(request.inputs[i]!));
      if (request.each) {
        const ran = new Set<number>();
        tracker.collect(ran);
        blocks.push(Uint32Array.from(ran));
      }
    }
    if (!request.each) {
      const ran = new Set<number>();
      tracker.collect(ran);
      blocks.push(Uint32Array.from(ran));
    }
    const message: WorkerMessage = { kind: "done", failures, blocks };
    port.postMessage(
      message,
      blocks.map((b) => b.buffer as ArrayBuffer),
    );
  })();
});

const ready: WorkerMessage = { kind: "ready" };
port.postMessage(ready);
