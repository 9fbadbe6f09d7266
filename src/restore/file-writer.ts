/**
 * Small files written off the main thread. A home directory holds tens of thousands of small
 * files; creating, writing, chmod-ing and dating each costs five system calls, and on the main
 * thread those calls held up the decompression and parsing of the files after them while the
 * other core sat idle. Here the main thread hands complete files over in batches (one transfer per
 * batch) to a worker thread that makes the calls, and goes on.
 *
 * The worker only creates files, with O_EXCL | O_NOFOLLOW, at paths the caller checked and whose
 * parent directories the caller created; it stops at its first failure, which the caller gets
 * from the next write() or from flush() as a destination error naming the file. flush() returns
 * once every file handed over exists with its content, mode and time.
 */
import { constants as fsConstants } from "node:fs";
import { Worker } from "node:worker_threads";
import { destinationError } from "../errors.js";

/** A batch is sent once it holds this many bytes or files. */
const BATCH_BYTES = 1024 * 1024;
const BATCH_FILES = 512;
/** Batches sent and not yet written; write() waits beyond this (bounded memory). */
const MAX_IN_FLIGHT = 4;

/** How every restored file is created: new (never an existing one), never through a symlink. */
export const CREATE_FLAGS = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW;

interface FileRecord {
  path: string;
  offset: number;
  length: number;
  mode: number;
  mtime: number;
}

/** `{files, data}` → `{}` or `{failed: {path, code, message}}`, one reply per batch, in order. */
const WORKER_SOURCE = String.raw`
"use strict";
const { parentPort, workerData } = require("node:worker_threads");
const fs = require("node:fs");
let failed = false;
parentPort.on("message", ({ files, data }) => {
  if (failed) return parentPort.postMessage({});
  const bytes = new Uint8Array(data);
  for (const f of files) {
    try {
      const fd = fs.openSync(f.path, workerData.flags, 0o600);
      try {
        if (f.length > 0) fs.writeSync(fd, bytes, f.offset, f.length);
        fs.fchmodSync(fd, f.mode);
        fs.futimesSync(fd, f.mtime, f.mtime);
      } finally {
        fs.closeSync(fd);
      }
    } catch (err) {
      failed = true;
      return parentPort.postMessage({ failed: { path: f.path, code: err.code, message: err.message } });
    }
  }
  parentPort.postMessage({});
});
`;

type Reply = { failed?: { path: string; code?: string; message: string } };

export class SmallFileWriter {
  private readonly worker: Worker;
  private files: FileRecord[] = [];
  private pieces: Buffer[] = [];
  private bytes = 0;
  private inFlight = 0;
  private failure: Error | undefined;
  private readonly waiting: Array<() => void> = [];

  constructor() {
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { flags: CREATE_FLAGS } });
    this.worker.unref();
    this.worker.on("message", (reply: Reply) => {
      if (--this.inFlight === 0) this.worker.unref();
      if (reply.failed !== undefined && this.failure === undefined) {
        const { path, code, message } = reply.failed;
        this.failure = destinationError(Object.assign(new Error(message), { code }), path);
      }
      this.wake();
    });
    const gone = (err: Error) => {
      this.failure ??= err;
      this.inFlight = 0;
      this.wake();
    };
    this.worker.on("error", gone);
    this.worker.on("exit", () => gone(new Error("the file writer stopped")));
  }

  /** Hands over a complete file: created at `file` with `content`, then given `mode` and `mtime`. */
  async write(file: string, content: Buffer, mode: number, mtime: number): Promise<void> {
    this.check();
    this.files.push({ path: file, offset: this.bytes, length: content.length, mode, mtime });
    this.pieces.push(content);
    this.bytes += content.length;
    if (this.bytes >= BATCH_BYTES || this.files.length >= BATCH_FILES) {
      this.send();
      while (this.inFlight > MAX_IN_FLIGHT && this.failure === undefined) await this.settled();
    }
  }

  /** Waits until every file handed over is written; throws the first failure. */
  async flush(): Promise<void> {
    this.send();
    while (this.inFlight > 0 && this.failure === undefined) await this.settled();
    this.check();
  }

  /** Ends the worker (after flush(), or to give up: files not yet written are not). */
  async close(): Promise<void> {
    await this.worker.terminate();
  }

  private send(): void {
    if (this.files.length === 0) return;
    const data = new Uint8Array(this.bytes); // an ArrayBuffer of its own, moved to the worker
    let at = 0;
    for (const piece of this.pieces) {
      data.set(piece, at);
      at += piece.length;
    }
    this.worker.ref(); // files being written keep the process alive; an idle writer does not
    this.worker.postMessage({ files: this.files, data: data.buffer }, [data.buffer]);
    this.inFlight++;
    this.files = [];
    this.pieces = [];
    this.bytes = 0;
  }

  private check(): void {
    if (this.failure !== undefined) throw this.failure;
  }

  private settled(): Promise<void> {
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private wake(): void {
    for (const resolve of this.waiting.splice(0)) resolve();
  }
}
