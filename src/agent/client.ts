/**
 * The client side of the storage agent, over any spawned command's stdio — typically
 * `ssh host`, whose forced command on the storage host is `qbackup agent --root … --append-only`.
 * A put is published by the agent only after our trailer (size + SHA-256) matched; aborting ends
 * the command, so the agent sees a cut stream and drops its temporary file. The passphrase is
 * never involved: only sealed bytes travel here.
 */
import { createHash } from "node:crypto";
import { QbackupError } from "../errors.js";
import { ByteQueue } from "../runtime/streams.js";
import type { ErrorCode } from "../errors.js";
import { ChildPipe } from "../transport/command-sink.js";
import type { BackupSink } from "../transport/sink.js";
import type { ByteSource } from "../transport/source.js";
import {
  END_FRAME,
  GREETING,
  MAX_LIST_ENTRIES,
  ProtocolReader,
  SEND_FRAME_BYTES,
  formatRequest,
  formatTrailer,
  frameHeader,
  nameProblem,
  parseCount,
  parseListEntry,
  parseReply,
  parseTrailer,
  printable,
} from "./protocol.js";
import type { AgentRequest, ListEntry, PrunePolicy } from "./protocol.js";

/** After an abort, how long the agent command gets to exit on SIGTERM before SIGKILL. */
const ABORT_GRACE_MS = 2000;
/** How long a failed command gets to explain itself (exit status, a last reply line). */
const EXPLAIN_GRACE_MS = 1000;
const WHAT = "storage agent";

const delay = <T>(ms: number, value: T) => new Promise<T>((resolve) => setTimeout(resolve, ms, value));

/** One session with an agent: the spawned command, the greeting, requests and replies. */
class AgentSession {
  readonly pipe: ChildPipe;
  readonly reader: ProtocolReader;

  constructor(
    readonly argv: readonly string[],
    private readonly errorCode: ErrorCode,
    stallMs: number,
  ) {
    this.pipe = new ChildPipe(argv, { what: WHAT, errorCode, stallMs, stdin: true, stallWhat: "did not respond" });
    this.reader = new ProtocolReader(this.pipe, errorCode, WHAT);
  }

  /** Run a protocol step; if it failed because the command died, say how it died instead. */
  async guard<T>(step: () => Promise<T>): Promise<T> {
    try {
      return await step();
    } catch (err) {
      if (this.pipe.failed) throw this.pipe.failed;
      const status = await Promise.race([this.pipe.exit, delay(EXPLAIN_GRACE_MS, undefined)]);
      if (status !== undefined && (status.code !== 0 || status.signal !== null || status.spawnError)) {
        throw await this.pipe.exitFailure();
      }
      if (err instanceof QbackupError) throw err;
      const detail = err instanceof Error ? err.message : String(err);
      throw new QbackupError(this.errorCode, `${WHAT}: ${detail}`, { cause: err });
    }
  }

  /** Data could not be sent: an `error` line the agent wrote before hanging up explains it best. */
  async explainSendFailure(err: unknown, context: string): Promise<unknown> {
    const line = await Promise.race([this.reader.readLine().catch(() => null), delay(EXPLAIN_GRACE_MS, null)]);
    const reply = line === null ? undefined : parseReply(line);
    return reply && !reply.ok ? refusalError(this.errorCode, context, reply.code, reply.message) : err;
  }

  async send(data: Uint8Array, context: string): Promise<void> {
    try {
      await this.pipe.write(data);
    } catch (err) {
      throw await this.explainSendFailure(err, context);
    }
  }

  /** A reply line; an `error` reply becomes the error of this side. */
  async reply(context: string): Promise<string[]> {
    const line = await this.guard(() => this.reader.requireLine(`the reply to ${context}`));
    const reply = parseReply(line);
    if (reply === undefined) {
      throw new QbackupError(this.errorCode, `${WHAT}: unexpected reply to ${context}: '${clip(line)}'`);
    }
    if (!reply.ok) throw refusalError(this.errorCode, context, reply.code, reply.message);
    return reply.args;
  }

  /** Check the greeting, send one request, return the words of its `ok` reply. */
  async start(request: AgentRequest): Promise<string[]> {
    const greeting = await this.guard(() => this.reader.requireLine("the greeting"));
    if (greeting !== GREETING) {
      const reply = parseReply(greeting);
      if (reply && !reply.ok) throw refusalError(this.errorCode, "the connection", reply.code, reply.message);
      throw new QbackupError(this.errorCode, `${WHAT}: not a qbackup agent (it said '${clip(greeting)}')`, {
        hint: "the storage host must run `qbackup agent` as the ssh forced command for this key",
      });
    }
    const line = formatRequest(request);
    const context = line.trim();
    await this.send(Buffer.from(line, "latin1"), context);
    return this.reply(context);
  }

  /** Lines that follow an `ok COUNT` reply. */
  async lines(count: number, context: string): Promise<string[]> {
    const out: string[] = [];
    for (let i = 0; i < count; i++) out.push(await this.guard(() => this.reader.requireLine(context)));
    return out;
  }

  /** End the session: close our side and require exit status 0. */
  async finish(): Promise<void> {
    this.pipe.endInput();
    await this.guard(() => this.pipe.requireSuccess());
  }

  /** SIGTERM first: a local agent cleans up on it, ssh closes the connection (the agent sees a cut stream). */
  async kill(): Promise<void> {
    this.pipe.child.stdin?.destroy();
    this.pipe.kill("SIGTERM");
    const timer = setTimeout(() => this.pipe.kill("SIGKILL"), ABORT_GRACE_MS);
    await this.pipe.exit;
    clearTimeout(timer);
  }

  /** Run a whole request-reply exchange, ending the session either way. */
  async once<T>(run: () => Promise<T>): Promise<T> {
    try {
      const result = await run();
      await this.finish();
      return result;
    } catch (err) {
      await this.kill();
      throw err;
    }
  }
}

function clip(line: string): string {
  return printable(line).slice(0, 80);
}

function refusalError(side: ErrorCode, context: string, wireCode: string, message: string): QbackupError {
  let code = side;
  if (side === "ERR_DEST" && wireCode === "ERR_EXISTS") code = "ERR_DEST_EXISTS";
  if (side === "ERR_DEST" && wireCode === "ERR_FULL") code = "ERR_DEST_FULL";
  return new QbackupError(code, `${WHAT} refused ${context}: ${printable(message)} (${wireCode})`);
}

function checkName(name: string, code: ErrorCode): void {
  const problem = nameProblem(name);
  if (problem !== undefined) throw new QbackupError(code, `${WHAT}: ${problem}`);
}

function describe(name: string, argv: readonly string[]): string {
  return `${name} on ${WHAT} (${argv.join(" ")})`;
}

/**
 * Upload a new backup NAME through the agent that `argv` runs (e.g. `ssh -o BatchMode=yes host`).
 * The first write waits until the agent accepted the name: an existing one is refused at once.
 */
export function agentSink(
  argv: readonly string[],
  name: string,
  stallMs: number,
  location: string = describe(name, argv),
): BackupSink {
  checkName(name, "ERR_DEST");
  const session = new AgentSession(argv, "ERR_DEST", stallMs);
  const context = `put ${name}`;
  const ready = session.start({ op: "put", name });
  ready.catch(() => undefined);
  const hash = createHash("sha256");
  let size = 0;
  let state: "open" | "committed" | "aborted" = "open";

  const abort = async () => {
    if (state !== "open") return;
    state = "aborted";
    await session.kill();
  };

  return {
    location,
    async write(data) {
      if (state !== "open") throw new QbackupError("ERR_INTERNAL", `write to a sink that is ${state}`);
      await ready;
      hash.update(data);
      size += data.length;
      for (let off = 0; off < data.length; off += SEND_FRAME_BYTES) {
        const piece = data.subarray(off, Math.min(data.length, off + SEND_FRAME_BYTES));
        await session.send(frameHeader(piece.length), context);
        await session.send(piece, context);
      }
    },
    async commit() {
      if (state !== "open") throw new QbackupError("ERR_INTERNAL", `commit of a sink that is ${state}`);
      try {
        await ready;
        const sha256 = hash.digest("hex");
        await session.send(Buffer.concat([END_FRAME, Buffer.from(formatTrailer(size, sha256), "latin1")]), context);
        const args = await session.reply(context);
        if (args.length !== 2 || parseCount(args[0]) !== size || args[1] !== sha256) {
          throw new QbackupError("ERR_DEST", `${WHAT}: the stored ${name} does not match what was sent`);
        }
        await session.finish();
        state = "committed";
      } catch (err) {
        await abort();
        throw err;
      }
    },
    abort,
  };
}

/**
 * Read backup NAME from the agent. Not seekable. The data is checked against the trailer (size
 * and SHA-256) before its last byte is handed out, so a cut or altered stream is always an error.
 */
export function agentSource(
  argv: readonly string[],
  name: string,
  stallMs: number,
  description: string = describe(name, argv),
): ByteSource {
  checkName(name, "ERR_SOURCE");
  const session = new AgentSession(argv, "ERR_SOURCE", stallMs);
  const ready = session.start({ op: "get", name }).then((args) => {
    const size = args.length === 1 ? parseCount(args[0]) : undefined;
    if (size === undefined) throw new QbackupError("ERR_SOURCE", `${WHAT}: malformed reply to get ${name}`);
    return size;
  });
  ready.catch(() => undefined);
  const hash = createHash("sha256");
  const pending = new ByteQueue();
  let received = 0;
  let done = false;
  let failure: unknown;
  const tooLong = () => new QbackupError("ERR_SOURCE", `${WHAT}: ${name} is longer than announced`);

  /** One more frame; after the last announced byte also the end frame and the trailer, verified. */
  const pull = async (declared: number) => {
    const frame = await session.guard(() => session.reader.readFrame());
    if (frame !== null) {
      received += frame.length;
      if (received > declared) throw tooLong();
      hash.update(frame);
      pending.push(frame);
      if (received < declared) return;
      if ((await session.guard(() => session.reader.readFrame())) !== null) throw tooLong();
    }
    const line = await session.guard(() => session.reader.requireLine(`the end of ${name}`));
    const trailer = parseTrailer(line);
    if (trailer === undefined) {
      const reply = parseReply(line);
      if (reply && !reply.ok) throw refusalError("ERR_SOURCE", `get ${name}`, reply.code, reply.message);
      throw new QbackupError("ERR_SOURCE", `${WHAT}: malformed trailer after ${name}`);
    }
    if (trailer.size !== received || received !== declared || trailer.sha256 !== hash.digest("hex")) {
      throw new QbackupError(
        "ERR_SOURCE",
        `${WHAT}: ${name} arrived incomplete or altered (${received} of ${declared} bytes)`,
      );
    }
    done = true;
  };

  const source: ByteSource = {
    description,
    seekable: false,
    get bytesRead() {
      return received;
    },
    async read(length) {
      if (failure !== undefined) throw failure;
      try {
        const declared = await ready;
        while (pending.length < length && !done) await pull(declared);
      } catch (err) {
        failure = err;
        throw err;
      }
      return pending.take(length);
    },
    async skip(length) {
      let skipped = 0;
      while (skipped < length) {
        const piece = await source.read(Math.min(SEND_FRAME_BYTES, length - skipped));
        if (piece.length === 0) break;
        skipped += piece.length;
      }
      return skipped;
    },
    async close(abandon = false) {
      if (abandon || !done) return session.kill();
      await session.finish();
    },
  };
  return source;
}

/** What the agent stores, by name, with the agent's sizes and mtimes. */
export function agentList(argv: readonly string[], stallMs: number): Promise<ListEntry[]> {
  const session = new AgentSession(argv, "ERR_SOURCE", stallMs);
  return session.once(async () => {
    const args = await session.start({ op: "list" });
    const count = args.length === 1 ? parseCount(args[0], MAX_LIST_ENTRIES) : undefined;
    if (count === undefined) throw new QbackupError("ERR_SOURCE", `${WHAT}: malformed reply to list`);
    return (await session.lines(count, "the end of the list")).map((line) => {
      const entry = parseListEntry(line);
      if (entry === undefined) throw new QbackupError("ERR_SOURCE", `${WHAT}: malformed list entry '${clip(line)}'`);
      return entry;
    });
  });
}

/** Delete one stored backup (an append-only agent refuses). */
export function agentDelete(argv: readonly string[], name: string, stallMs: number): Promise<void> {
  checkName(name, "ERR_DEST");
  const session = new AgentSession(argv, "ERR_DEST", stallMs);
  return session.once(async () => {
    await session.start({ op: "delete", name });
  });
}

/** Prune by the agent's own mtimes (an append-only agent refuses); returns the deleted names. */
export function agentPrune(argv: readonly string[], policy: PrunePolicy, stallMs: number): Promise<string[]> {
  const session = new AgentSession(argv, "ERR_DEST", stallMs);
  return session.once(async () => {
    const args = await session.start({ op: "prune", policy });
    const count = args.length === 1 ? parseCount(args[0], MAX_LIST_ENTRIES) : undefined;
    if (count === undefined) throw new QbackupError("ERR_DEST", `${WHAT}: malformed reply to prune`);
    return session.lines(count, "the end of the prune reply");
  });
}
