/**
 * scrypt on WebAssembly SIMD (the core in romix-wat.ts), run on worker threads: one key at a time
 * per worker, as many workers as cores, each keeping its module memory from one key to the next
 * (no page faults after the first key of a size) and ending after a few idle seconds.
 *
 * Every worker proves itself before its first key: it derives a known answer both with the module
 * and with node:crypto, and is only used if the two agree. If one does not (an engine that
 * miscompiles SIMD) or a worker cannot start, the module is given up for the rest of the process
 * and every key, including the ones that were waiting, comes from the fallback implementation
 * (libscrypt-kdf or node:crypto, kdf.ts); so do keys whose memory the module cannot address.
 */
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import type { ScryptKdf } from "./kdf.js";
import type { ScryptParams } from "./params.js";
import { ROMIX_WASM_BASE64 } from "./romix-wasm.js";

/** A compiled WebAssembly.Module (TypeScript's libs here do not type the WebAssembly global). */
type CompiledModule = object;
const engine = (globalThis as { WebAssembly?: { Module: new (bytes: Uint8Array) => CompiledModule } }).WebAssembly;

/** wasm32 addresses 4 GiB; the module needs two blocks and V below that (64 KiB pages). */
const MAX_MODULE_BYTES = 2 ** 32 - 2 ** 16;
/** B, the PBKDF2 output the worker holds outside the module (128·r·p bytes). */
const MAX_B_BYTES = 2 ** 30;
/** An idle worker (and its memory) lasts this long. */
const IDLE_MS = 5000;

/**
 * The worker: `{id, passphrase, salt, logN, r, p, keyLength}` → `{id, key}` or `{id, error}`. Its
 * first message is `{ready: true}` once the known answer matched, or `{ready: false, error}`.
 * Words move between PBKDF2's byte order and the module's diagonal order (romix-wat.ts) byte by
 * byte, so the host's endianness does not matter.
 */
const WORKER_SOURCE = String.raw`
"use strict";
const { parentPort, workerData } = require("node:worker_threads");
const { pbkdf2Sync, scryptSync } = require("node:crypto");
const { memory, fill, mix } = new WebAssembly.Instance(workerData.module, {}).exports;
const PAGE = 65536;

function reserve(bytes) {
  const pages = Math.ceil(bytes / PAGE) - memory.buffer.byteLength / PAGE;
  if (pages > 0) memory.grow(pages);
}

/** Block k of b into X, or X back into block k of b; position j of each 64 bytes holds word 5j mod 16. */
function move(b, k, block, toModule) {
  const x = new Uint8Array(memory.buffer, 0, block);
  for (let piece = 0; piece < block; piece += 64) {
    for (let j = 0; j < 16; j++) {
      const at = k * block + piece + ((5 * j) % 16) * 4;
      if (toModule) x.set(b.subarray(at, at + 4), piece + 4 * j);
      else b.set(x.subarray(piece + 4 * j, piece + 4 * j + 4), at);
    }
  }
}

function scrypt(passphrase, salt, logN, r, p, keyLength) {
  const n = 2 ** logN;
  const block = 128 * r;
  const v = 2 * block;
  reserve(v + block * n);
  const b = pbkdf2Sync(passphrase, salt, 1, block * p, "sha256");
  for (let k = 0; k < p; k++) {
    move(b, k, block, true);
    fill(r, v, n);
    mix(r, n, v, n);
    move(b, k, block, false);
  }
  return pbkdf2Sync(passphrase, b, 1, keyLength, "sha256");
}

const check = workerData.check;
const want = scryptSync(check.passphrase, check.salt, 64, { N: 2 ** check.logN, r: check.r, p: check.p });
const got = scrypt(check.passphrase, check.salt, check.logN, check.r, check.p, 64);
if (!got.equals(want)) {
  parentPort.postMessage({ ready: false, error: "the WebAssembly scrypt gave a wrong key on the known answer" });
} else {
  parentPort.postMessage({ ready: true });
  parentPort.on("message", (job) => {
    try {
      const key = new Uint8Array(scrypt(job.passphrase, job.salt, job.logN, job.r, job.p, job.keyLength));
      parentPort.postMessage({ id: job.id, key }, [key.buffer]);
    } catch (err) {
      const outOfMemory = err instanceof RangeError && /memory/i.test(err.message);
      parentPort.postMessage({ id: job.id, error: err instanceof Error ? err.message : String(err), outOfMemory });
    }
  });
}
`;

/** The known answer each worker checks first: cheap, and with r and p not 1. */
const CHECK = { passphrase: "qbackup known answer", salt: "WebAssembly against node:crypto", logN: 8, r: 8, p: 2 };

type Reply =
  | { ready: true }
  | { ready: false; error: string }
  | { id: number; key: Uint8Array }
  | { id: number; error: string; outOfMemory: boolean };

/** The module could not grow its memory to what the parameters need. */
class ModuleOutOfMemory extends Error {}

/** A worker that passed its check, and the job it runs (at most one). */
class RomixWorker {
  private pending: { id: number; resolve: (key: Buffer) => void; reject: (err: Error) => void } | undefined;
  private nextId = 1;
  alive = true;
  idleTimer: NodeJS.Timeout | undefined;

  private constructor(
    private readonly worker: Worker,
    private readonly onGone: (w: RomixWorker) => void,
  ) {
    worker.on("message", (reply: Reply) => {
      const job = this.pending;
      if (job === undefined || !("id" in reply) || reply.id !== job.id) return;
      this.pending = undefined;
      this.worker.unref();
      if ("key" in reply) job.resolve(Buffer.from(reply.key.buffer, reply.key.byteOffset, reply.key.byteLength));
      else job.reject(reply.outOfMemory ? new ModuleOutOfMemory(reply.error) : new Error(reply.error));
    });
    const gone = (why: string) => {
      if (!this.alive) return;
      this.alive = false;
      this.onGone(this);
      this.pending?.reject(new Error(why));
      this.pending = undefined;
    };
    worker.on("error", (err) => gone(`the scrypt worker failed: ${err.message}`));
    worker.on("exit", () => gone("the scrypt worker stopped"));
  }

  /** A new worker once it passed its known-answer check; rejects with the reason if it did not. */
  static start(module: CompiledModule, onGone: (w: RomixWorker) => void): Promise<RomixWorker> {
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { module, check: CHECK } });
    return new Promise((resolve, reject) => {
      const early = (err: Error) => reject(new Error(`the scrypt worker failed to start: ${err.message}`));
      worker.once("error", early);
      worker.once("message", (reply: Reply) => {
        worker.off("error", early);
        if ("ready" in reply && reply.ready) {
          worker.unref();
          resolve(new RomixWorker(worker, onGone));
        } else {
          void worker.terminate();
          reject(new Error("error" in reply ? reply.error : "the scrypt worker did not start"));
        }
      });
    });
  }

  derive(passphrase: Uint8Array, salt: Uint8Array, params: ScryptParams, keyLength: number): Promise<Buffer> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending = { id, resolve, reject };
      this.worker.ref(); // a key being derived keeps the process alive; an idle worker does not
      this.worker.postMessage({ id, passphrase, salt, logN: params.logN, r: params.r, p: params.p, keyLength });
    });
  }

  terminate(): void {
    void this.worker.terminate();
  }
}

export class WasmScrypt implements ScryptKdf {
  readonly name = "WebAssembly SIMD";
  private readonly idle: RomixWorker[] = [];
  private readonly queue: Array<{ resolve: (w: RomixWorker) => void; reject: (err: unknown) => void }> = [];
  private workers = 0;
  /** Set when a worker failed its known answer or could not start: the fallback derives every key then. */
  private unusable: Error | undefined;

  private constructor(
    private readonly module: CompiledModule,
    private readonly fallback: () => ScryptKdf,
    private readonly maxWorkers: number,
  ) {}

  /**
   * Null when this engine cannot compile the module (no WebAssembly, or no SIMD). `fallback` gives
   * the implementation behind it, asked for only when a key first needs it. `module` replaces the
   * built-in bytes (tests), `maxWorkers` the number of cores.
   */
  static load(
    fallback: () => ScryptKdf,
    options: { maxWorkers?: number; module?: Uint8Array } = {},
  ): WasmScrypt | null {
    if (engine === undefined) return null;
    let module: CompiledModule;
    try {
      module = new engine.Module(options.module ?? Buffer.from(ROMIX_WASM_BASE64, "base64"));
    } catch {
      return null;
    }
    return new WasmScrypt(module, fallback, Math.max(1, options.maxWorkers ?? availableParallelism()));
  }

  /** Why the module is not used (a worker failed its known answer or to start); undefined while it is. */
  get failure(): Error | undefined {
    return this.unusable;
  }

  /** Whether the module can hold these parameters' memory (else the fallback derives the key). */
  fits(params: ScryptParams): boolean {
    const block = 128 * params.r;
    return block * (2 + 2 ** params.logN) <= MAX_MODULE_BYTES && block * params.p <= MAX_B_BYTES;
  }

  /** A function of its own (not a method), as every ScryptKdf's: callers may pass it around. */
  readonly derive: ScryptKdf["derive"] = async (passphrase, salt, params, keyLength, maxmem) => {
    const viaFallback = () => {
      const fallback = this.fallback();
      return fallback.derive(passphrase, salt, params, keyLength, maxmem).catch((err: unknown) => {
        throw new Error(`${fallback.name}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      });
    };
    if (this.unusable !== undefined || !this.fits(params)) return viaFallback();
    let worker: RomixWorker;
    try {
      worker = await this.take();
    } catch {
      return viaFallback(); // no worker could start, or one failed the known answer: see `failure`
    }
    try {
      return await worker.derive(passphrase, salt, params, keyLength);
    } catch (err) {
      // the module's memory could not grow this far; the fallback allocates outside it
      if (err instanceof ModuleOutOfMemory) return viaFallback();
      throw err;
    } finally {
      this.give(worker);
    }
  };

  private take(): Promise<RomixWorker> {
    if (this.unusable !== undefined) return Promise.reject(this.unusable);
    const ready = this.idle.pop();
    if (ready !== undefined) {
      clearTimeout(ready.idleTimer);
      return Promise.resolve(ready);
    }
    if (this.workers < this.maxWorkers) return this.spawn();
    return new Promise((resolve, reject) => this.queue.push({ resolve, reject }));
  }

  private spawn(): Promise<RomixWorker> {
    this.workers++;
    return RomixWorker.start(this.module, (w) => this.forget(w)).catch((err: unknown) => {
      this.workers--;
      this.unusable ??= err instanceof Error ? err : new Error(String(err));
      for (const waiting of this.queue.splice(0)) waiting.reject(this.unusable);
      throw this.unusable;
    });
  }

  private give(worker: RomixWorker): void {
    const waiting = this.queue.shift();
    if (!worker.alive) {
      // it crashed: whoever waits gets a new one
      if (waiting !== undefined) this.spawn().then(waiting.resolve, waiting.reject);
      return;
    }
    if (waiting !== undefined) {
      waiting.resolve(worker);
      return;
    }
    this.idle.push(worker);
    worker.idleTimer = setTimeout(() => worker.terminate(), IDLE_MS).unref();
  }

  /** A worker that ended (terminated when idle, or crashed) no longer counts. */
  private forget(worker: RomixWorker): void {
    const at = this.idle.indexOf(worker);
    if (at >= 0) this.idle.splice(at, 1);
    this.workers--;
  }
}
