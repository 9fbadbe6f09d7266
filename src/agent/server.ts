/**
 * The storage agent: what a storage host runs as an ssh forced command for one client. It serves
 * one directory (ROOT) over stdin/stdout with the protocol of protocol.ts and trusts nobody: it
 * receives and serves sealed bytes, never parses backup content, never follows a symlink, and
 * publishes a received file only after the client's trailer (size + SHA-256) matched and the
 * bytes are on disk — under a name that did not exist, with link(2), which cannot replace.
 *
 * Pruning (only on an agent without --append-only) uses the agent's own mtimes, which a client
 * cannot set. Why `--keep-within` is the safe policy against a client that can only append: a
 * compromised append-only client can upload any number of new (garbage) backups. With
 * `--keep-last N` alone, N such uploads push every good backup out of the kept set and the next
 * prune deletes them all. With `--keep-within 30d`, a backup is kept for 30 days after it was
 * written no matter how many arrive after it, so appending can fill the disk but never get a good
 * backup deleted. `--keep-last` given too only keeps more (a backup is kept if either rule keeps it).
 */
import { createHash, randomBytes } from "node:crypto";
import { constants as fsConstants, rmSync } from "node:fs";
import type { Stats } from "node:fs";
import * as fs from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import * as path from "node:path";
import type { Readable, Writable } from "node:stream";
import { QbackupError, systemErrorCode } from "../errors.js";
import { RECOVERY_SHEET_SUFFIX } from "../format/recovery-sheet.js";
import { writeFully } from "../runtime/paths.js";
import {
  END_FRAME,
  GREETING,
  MAX_LIST_ENTRIES,
  ProtocolReader,
  SEND_FRAME_BYTES,
  errorLine,
  formatListEntry,
  formatTrailer,
  frameHeader,
  isValidName,
  okLine,
  parseRequest,
  parseTrailer,
  planPrune,
  pullerFrom,
} from "./protocol.js";
import type { AgentRequest, ListEntry, PrunePolicy, WireErrorCode } from "./protocol.js";

export interface AgentServerOptions {
  /** The directory this agent serves; it must exist. Nothing outside it is ever touched. */
  root: string;
  /** Refuse `delete` and `prune`: the client can only add backups and read them. */
  appendOnly: boolean;
  /** The clock for `prune` (tests). */
  now?: () => Date;
  /** Aborting removes the temporary file of a `put` in progress at once (signal handlers). */
  signal?: AbortSignal;
}

/** A refused request: reply with this and keep serving. */
class Refusal {
  constructor(
    readonly code: WireErrorCode,
    readonly message: string,
  ) {}
}

/** The session cannot go on (bad framing, cut stream, corrupt data, failed write mid-stream). */
class SessionEnd {
  constructor(
    readonly code: WireErrorCode,
    readonly message: string,
    readonly cause?: unknown,
  ) {}
}

const TEMP_INFIX = ".partial-";
const TEMP_RANDOM_BYTES = 6;

/** Serve requests from `input` until it ends. Rejects (the process should exit non-zero) on a protocol violation. */
export async function serveAgent(input: Readable, output: Writable, opts: AgentServerOptions): Promise<void> {
  const out = new ReplyWriter(output);
  const root = path.resolve(opts.root);
  const st = await fs.stat(root).catch(() => undefined);
  if (!st?.isDirectory()) {
    await out.send(errorLine("ERR_IO", "the storage root is not available")).catch(() => undefined);
    throw new QbackupError("ERR_USAGE", `agent: root ${root} is not an existing directory`);
  }
  const puller = pullerFrom(input);
  const reader = new ProtocolReader(puller, "ERR_SOURCE", "agent: client stream");
  const session = new Session(root, opts, reader, out);
  try {
    await out.send(`${GREETING}\n`);
    for (;;) {
      const line = await reader.readLine().catch(async (err: unknown) => {
        await out.send(errorLine("ERR_PROTOCOL", streamMessage(err))).catch(() => undefined);
        throw err;
      });
      if (line === null) return;
      const request = parseRequest(line);
      if (!request.ok) {
        await out.send(errorLine(request.code, request.message));
        if (request.code === "ERR_PROTOCOL") throw new QbackupError("ERR_SOURCE", `agent: ${request.message}`);
        continue;
      }
      try {
        await session.handle(request.value);
      } catch (err) {
        if (err instanceof Refusal) {
          await out.send(errorLine(err.code, err.message));
          continue;
        }
        if (err instanceof SessionEnd) {
          await out.send(errorLine(err.code, err.message)).catch(() => undefined);
          throw new QbackupError("ERR_SOURCE", `agent: ${err.message}`, { cause: err.cause });
        }
        throw err;
      }
    }
  } finally {
    puller.stop();
    out.close();
  }
}

/** Awaited writes to the client, so a slow client slows the agent down instead of filling memory. */
class ReplyWriter {
  failed = false;
  /** Writes whose callback has not come yet: a closed stream may never call them. */
  private readonly pending = new Set<(err: unknown) => void>();
  private readonly onGone = (err?: unknown) => {
    this.failed = true;
    for (const reject of this.pending) reject(err);
    this.pending.clear();
  };

  constructor(private readonly output: Writable) {
    output.on("error", this.onGone);
    output.on("close", this.onGone);
  }

  send(data: string | Uint8Array): Promise<void> {
    const hungUp = (cause?: unknown) =>
      new QbackupError("ERR_SOURCE", "agent: the client closed the connection", { cause });
    if (this.failed || this.output.destroyed) return Promise.reject(hungUp());
    return new Promise((resolve, reject) => {
      const fail = (err: unknown) => reject(hungUp(err));
      this.pending.add(fail);
      this.output.write(data, (err) => {
        this.pending.delete(fail);
        if (err) {
          this.failed = true;
          fail(err);
        } else resolve();
      });
    });
  }

  close(): void {
    this.output.off("error", this.onGone);
    this.output.off("close", this.onGone);
    this.output.on("error", () => undefined);
  }
}

class Session {
  constructor(
    private readonly root: string,
    private readonly opts: AgentServerOptions,
    private readonly reader: ProtocolReader,
    private readonly out: ReplyWriter,
  ) {}

  handle(request: AgentRequest): Promise<void> {
    switch (request.op) {
      case "put":
        return this.put(request.name);
      case "get":
        return this.get(request.name);
      case "list":
        return this.list();
      case "delete":
        return this.delete(request.name);
      case "prune":
        return this.prune(request.policy);
    }
  }

  private pathOf(name: string): string {
    return path.join(this.root, name);
  }

  /** A stored backup: a regular file, found without following symlinks. */
  private async storedFile(name: string): Promise<Stats> {
    const st = await fs.lstat(this.pathOf(name)).catch((err: unknown) => {
      if (systemErrorCode(err) === "ENOENT") throw new Refusal("ERR_NOT_FOUND", `no backup named ${name}`);
      throw new Refusal("ERR_IO", `cannot look at ${name} (${systemErrorCode(err) ?? "error"})`);
    });
    if (!st.isFile()) throw new Refusal("ERR_NOT_REGULAR", `${name} is not a regular file`);
    return st;
  }

  private async put(name: string): Promise<void> {
    const finalPath = this.pathOf(name);
    const existing = await fs.lstat(finalPath).then(
      () => true,
      (err: unknown) => systemErrorCode(err) !== "ENOENT",
    );
    if (existing) throw new Refusal("ERR_EXISTS", `${name} already exists; backups are never replaced`);
    const tempPath = path.join(this.root, `.${name}${TEMP_INFIX}${randomBytes(TEMP_RANDOM_BYTES).toString("hex")}`);
    // registered before the file exists, removed synchronously: a signal handler may exit the process at once
    const onAbort = () => rmSync(tempPath, { force: true });
    this.opts.signal?.addEventListener("abort", onAbort, { once: true });
    const flags = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW;
    const handle = await fs.open(tempPath, flags, 0o600).catch((err: unknown) => {
      this.opts.signal?.removeEventListener("abort", onAbort);
      throw new Refusal(storageCode(err), `cannot create a file for ${name} (${systemErrorCode(err) ?? "error"})`);
    });
    let published = false;
    try {
      await this.out.send(okLine("ready"));
      const { size, sha256 } = await this.receive(handle, name);
      await handle.sync().catch((err: unknown) => {
        throw new SessionEnd(storageCode(err), `cannot make ${name} durable (${systemErrorCode(err) ?? "error"})`);
      });
      await handle.close();
      await fs.link(tempPath, finalPath).catch((err: unknown) => {
        if (systemErrorCode(err) === "EEXIST") {
          throw new Refusal("ERR_EXISTS", `${name} appeared while receiving it; not replacing it`);
        }
        throw new SessionEnd("ERR_IO", `cannot publish ${name} (${systemErrorCode(err) ?? "error"})`);
      });
      published = true;
      await fs.rm(tempPath, { force: true });
      await syncDirectory(this.root);
      await this.out.send(okLine(size, sha256));
    } finally {
      // synchronously, before anything else can run: a signal handler may exit the process meanwhile
      if (!published) rmSync(tempPath, { force: true });
      this.opts.signal?.removeEventListener("abort", onAbort);
      if (!published) await handle.close().catch(() => undefined);
    }
  }

  /** Frames into the temp file, then the trailer, which must match what arrived. */
  private async receive(handle: FileHandle, name: string): Promise<{ size: number; sha256: string }> {
    const hash = createHash("sha256");
    let size = 0;
    for (;;) {
      const frame = await this.reader.readFrame().catch((err: unknown) => {
        throw new SessionEnd("ERR_PROTOCOL", `receiving ${name}: ${streamMessage(err)}`, err);
      });
      if (frame === null) break;
      hash.update(frame);
      size += frame.length;
      await writeFully(handle, frame, null).catch((err: unknown) => {
        throw new SessionEnd(storageCode(err), `cannot write ${name} (${systemErrorCode(err) ?? "error"})`, err);
      });
    }
    const line = await this.reader.requireLine("the trailer").catch((err: unknown) => {
      throw new SessionEnd("ERR_PROTOCOL", `receiving ${name}: ${streamMessage(err)}`, err);
    });
    const trailer = parseTrailer(line);
    if (trailer === undefined) throw new SessionEnd("ERR_PROTOCOL", `receiving ${name}: malformed trailer`);
    const sha256 = hash.digest("hex");
    if (trailer.size !== size || trailer.sha256 !== sha256) {
      throw new SessionEnd("ERR_INTEGRITY", `receiving ${name}: trailer does not match the data (${size} bytes)`);
    }
    return { size, sha256 };
  }

  private async get(name: string): Promise<void> {
    await this.storedFile(name);
    const handle = await fs.open(this.pathOf(name), fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW).catch((err) => {
      const code = systemErrorCode(err);
      if (code === "ELOOP") throw new Refusal("ERR_NOT_REGULAR", `${name} is not a regular file`);
      throw new Refusal(code === "ENOENT" ? "ERR_NOT_FOUND" : "ERR_IO", `cannot open ${name} (${code ?? "error"})`);
    });
    try {
      const st = await handle.stat();
      if (!st.isFile()) throw new Refusal("ERR_NOT_REGULAR", `${name} is not a regular file`);
      await this.out.send(okLine(st.size));
      const hash = createHash("sha256");
      let sent = 0;
      while (sent < st.size) {
        // a fresh buffer each time: a stream may still hold the previous one after its write callback
        const buffer = Buffer.allocUnsafe(Math.min(SEND_FRAME_BYTES, st.size - sent));
        let n: number;
        try {
          ({ bytesRead: n } = await handle.read(buffer, 0, buffer.length, sent));
        } catch (err) {
          await this.out.send(END_FRAME);
          throw new SessionEnd("ERR_IO", `cannot read ${name} (${systemErrorCode(err) ?? "error"})`, err);
        }
        if (n === 0) break; // shrank meanwhile: the trailer's size tells the client
        const piece = buffer.subarray(0, n);
        hash.update(piece);
        await this.out.send(frameHeader(n));
        await this.out.send(piece);
        sent += n;
      }
      await this.out.send(END_FRAME);
      await this.out.send(formatTrailer(sent, hash.digest("hex")));
    } finally {
      await handle.close().catch(() => undefined);
    }
  }

  /** Stored backups: valid names of regular files, temp files and anything else hidden. */
  private async entries(): Promise<Array<ListEntry & { mtimeMs: number }>> {
    const dirents = await fs.readdir(this.root, { withFileTypes: true }).catch((err: unknown) => {
      throw new Refusal("ERR_IO", `cannot list the storage (${systemErrorCode(err) ?? "error"})`);
    });
    const out: Array<ListEntry & { mtimeMs: number }> = [];
    for (const d of dirents) {
      if (!d.isFile() || !isValidName(d.name)) continue;
      const st = await fs.lstat(this.pathOf(d.name)).catch(() => undefined);
      if (!st?.isFile()) continue;
      out.push({ name: d.name, size: st.size, mtime: st.mtime, mtimeMs: st.mtimeMs });
    }
    if (out.length > MAX_LIST_ENTRIES) throw new Refusal("ERR_IO", `more than ${MAX_LIST_ENTRIES} backups stored`);
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  private async list(): Promise<void> {
    const entries = await this.entries();
    await this.out.send(okLine(entries.length) + entries.map(formatListEntry).join(""));
  }

  /** `NAME.RESTORE-INSTRUCTIONS.txt`, which create puts beside backup NAME, if there is one. */
  private async deleteSheetOf(name: string): Promise<void> {
    const sheet = `${name}${RECOVERY_SHEET_SUFFIX}`;
    if (!name.endsWith(RECOVERY_SHEET_SUFFIX) && isValidName(sheet)) {
      await fs.unlink(this.pathOf(sheet)).catch(() => undefined);
    }
  }

  private refuseIfAppendOnly(what: string): void {
    if (this.opts.appendOnly) throw new Refusal("ERR_APPEND_ONLY", `append-only: ${what} is not allowed`);
  }

  private async delete(name: string): Promise<void> {
    this.refuseIfAppendOnly("delete");
    await this.storedFile(name);
    await fs.unlink(this.pathOf(name)).catch((err: unknown) => {
      throw new Refusal("ERR_IO", `cannot delete ${name} (${systemErrorCode(err) ?? "error"})`);
    });
    await this.deleteSheetOf(name);
    await syncDirectory(this.root);
    await this.out.send(okLine());
  }

  private async prune(policy: PrunePolicy): Promise<void> {
    this.refuseIfAppendOnly("prune");
    const now = (this.opts.now ?? (() => new Date()))();
    // a backup's restore instructions are not a backup: they go with it, and do not count
    const backups = (await this.entries()).filter((e) => !e.name.endsWith(RECOVERY_SHEET_SUFFIX));
    const doomed = planPrune(backups, policy, now.getTime());
    const deleted: string[] = [];
    for (const name of doomed) {
      const removed = await fs.unlink(this.pathOf(name)).then(
        () => true,
        () => false,
      );
      if (removed) deleted.push(name);
      await this.deleteSheetOf(name);
    }
    await syncDirectory(this.root);
    await this.out.send(okLine(deleted.length) + deleted.map((n) => `${n}\n`).join(""));
  }
}

function storageCode(err: unknown): WireErrorCode {
  const code = systemErrorCode(err);
  return code === "ENOSPC" || code === "EDQUOT" ? "ERR_FULL" : "ERR_IO";
}

function streamMessage(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.replace(/^agent: client stream: /, "");
}

async function syncDirectory(dir: string): Promise<void> {
  const h = await fs.open(dir, fsConstants.O_RDONLY).catch(() => undefined);
  if (!h) return;
  await h.sync().catch(() => undefined);
  await h.close();
}
