/**
 * Exists because Jazzer.js cannot run here: 4.0 needs GLIBC 2.38 (bookworm: 2.36), 2.1 downloads its binary at install.
 * So this is a small coverage-guided fuzzer of our own on V8's precise block coverage (node:inspector).
 *
 * How it works: the target runs in a worker thread (fuzz/worker.ts) that measures which blocks of
 * our code (script URLs under src/ or dist/ of this repository) each input reached. This side keeps
 * the corpus, mutates corpus entries into batches of new inputs, and keeps every input that reached
 * a block no earlier input reached. A batch is measured as a whole first (taking coverage costs
 * about a millisecond, far more than most parses); only a batch that reached something new is run
 * again input by input to find which inputs did. A crash is a target throwing anything but a
 * QbackupError (or an ERR_INTERNAL one: errors.ts calls that code a bug, never bad input), running
 * past its deadline (a hang: the worker is terminated), or the worker dying (out of memory,
 * an unhandled rejection). Every random choice comes from one seeded PRNG, so a seed reproduces a run.
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { QbackupError } from "../src/errors.js";

/** Inputs are never longer than this (a target may ask for less). */
export const MAX_INPUT_BYTES = 64 * 1024;
export const DEFAULT_SECONDS = 60;
export const DEFAULT_TIMEOUT_MS = 2000;
/** Inputs measured together before coverage is taken once. */
export const DEFAULT_BATCH = 64;
/** The worker's default heap limit; a target that needs more has allocated absurdly. */
export const DEFAULT_MAX_HEAP_MB = 512;
/** Crash files are named by this many hex digits of the input's sha256. */
const CRASH_ID_HEX = 16;
/** 1, 2 or 4 mutations are stacked on each new input. */
const MAX_STACK_LOG2 = 3;
/** Most inserted, deleted or copied ranges are short; the rest may span the whole input. */
const SHORT_RANGE = 16;
const BLOCK = 512;

const REPO_URL = new URL("../", import.meta.url);
const REPO_ROOT = fileURLToPath(REPO_URL);
const DEFAULT_COVERAGE_ROOTS = [new URL("src/", REPO_URL), new URL("dist/", REPO_URL)];
const DEFAULT_CORPUS_ROOT = path.join(REPO_ROOT, "fuzz", "corpus");
const DEFAULT_CRASH_ROOT = path.join(REPO_ROOT, "fuzz", "crashes");

export type FuzzTarget = (data: Buffer) => Promise<void>;

export interface TargetSpec {
  name: string;
  run: FuzzTarget;
  /** Longest input to try (default MAX_INPUT_BYTES). */
  maxLen?: number;
  /** Tokens the mutator inserts or writes over the input (keywords, magic strings). */
  dictionary?: readonly string[];
  /** Offsets inside each 512-byte block worth writing numbers to (tar header fields). */
  blockFields?: readonly number[];
  /** Applied to half of the mutants (to a copy), e.g. to fix tar checksums so mutants get past them. */
  fixup?: (data: Buffer) => Buffer;
}

export interface FuzzOptions {
  seconds?: number;
  /** Stop after this many executions even if time is left (a run of fixed length replays exactly). */
  maxExecutions?: number;
  /** Stop at the first crash. */
  stopOnCrash?: boolean;
  seed?: number;
  timeoutMs?: number;
  batch?: number;
  /** Seeds are read from <corpusRoot>/<target>/. */
  corpusRoot?: string;
  /** Crashes are written to <crashRoot>/<target>/<sha256 prefix>. */
  crashRoot?: string;
  /** If set, every input added to the corpus is also written to <corpusOut>/<target>/<sha256 prefix>. */
  corpusOut?: string;
  /** The module exporting TARGETS, loaded by the worker (default fuzz/targets.ts). */
  targetsModule?: URL;
  /** Only blocks in scripts under these count (default: src/ and dist/ of this repository). */
  coverageRoots?: URL[];
  /** The worker's heap limit; an input that needs more crashes it. */
  maxHeapMb?: number;
}

/** error: the target threw; rejection: it left a promise rejected unhandled; hang; worker: the worker died. */
export type FailureKind = "error" | "rejection" | "hang" | "worker";

/** How one input failed, as the worker (or the watchdog) saw it. */
export interface Failure {
  kind: FailureKind;
  /** First line of the error, e.g. `TypeError: x is undefined`. */
  summary: string;
  /** The top stack frame, for grouping crashes. */
  stackTop: string;
  stack: string;
}

export interface Crash extends Failure {
  input: Buffer;
  /** Where the input was written. */
  file: string;
  /** Inputs that failed the same way (same kind, summary head and stack top). */
  count: number;
}

export interface FuzzReport {
  target: string;
  seed: number;
  executions: number;
  seconds: number;
  execPerSecond: number;
  corpusSize: number;
  blocksCovered: number;
  crashes: Crash[];
}

/** What a target may throw: a QbackupError, except ERR_INTERNAL (a bug by errors.ts's own definition). */
export function isExpectedError(err: unknown): boolean {
  return err instanceof QbackupError && err.code !== "ERR_INTERNAL";
}

export function describeFailure(kind: FailureKind, err: unknown): Failure {
  const stack = err instanceof Error ? (err.stack ?? String(err)) : `non-error thrown: ${String(err)}`;
  const lines = stack.split("\n");
  const summary = err instanceof Error ? `${err.name}: ${err.message.split("\n", 1)[0]}` : lines[0]!;
  const frame = lines.find((l) => l.trimStart().startsWith("at "))?.trim() ?? "(no stack)";
  return { kind, summary, stackTop: frame.replaceAll(REPO_URL.href, "").replaceAll(REPO_ROOT, ""), stack };
}

// ---- deterministic randomness ----

/** sfc32: small, fast, and good enough to drive a mutator. */
export class Rng {
  private a = 0x9e3779b9;
  private b = 0x243f6a88;
  private c = 0xb7e15162;
  private d: number;

  constructor(seed: number) {
    this.d = seed >>> 0;
    for (let i = 0; i < 16; i++) this.u32();
  }

  u32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** 0 ≤ n < bound (0 when bound ≤ 0). */
  below(bound: number): number {
    return bound <= 0 ? 0 : Math.floor((this.u32() / 2 ** 32) * bound);
  }

  chance(p: number): boolean {
    return this.u32() < p * 2 ** 32;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.below(items.length)]!;
  }
}

/** FNV-1a over a string, for seeds. */
export function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

// ---- mutation ----

/** Bytes that matter to our formats: NUL, space, octal and decimal digits, separators, high bits. */
const INTERESTING_BYTES = [
  0x00, 0x01, 0x09, 0x0a, 0x0d, 0x20, 0x22, 0x27, 0x2d, 0x2e, 0x2f, 0x30, 0x37, 0x38, 0x39, 0x3c, 0x3d, 0x3e, 0x7f,
  0x80, 0xff,
];
const INTERESTING_NUMBERS = [
  0,
  1,
  2,
  7,
  8,
  10,
  63,
  64,
  100,
  255,
  256,
  511,
  512,
  513,
  1023,
  1024,
  4096,
  4097,
  10240,
  65535,
  65536,
  2 ** 31 - 1,
  2 ** 31,
  2 ** 32,
  2 ** 33,
  8 ** 11 - 1,
  8 ** 11,
  2 ** 53 - 1,
  2 ** 53,
  1e21,
];
const NUMBER_WIDTHS = [0, 1, 6, 7, 8, 11, 12];

interface MutationContext {
  rng: Rng;
  corpus: readonly Buffer[];
  spec: TargetSpec;
}

function rangeLength(rng: Rng, max: number): number {
  if (max <= 0) return 0;
  return 1 + rng.below(rng.chance(0.8) ? Math.min(SHORT_RANGE, max) : max);
}

/** An offset in the input, half the time on one of the target's header fields. */
function offsetIn(ctx: MutationContext, data: Buffer): number {
  const fields = ctx.spec.blockFields;
  if (fields !== undefined && fields.length > 0 && data.length > 0 && ctx.rng.chance(0.5)) {
    const at = BLOCK * ctx.rng.below(Math.ceil(data.length / BLOCK)) + ctx.rng.pick(fields);
    if (at < data.length) return at;
  }
  return ctx.rng.below(data.length);
}

function numberText(rng: Rng): string {
  const value = rng.chance(0.7) ? rng.pick(INTERESTING_NUMBERS) + rng.below(3) - 1 : rng.below(2 ** 20);
  let text = Math.abs(value).toString(rng.chance(0.6) ? 8 : rng.chance(0.9) ? 10 : 16);
  if (value < 0 || rng.chance(0.05)) text = `-${text}`;
  const width = rng.pick(NUMBER_WIDTHS);
  text = text.padStart(width, rng.chance(0.8) ? "0" : " ");
  return text + rng.pick(["", "\0", " ", " \0"]);
}

function overwrite(data: Buffer, at: number, bytes: Uint8Array): Buffer {
  const out = Buffer.from(data);
  out.set(bytes.subarray(0, Math.max(0, out.length - at)), at);
  return out;
}

function insert(data: Buffer, at: number, bytes: Uint8Array): Buffer {
  return Buffer.concat([data.subarray(0, at), bytes, data.subarray(at)]);
}

type Mutator = (ctx: MutationContext, data: Buffer) => Buffer;

const MUTATORS: readonly Mutator[] = [
  function flipBit({ rng }, data) {
    if (data.length === 0) return Buffer.from([rng.below(256)]);
    const out = Buffer.from(data);
    const at = rng.below(out.length);
    out[at] = out[at]! ^ (1 << rng.below(8));
    return out;
  },
  function setRandomByte({ rng }, data) {
    if (data.length === 0) return Buffer.from([rng.below(256)]);
    return overwrite(data, rng.below(data.length), Buffer.from([rng.below(256)]));
  },
  function setInterestingByte(ctx, data) {
    if (data.length === 0) return Buffer.from([ctx.rng.pick(INTERESTING_BYTES)]);
    const value = ctx.rng.chance(0.3) ? 0x30 + ctx.rng.below(8) : ctx.rng.pick(INTERESTING_BYTES);
    return overwrite(data, offsetIn(ctx, data), Buffer.from([value]));
  },
  function addToByte({ rng }, data) {
    if (data.length === 0) return data;
    const out = Buffer.from(data);
    const at = rng.below(out.length);
    out[at] = (out[at]! + (rng.chance(0.5) ? 1 : -1) * (1 + rng.below(8))) & 0xff;
    return out;
  },
  function writeNumber(ctx, data) {
    const text = Buffer.from(numberText(ctx.rng), "latin1");
    if (data.length === 0 || ctx.rng.chance(0.2)) return insert(data, ctx.rng.below(data.length + 1), text);
    return overwrite(data, offsetIn(ctx, data), text);
  },
  function insertBytes({ rng }, data) {
    const n = rangeLength(rng, SHORT_RANGE * 4);
    const fill = rng.chance(0.5) ? rng.pick(INTERESTING_BYTES) : -1;
    const bytes = Buffer.alloc(n, fill >= 0 ? fill : 0);
    if (fill < 0) for (let i = 0; i < n; i++) bytes[i] = rng.below(256);
    return insert(data, rng.below(data.length + 1), bytes);
  },
  function deleteRange({ rng }, data) {
    if (data.length === 0) return data;
    const at = rng.below(data.length);
    const n = rangeLength(rng, data.length - at);
    return Buffer.concat([data.subarray(0, at), data.subarray(at + n)]);
  },
  function duplicateRange({ rng }, data) {
    if (data.length === 0) return data;
    const from = rng.below(data.length);
    const piece = data.subarray(from, from + rangeLength(rng, data.length - from));
    return insert(data, rng.below(data.length + 1), Buffer.from(piece));
  },
  function copyRangeOver({ rng }, data) {
    if (data.length < 2) return data;
    const from = rng.below(data.length);
    const piece = Buffer.from(data.subarray(from, from + rangeLength(rng, data.length - from)));
    return overwrite(data, rng.below(data.length), piece);
  },
  function splice({ rng, corpus }, data) {
    const other = rng.pick(corpus);
    const cut = rng.below(data.length + 1);
    const from = rng.below(other.length + 1);
    return Buffer.concat([data.subarray(0, cut), other.subarray(from)]);
  },
  function truncate({ rng }, data) {
    if (data.length === 0) return data;
    const at = rng.chance(0.5) ? BLOCK * rng.below(Math.ceil(data.length / BLOCK)) : rng.below(data.length);
    return data.subarray(0, at);
  },
  function extend({ rng }, data) {
    const n = rng.chance(0.5) ? BLOCK * (1 + rng.below(2)) : rangeLength(rng, BLOCK);
    const tail = Buffer.alloc(n);
    if (rng.chance(0.3)) for (let i = 0; i < n; i++) tail[i] = rng.below(256);
    return Buffer.concat([data, tail]);
  },
  function useToken(ctx, data) {
    const tokens = ctx.spec.dictionary;
    if (tokens === undefined || tokens.length === 0) return data;
    const token = Buffer.from(ctx.rng.pick(tokens), "utf8");
    if (data.length === 0 || ctx.rng.chance(0.5)) return insert(data, ctx.rng.below(data.length + 1), token);
    return overwrite(data, offsetIn(ctx, data), token);
  },
];

/** A new input from `base`: 1 to 4 stacked mutations, maybe the target's fixup, capped in length. */
export function mutate(rng: Rng, base: Buffer, corpus: readonly Buffer[], spec: TargetSpec): Buffer {
  const ctx: MutationContext = { rng, corpus, spec };
  const maxLen = Math.min(spec.maxLen ?? MAX_INPUT_BYTES, MAX_INPUT_BYTES);
  let data = base;
  const count = 1 << rng.below(MAX_STACK_LOG2);
  for (let i = 0; i < count; i++) data = rng.pick(MUTATORS)(ctx, data).subarray(0, maxLen);
  if (spec.fixup !== undefined && rng.chance(0.5)) data = spec.fixup(Buffer.from(data)).subarray(0, maxLen);
  return data;
}

// ---- the worker that runs the target ----

/** What fuzz/worker.ts is started with. */
export interface WorkerConfig {
  target: string;
  targetsModule: string;
  /** Only script URLs starting with one of these count. */
  coveragePrefixes: string[];
  /** [sequence number of the input being run, its index in the batch], written by the worker. */
  progress: SharedArrayBuffer;
}

export interface BatchRequest {
  inputs: Uint8Array[];
  /** Take coverage after every input (else once, for the whole batch). */
  each: boolean;
}

export type WorkerMessage = { kind: "ready" } | { kind: "done"; failures: (Failure | null)[]; blocks: Uint32Array[] };

interface BatchResult {
  failures: (Failure | null)[];
  /** One set per input when run `each`, else one for the batch. */
  blocks: Uint32Array[];
}

const WORKER_URL = new URL("./worker.ts", import.meta.url);
const TSX_API = import.meta.resolve("tsx/esm/api");
/** Node 20 workers do not inherit tsx's loader hooks: register them in the worker, then load it. */
const BOOTSTRAP = `const { workerData } = require("node:worker_threads");
import(workerData.tsxApi).then((tsx) => tsx.register()).then(() => import(workerData.entry));`;

class Runner {
  private worker: Worker | undefined;
  private readonly progress = new Int32Array(new SharedArrayBuffer(2 * Int32Array.BYTES_PER_ELEMENT));

  constructor(
    private readonly target: string,
    private readonly options: Required<
      Pick<FuzzOptions, "targetsModule" | "coverageRoots" | "timeoutMs" | "maxHeapMb">
    >,
  ) {}

  private async start(): Promise<Worker> {
    const config: WorkerConfig = {
      target: this.target,
      targetsModule: this.options.targetsModule.href,
      coveragePrefixes: this.options.coverageRoots.map((u) => u.href),
      progress: this.progress.buffer as SharedArrayBuffer,
    };
    const worker = new Worker(BOOTSTRAP, {
      eval: true,
      workerData: { ...config, tsxApi: TSX_API, entry: WORKER_URL.href },
      resourceLimits: { maxOldGenerationSizeMb: this.options.maxHeapMb },
      stdout: true,
      stderr: true,
    });
    worker.stdout.resume(); // targets must not print; do not let them fill a pipe either
    worker.stderr.resume();
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) =>
        reject(new Error(`fuzz worker for ${this.target} failed to start: ${err.message}`));
      worker.once("error", onError);
      worker.once("message", (m: WorkerMessage) => {
        worker.off("error", onError);
        if (m.kind === "ready") resolve();
        else reject(new Error(`fuzz worker for ${this.target}: unexpected first message ${m.kind}`));
      });
    });
    this.worker = worker;
    return worker;
  }

  async stop(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    if (w) await w.terminate();
  }

  /**
   * Runs every input; a hang or a dead worker fails that input, and the rest are run on a fresh
   * worker (unless `stopOnDeath`: then they are left unrun).
   */
  async run(inputs: readonly Buffer[], each: boolean, stopOnDeath = false): Promise<BatchResult> {
    const failures: (Failure | null)[] = inputs.map(() => null);
    const blocks: Uint32Array[] = each ? inputs.map(() => new Uint32Array(0)) : [];
    let pending = inputs.map((_, i) => i);
    while (pending.length > 0) {
      const outcome = await this.runOnce(
        pending.map((i) => inputs[i]!),
        each,
      );
      if ("dead" in outcome) {
        failures[pending[outcome.index]!] = outcome.dead;
        pending = stopOnDeath ? [] : pending.filter((_, k) => k !== outcome.index);
        continue;
      }
      outcome.failures.forEach((f, k) => (failures[pending[k]!] = f));
      if (each) outcome.blocks.forEach((b, k) => (blocks[pending[k]!] = b));
      else blocks.push(...outcome.blocks);
      pending = [];
    }
    return { failures, blocks };
  }

  private async runOnce(inputs: Buffer[], each: boolean): Promise<BatchResult | { dead: Failure; index: number }> {
    const worker = this.worker ?? (await this.start());
    return new Promise((resolve) => {
      let seq = Atomics.load(this.progress, 0);
      let since = Date.now();
      let settled = false;
      const settle = (result: BatchResult | { dead: Failure; index: number }) => {
        settled = true;
        clearInterval(watchdog);
        worker.off("message", onMessage);
        worker.off("error", onError);
        worker.off("exit", onExit);
        resolve(result);
      };
      const dead = async (failure: Failure) => {
        if (settled) return;
        settled = true;
        const index = Math.min(Atomics.load(this.progress, 1), inputs.length - 1);
        this.worker = undefined;
        await worker.terminate();
        settle({ dead: failure, index });
      };
      const watchdog = setInterval(
        () => {
          const now = Atomics.load(this.progress, 0);
          if (now !== seq) {
            seq = now;
            since = Date.now();
          } else if (Date.now() - since > this.options.timeoutMs) {
            const summary = `hang: no result after ${this.options.timeoutMs} ms`;
            void dead({ kind: "hang", summary, stackTop: "(hang)", stack: summary });
          }
        },
        Math.max(10, this.options.timeoutMs / 8),
      );
      const onMessage = (m: WorkerMessage) => {
        if (m.kind === "done" && !settled) settle({ failures: m.failures, blocks: m.blocks });
      };
      const onError = (err: Error) => void dead(describeFailure("worker", err));
      const onExit = (code: number) => void dead(describeFailure("worker", new Error(`worker exited with ${code}`)));
      worker.on("message", onMessage);
      worker.once("error", onError);
      worker.once("exit", onExit);
      const request: BatchRequest = { inputs, each };
      Atomics.store(this.progress, 1, 0);
      worker.postMessage(request);
    });
  }
}

// ---- the loop ----

export function readSeeds(dir: string): Buffer[] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isFile() && !e.name.startsWith("."))
    .map((e) => e.name)
    .sort()
    .map((name) => fs.readFileSync(path.join(dir, name)));
}

/** Fuzzes one target for `seconds`; never throws for what the target does, only for setup problems. */
export async function fuzzTarget(spec: TargetSpec, options: FuzzOptions = {}): Promise<FuzzReport> {
  const seconds = options.seconds ?? DEFAULT_SECONDS;
  const seed = options.seed ?? 1;
  const batchSize = options.batch ?? DEFAULT_BATCH;
  const crashDir = path.join(options.crashRoot ?? DEFAULT_CRASH_ROOT, spec.name);
  const maxLen = Math.min(spec.maxLen ?? MAX_INPUT_BYTES, MAX_INPUT_BYTES);
  const rng = new Rng(hash32(`${seed}:${spec.name}`));
  const runner = new Runner(spec.name, {
    targetsModule: options.targetsModule ?? new URL("./targets.ts", import.meta.url),
    coverageRoots: options.coverageRoots ?? DEFAULT_COVERAGE_ROOTS,
    timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    maxHeapMb: options.maxHeapMb ?? DEFAULT_MAX_HEAP_MB,
  });
  const stopOnCrash = options.stopOnCrash === true;

  const corpus = readSeeds(path.join(options.corpusRoot ?? DEFAULT_CORPUS_ROOT, spec.name)).map((s) =>
    s.subarray(0, maxLen),
  );
  if (corpus.length === 0) corpus.push(Buffer.alloc(0));
  const covered = new Set<number>();
  const crashes = new Map<string, Crash>();
  /** Adds the blocks; true if any was new. */
  const merge = (blocks: Uint32Array): boolean => {
    const before = covered.size;
    for (const b of blocks) covered.add(b);
    return covered.size > before;
  };
  const sha = (input: Buffer) => crypto.createHash("sha256").update(input).digest("hex").slice(0, CRASH_ID_HEX);
  const keep = (input: Buffer) => {
    corpus.push(input);
    if (options.corpusOut === undefined) return;
    const dir = path.join(options.corpusOut, spec.name);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, sha(input)), input);
  };
  const record = (input: Buffer, failure: Failure | null): boolean => {
    if (failure === null) return false;
    const key = `${failure.kind}|${failure.summary.slice(0, 40)}|${failure.stackTop}`;
    const known = crashes.get(key);
    if (known) {
      known.count++;
      return true;
    }
    const file = path.join(crashDir, sha(input));
    fs.mkdirSync(crashDir, { recursive: true });
    fs.writeFileSync(file, input);
    crashes.set(key, { ...failure, input, file, count: 1 });
    return true;
  };

  const started = Date.now();
  let executions = 0;
  try {
    const first = await runner.run(corpus, true, stopOnCrash);
    executions += corpus.length;
    corpus.forEach((input, i) => {
      record(input, first.failures[i]!);
      merge(first.blocks[i]!);
    });

    const stopAt = started + seconds * 1000;
    const maxExecutions = options.maxExecutions ?? Infinity;
    while (Date.now() < stopAt && executions < maxExecutions) {
      if (stopOnCrash && crashes.size > 0) break;
      const batch = Array.from({ length: batchSize }, () => mutate(rng, rng.pick(corpus), corpus, spec));
      const result = await runner.run(batch, false, stopOnCrash);
      executions += batch.length;
      const failed = batch.map((input, i) => record(input, result.failures[i]!));
      if (!result.blocks.some((b) => b.some((x) => !covered.has(x)))) continue;
      // Something new: find which inputs reached it.
      const single = await runner.run(batch, true, stopOnCrash);
      batch.forEach((input, i) => {
        if (merge(single.blocks[i]!) && !failed[i]) keep(input);
      });
      for (const b of result.blocks) merge(b);
    }
  } finally {
    await runner.stop();
  }
  const elapsed = (Date.now() - started) / 1000;
  return {
    target: spec.name,
    seed,
    executions,
    seconds: elapsed,
    execPerSecond: Math.round(executions / Math.max(elapsed, 0.001)),
    corpusSize: corpus.length,
    blocksCovered: covered.size,
    crashes: [...crashes.values()],
  };
}
