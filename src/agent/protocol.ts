/**
 * The storage agent's wire protocol: framing and parsing shared by the agent (server.ts) and the
 * client (client.ts). Hand-written because it is tiny and every bound has to be checked before
 * memory is allocated; no framing library gives that for a protocol this small.
 *
 * The agent speaks first, on its stdout:
 *     qbackup-agent 1\n                      (or `error CODE message\n` if it cannot serve at all)
 * The client then sends requests, one ASCII line each, at most MAX_LINE_BYTES with the newline:
 *     put NAME  |  get NAME  |  list  |  delete NAME  |  prune [--keep-within DURATION] [--keep-last N]
 * Every request gets a reply line: `ok …\n` or `error CODE message\n` (CODE is one of WIRE_ERRORS,
 * message is printable ASCII). A refused request leaves the session usable; a protocol violation
 * (unknown verb, bad framing, a cut or corrupt stream) ends it and the agent exits non-zero.
 *
 *   put NAME   → `ok ready`; only then the client sends the data as frames, then the trailer;
 *               → `ok SIZE SHA256HEX` once the file is durable and published under NAME.
 *   get NAME   → `ok SIZE`, then the data as frames, then the trailer (or an `error …` line in the
 *               trailer's place if reading failed half-way).
 *   list       → `ok COUNT`, then COUNT lines `NAME SIZE MTIME-ISO-8601`.
 *   delete NAME → `ok`.   prune SPEC → `ok COUNT`, then COUNT lines, one deleted NAME each.
 *
 * Data frames: a u32 big-endian length and that many bytes, length ≤ MAX_FRAME_BYTES. A frame of
 * length zero ends the data and is followed by the trailer line `end SIZE SHA256HEX\n` (total
 * bytes and SHA-256 of all of them). A stream cut anywhere before the trailer — even exactly on a
 * frame boundary — therefore never looks complete to either side.
 */
import { QbackupError } from "../errors.js";
import type { ErrorCode } from "../errors.js";

export const PROTOCOL_VERSION = 1;
export const GREETING = `qbackup-agent ${PROTOCOL_VERSION}`;
/** A request, reply or trailer line, newline included. */
export const MAX_LINE_BYTES = 1024;
/** Largest frame anyone may send; a bigger length is a protocol violation, checked before allocating. */
export const MAX_FRAME_BYTES = 4 * 1024 * 1024;
/** What the agent and client send per frame. */
export const SEND_FRAME_BYTES = 1024 * 1024;
export const FRAME_HEADER_BYTES = 4;
/** Most entries a `list` or `prune` reply may announce. */
export const MAX_LIST_ENTRIES = 1_000_000;
export const MAX_NAME_LENGTH = 255;
/** A stored backup's name: one path component, never hidden (temp files start with a dot). */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/;
/** Cap on what `--keep-last` and a duration's number may be. */
const MAX_KEEP_NUMBER = 999_999_999;
const SHA256_HEX = /^[0-9a-f]{64}$/;
const DECIMAL = /^(0|[1-9][0-9]{0,15})$/;
const MAX_MESSAGE_CHARS = 400;

export const WIRE_ERRORS = [
  "ERR_PROTOCOL", // malformed request, bad frame, cut stream: the session ends
  "ERR_INTEGRITY", // trailer size or SHA-256 differs from the data: the session ends
  "ERR_NAME", // not a valid backup name
  "ERR_EXISTS", // put of a name that is already stored
  "ERR_NOT_FOUND", // get/delete of a name that is not stored
  "ERR_NOT_REGULAR", // the name is a symlink, directory or other non-regular file
  "ERR_APPEND_ONLY", // delete/prune on an append-only agent
  "ERR_PRUNE_SPEC", // a prune request without a valid policy
  "ERR_FULL", // the storage is full
  "ERR_IO", // any other storage failure
] as const;
export type WireErrorCode = (typeof WIRE_ERRORS)[number];

const DURATION_UNITS_MS: Record<string, number> = {
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};

export interface PrunePolicy {
  /** Keep every backup whose (agent-side) mtime is at most this many milliseconds old. */
  keepWithinMs?: number;
  /** Keep the N newest backups. */
  keepLast?: number;
}

export type AgentRequest =
  | { op: "put"; name: string }
  | { op: "get"; name: string }
  | { op: "delete"; name: string }
  | { op: "list" }
  | { op: "prune"; policy: PrunePolicy };

export type Parsed<T> = { ok: true; value: T } | { ok: false; code: WireErrorCode; message: string };

export type Reply = { ok: true; args: string[] } | { ok: false; code: string; message: string };

export interface Trailer {
  size: number;
  sha256: string;
}

export interface ListEntry {
  name: string;
  size: number;
  mtime: Date;
}

/** Why `name` is not a valid backup name, or undefined if it is one. */
export function nameProblem(name: string): string | undefined {
  if (name.length === 0) return "empty name";
  if (name.length > MAX_NAME_LENGTH) return `name longer than ${MAX_NAME_LENGTH} characters`;
  if (name.includes("..")) return `name '${printable(name)}' contains '..'`;
  if (!NAME_PATTERN.test(name)) {
    return `name '${printable(name)}' is not one path component of letters, digits, '.', '_' or '-' (not starting with '.')`;
  }
  return undefined;
}

export function isValidName(name: string): boolean {
  return nameProblem(name) === undefined;
}

/** `30d`, `12h`, `90m`, `2w`, `3600s` → milliseconds; undefined if not such a duration. */
export function parseDuration(text: string): number | undefined {
  const m = /^([0-9]{1,9})([smhdw])$/.exec(text);
  if (!m) return undefined;
  const n = Number(m[1]);
  if (n === 0 || n > MAX_KEEP_NUMBER) return undefined;
  return n * DURATION_UNITS_MS[m[2]!]!;
}

/**
 * The names a prune deletes: everything not kept by either rule. `keepLast` keeps the N newest by
 * mtime (ties: the later name); `keepWithinMs` keeps every file at most that old (and any from the
 * future, clock skew being no reason to delete).
 */
export function planPrune(
  entries: ReadonlyArray<{ name: string; mtimeMs: number }>,
  policy: PrunePolicy,
  nowMs: number,
): string[] {
  const newestFirst = [...entries].sort((a, b) => b.mtimeMs - a.mtimeMs || (a.name < b.name ? 1 : -1));
  const doomed: string[] = [];
  newestFirst.forEach((e, i) => {
    const keptByCount = policy.keepLast !== undefined && i < policy.keepLast;
    const keptByAge = policy.keepWithinMs !== undefined && nowMs - e.mtimeMs <= policy.keepWithinMs;
    if (!keptByCount && !keptByAge) doomed.push(e.name);
  });
  return doomed.sort();
}

/** `--keep-within 30d --keep-last 5` (either or both, each once) → a policy. */
export function parsePruneSpec(words: readonly string[]): Parsed<PrunePolicy> {
  const policy: PrunePolicy = {};
  const bad = (message: string): Parsed<PrunePolicy> => ({ ok: false, code: "ERR_PRUNE_SPEC", message });
  for (let i = 0; i < words.length; i += 2) {
    const flag = words[i]!;
    const value = words[i + 1];
    if (value === undefined) return bad(`prune: ${printable(flag)} needs a value`);
    if (flag === "--keep-within" && policy.keepWithinMs === undefined) {
      const ms = parseDuration(value);
      if (ms === undefined) return bad(`prune: '${printable(value)}' is not a duration like 30d, 12h, 2w`);
      policy.keepWithinMs = ms;
    } else if (flag === "--keep-last" && policy.keepLast === undefined) {
      if (!/^[0-9]{1,9}$/.test(value)) return bad(`prune: '${printable(value)}' is not a count`);
      policy.keepLast = Number(value);
    } else {
      return bad(`prune: unexpected '${printable(flag)}' (give --keep-within DURATION and/or --keep-last N once)`);
    }
  }
  if (policy.keepWithinMs === undefined && policy.keepLast === undefined) {
    return bad("prune: give --keep-within DURATION and/or --keep-last N; refusing to delete everything");
  }
  return { ok: true, value: policy };
}

export function formatPruneSpec(policy: PrunePolicy): string {
  const words: string[] = [];
  if (policy.keepWithinMs !== undefined) words.push("--keep-within", `${Math.ceil(policy.keepWithinMs / 1000)}s`);
  if (policy.keepLast !== undefined) words.push("--keep-last", String(policy.keepLast));
  return words.join(" ");
}

/** A request line (without its newline). ERR_PROTOCOL means the session must end. */
export function parseRequest(line: string): Parsed<AgentRequest> {
  const words = line.split(" ");
  const verb = words[0]!;
  const args = words.slice(1);
  const violation = (message: string): Parsed<AgentRequest> => ({ ok: false, code: "ERR_PROTOCOL", message });
  if (words.some((w) => w.length === 0)) return violation("request has empty words (one space between words)");
  switch (verb) {
    case "put":
    case "get":
    case "delete": {
      if (args.length !== 1) return violation(`${verb} takes exactly one NAME`);
      const name = args[0]!;
      const problem = nameProblem(name);
      if (problem !== undefined) return { ok: false, code: "ERR_NAME", message: problem };
      return { ok: true, value: { op: verb, name } };
    }
    case "list":
      if (args.length !== 0) return violation("list takes no arguments");
      return { ok: true, value: { op: "list" } };
    case "prune": {
      const policy = parsePruneSpec(args);
      if (!policy.ok) return policy;
      return { ok: true, value: { op: "prune", policy: policy.value } };
    }
    default:
      return violation(`unknown request '${printable(verb.slice(0, 32))}'`);
  }
}

export function formatRequest(request: AgentRequest): string {
  switch (request.op) {
    case "list":
      return "list\n";
    case "prune":
      return `prune ${formatPruneSpec(request.policy)}\n`;
    default: {
      const problem = nameProblem(request.name);
      if (problem !== undefined) throw new QbackupError("ERR_USAGE", `storage agent: ${problem}`);
      return `${request.op} ${request.name}\n`;
    }
  }
}

/** A reply line (without its newline); undefined if it is neither `ok …` nor `error CODE …`. */
export function parseReply(line: string): Reply | undefined {
  if (line === "ok") return { ok: true, args: [] };
  if (line.startsWith("ok ")) return { ok: true, args: line.slice(3).split(" ") };
  const m = /^error (ERR_[A-Z_]{1,40})(?: (.*))?$/.exec(line);
  if (m) return { ok: false, code: m[1]!, message: m[2] ?? "" };
  return undefined;
}

export function okLine(...args: Array<string | number>): string {
  return args.length === 0 ? "ok\n" : `ok ${args.join(" ")}\n`;
}

/** One `error CODE message` line, the message made printable and short enough for one line. */
export function errorLine(code: WireErrorCode, message: string): string {
  return `error ${code} ${printable(message).slice(0, MAX_MESSAGE_CHARS)}\n`;
}

export function formatTrailer(size: number, sha256: string): string {
  return `end ${size} ${sha256}\n`;
}

export function parseTrailer(line: string): Trailer | undefined {
  const m = /^end ([0-9]+) ([0-9a-f]+)$/.exec(line);
  if (!m || !DECIMAL.test(m[1]!) || !SHA256_HEX.test(m[2]!)) return undefined;
  const size = Number(m[1]);
  if (!Number.isSafeInteger(size)) return undefined;
  return { size, sha256: m[2]! };
}

/** A decimal size or count, as sent in `ok SIZE` / `ok COUNT`; undefined if malformed. */
export function parseCount(text: string | undefined, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (text === undefined || !DECIMAL.test(text)) return undefined;
  const n = Number(text);
  return Number.isSafeInteger(n) && n <= max ? n : undefined;
}

export function formatListEntry(entry: ListEntry): string {
  return `${entry.name} ${entry.size} ${entry.mtime.toISOString()}\n`;
}

export function parseListEntry(line: string): ListEntry | undefined {
  const [name, size, mtime, ...rest] = line.split(" ");
  if (rest.length > 0 || name === undefined || !isValidName(name)) return undefined;
  const n = parseCount(size);
  if (n === undefined || mtime === undefined || !/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,3})?Z$/.test(mtime)) {
    return undefined;
  }
  const date = new Date(mtime);
  return Number.isNaN(date.getTime()) ? undefined : { name, size: n, mtime: date };
}

/** The 4-byte header of a data frame. */
export function frameHeader(length: number): Buffer {
  if (!Number.isInteger(length) || length < 0 || length > MAX_FRAME_BYTES) {
    throw new QbackupError("ERR_INTERNAL", `frame length ${length} out of range`);
  }
  const header = Buffer.alloc(FRAME_HEADER_BYTES);
  header.writeUInt32BE(length, 0);
  return header;
}

/** The zero-length frame that ends the data. */
export const END_FRAME: Buffer = Buffer.alloc(FRAME_HEADER_BYTES);

/** Printable ASCII only, so a message can never break the one-line framing or a terminal. */
export function printable(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, "?");
}

/** Where a ProtocolReader gets bytes from: the next chunk, or null at end of input. */
export interface ChunkPuller {
  next(): Promise<Uint8Array | null>;
}

/** Adapt any async iterable of bytes (a Node Readable is one) to a ChunkPuller. */
export function pullerFrom(iterable: AsyncIterable<Uint8Array>): ChunkPuller & { stop(): void } {
  const it = iterable[Symbol.asyncIterator]();
  return {
    async next() {
      const r = await it.next();
      return r.done ? null : r.value;
    },
    stop() {
      void it.return?.().catch(() => undefined);
    },
  };
}

/**
 * Incremental reader of lines and frames over a ChunkPuller. Every length is checked against its
 * bound before anything is allocated for it; chunks are concatenated only as far as needed.
 */
export class ProtocolReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private eof = false;

  constructor(
    private readonly source: ChunkPuller,
    private readonly errorCode: ErrorCode,
    private readonly what: string,
  ) {}

  private fail(message: string): QbackupError {
    return new QbackupError(this.errorCode, `${this.what}: ${message}`);
  }

  /** Pull one more chunk; false at end of input. */
  private async fill(): Promise<boolean> {
    if (this.eof) return false;
    const chunk = await this.source.next();
    if (chunk === null) {
      this.eof = true;
      return false;
    }
    if (chunk.length > 0) {
      this.chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length));
      this.buffered += chunk.length;
    }
    return true;
  }

  /** The first `n` buffered bytes as one buffer (n ≤ buffered), without consuming them. */
  private peek(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length >= n) return first.subarray(0, n);
    let count = 0;
    let have = 0;
    while (have < n) have += this.chunks[count++]!.length;
    const merged = Buffer.concat(this.chunks.slice(0, count), have);
    this.chunks.splice(0, count, merged);
    return merged.subarray(0, n);
  }

  private consume(n: number): Buffer {
    const out = this.peek(n);
    this.drop(n);
    return out;
  }

  private drop(n: number): void {
    let left = n;
    while (left > 0) {
      const first = this.chunks[0]!;
      if (first.length <= left) {
        this.chunks.shift();
        left -= first.length;
      } else {
        this.chunks[0] = first.subarray(left);
        left = 0;
      }
    }
    this.buffered -= n;
  }

  /** True once the input ended and nothing is left buffered. */
  async atEnd(): Promise<boolean> {
    while (this.buffered === 0) {
      if (!(await this.fill())) return true;
    }
    return false;
  }

  /** The next line without its newline; null only at a clean end of input (nothing buffered). */
  async readLine(): Promise<string | null> {
    for (;;) {
      const window = this.buffered === 0 ? Buffer.alloc(0) : this.peek(Math.min(this.buffered, MAX_LINE_BYTES));
      const nl = window.indexOf(0x0a);
      if (nl >= 0) {
        const bytes = this.consume(nl + 1).subarray(0, nl);
        for (const b of bytes) {
          if (b < 0x20 || b > 0x7e) throw this.fail("line has a byte that is not printable ASCII");
        }
        return bytes.toString("latin1");
      }
      if (this.buffered >= MAX_LINE_BYTES) throw this.fail(`line longer than ${MAX_LINE_BYTES} bytes`);
      if (!(await this.fill())) {
        if (this.buffered === 0) return null;
        throw this.fail("stream ended in the middle of a line");
      }
    }
  }

  /** Like readLine, but the end of input is an error too. */
  async requireLine(context: string): Promise<string> {
    const line = await this.readLine();
    if (line === null) throw this.fail(`stream ended before ${context}`);
    return line;
  }

  private async readExact(n: number, context: string): Promise<Buffer> {
    while (this.buffered < n) {
      if (!(await this.fill())) throw this.fail(`stream ended in the middle of ${context}`);
    }
    return this.consume(n);
  }

  /** The next frame's bytes; null for the zero-length end frame. */
  async readFrame(): Promise<Buffer | null> {
    if (await this.atEnd()) throw this.fail("stream ended before the end frame");
    const length = (await this.readExact(FRAME_HEADER_BYTES, "a frame header")).readUInt32BE(0);
    if (length > MAX_FRAME_BYTES) throw this.fail(`frame of ${length} bytes exceeds ${MAX_FRAME_BYTES}`);
    if (length === 0) return null;
    return this.readExact(length, "a frame");
  }
}
