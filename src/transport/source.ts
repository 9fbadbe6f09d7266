/**
 * Where a backup is read from: a local file (seekable: data we do not need is skipped without
 * reading it), stdin, or a command's stdout (`--source-command`, the mirror of qvm-backup's
 * "command to pipe the backup to"). Every source counts the bytes it really read, and a command
 * that stops producing data for too long is killed and reported, never waited on forever.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import type { Readable } from "node:stream";
import { QbackupError, systemErrorCode } from "../errors.js";
import { ChildPipe } from "./command-sink.js";
import { pathExists } from "../runtime/paths.js";
import { ByteQueue } from "../runtime/streams.js";

export interface ByteSource {
  /** For messages: the path, `-`, or the command. */
  readonly description: string;
  readonly seekable: boolean;
  /** Bytes actually read from the underlying file, pipe or command. */
  readonly bytesRead: number;
  /** Up to `length` bytes; fewer only at the end of the input. */
  read(length: number): Promise<Buffer>;
  /** Skip `length` bytes; seekable sources do not read them. Returns how many were skipped. */
  skip(length: number): Promise<number>;
  /** Stop reading and release everything; a command's exit status is checked unless `abandon`. */
  close(abandon?: boolean): Promise<void>;
  /**
   * Seekable sources only: read at a position without moving the stream (for looking ahead, and
   * for both of restore's passes over a chunk). With `into` (at least `length` bytes) the result is
   * a view of it.
   */
  pread?(position: number, length: number, into?: Buffer): Promise<Buffer>;
}

const SKIP_BUFFER = 1024 * 1024;
/** A stream is paused once this much is buffered: reading stops close to where the reader stops. */
const READ_AHEAD = 1024 * 1024;

/** A seekable local file. */
export async function openFileSource(file: string): Promise<ByteSource> {
  const handle = await fs.open(file, "r").catch((err: unknown) => {
    const code = systemErrorCode(err);
    const why =
      code === "ENOENT" ? "does not exist" : code === "EACCES" ? "is not readable" : `cannot be opened (${code})`;
    throw new QbackupError("ERR_SOURCE", `backup ${file} ${why}`, { cause: err });
  });
  const st = await handle.stat();
  if (st.isDirectory()) {
    await handle.close();
    if (await pathExists(path.join(file, "qubes.xml"))) {
      // spec §5.4: Qubes R1 wrote a plain, unencrypted directory; the reference reader refuses it too
      throw new QbackupError("ERR_HEADER_UNSUPPORTED", `backup ${file} is a format v1 backup (a plain directory)`, {
        hint: "nothing in it is encrypted or packed: copy the qube files from appvms/, servicevms/ and vm-templates/",
      });
    }
    throw new QbackupError("ERR_SOURCE", `backup ${file} is a directory`, {
      hint: "give the path of a backup file",
    });
  }
  let position = 0;
  let bytesRead = 0;
  const seekable = st.isFile() || st.isBlockDevice();
  const source: ByteSource = {
    description: file,
    seekable,
    get bytesRead() {
      return bytesRead;
    },
    async read(length) {
      const buffer = Buffer.allocUnsafe(length);
      let filled = 0;
      while (filled < length) {
        const { bytesRead: n } = await handle.read(buffer, filled, length - filled, seekable ? position : null);
        if (n === 0) break;
        filled += n;
        position += n;
        bytesRead += n;
      }
      return filled === length ? buffer : buffer.subarray(0, filled);
    },
    async skip(length) {
      if (!seekable) return skipByReading(source, length);
      const remaining = Math.max(0, st.size - position);
      const n = Math.min(length, remaining);
      position += n;
      return n;
    },
    async close() {
      await handle.close().catch(() => undefined);
    },
  };
  if (seekable) {
    source.pread = async (at, length, into) => {
      const buffer = into ?? Buffer.allocUnsafe(length);
      const { bytesRead: n } = await handle.read(buffer, 0, length, at);
      bytesRead += n;
      return buffer.subarray(0, n);
    };
  }
  return source;
}

async function skipByReading(source: ByteSource, length: number): Promise<number> {
  let skipped = 0;
  while (skipped < length) {
    const piece = await source.read(Math.min(SKIP_BUFFER, length - skipped));
    if (piece.length === 0) break;
    skipped += piece.length;
  }
  return skipped;
}

/** Buffered reading of a Node stream: read(n) gathers n bytes, with an optional stall watchdog. */
class StreamSource implements ByteSource {
  readonly seekable = false;
  private readonly pending = new ByteQueue();
  private ended = false;
  private failure: unknown;
  private wake: (() => void) | undefined;
  private total = 0;

  constructor(
    readonly description: string,
    private readonly stream: Readable,
    private readonly stallMs: number | undefined,
    private readonly onStall: () => QbackupError,
    private readonly onClose: (abandon: boolean) => Promise<void>,
  ) {
    stream.on("data", (d: Buffer) => {
      this.pending.push(d);
      this.total += d.length;
      if (this.pending.length > READ_AHEAD) stream.pause();
      this.notify();
    });
    stream.once("end", () => {
      this.ended = true;
      this.notify();
    });
    stream.once("error", (err) => {
      this.failure ??= err;
      this.notify();
    });
  }

  get bytesRead(): number {
    return this.total;
  }

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  private async waitForData(): Promise<void> {
    this.stream.resume();
    await new Promise<void>((resolve, reject) => {
      const timer =
        this.stallMs === undefined
          ? undefined
          : setTimeout(() => {
              this.wake = undefined;
              reject(this.onStall());
            }, this.stallMs);
      this.wake = () => {
        if (timer) clearTimeout(timer);
        resolve();
      };
    });
  }

  async read(length: number): Promise<Buffer> {
    while (this.pending.length < length && !this.ended) {
      if (this.failure !== undefined) throw this.sourceError(this.failure);
      await this.waitForData();
    }
    if (this.failure !== undefined) throw this.sourceError(this.failure);
    const out = this.pending.take(length);
    if (this.pending.length <= READ_AHEAD) this.stream.resume();
    return out;
  }

  skip(length: number): Promise<number> {
    return skipByReading(this, length);
  }

  close(abandon = false): Promise<void> {
    return this.onClose(abandon);
  }

  private sourceError(err: unknown): QbackupError {
    if (err instanceof QbackupError) return err;
    const detail = err instanceof Error ? err.message : String(err);
    return new QbackupError("ERR_SOURCE", `reading ${this.description} failed: ${detail}`, { cause: err });
  }
}

export function stdinSource(stream: NodeJS.ReadStream = process.stdin): ByteSource {
  if (stream.isTTY) {
    throw new QbackupError("ERR_USAGE", "refusing to read a backup from a terminal", {
      hint: "pipe the backup into stdin",
    });
  }
  return new StreamSource(
    "stdin",
    stream,
    undefined,
    () => new QbackupError("ERR_SOURCE", "stdin stalled"),
    async () => {
      stream.pause();
      stream.destroy();
    },
  );
}

/**
 * `sh -c COMMAND`; its stdout is the backup. If it produces nothing for `stallMs`, it is killed
 * and the read fails. On close, a non-zero exit status is an error (unless we stopped reading
 * early on purpose, e.g. `list`, in which case it is killed).
 */
export function commandSource(command: string, stallMs: number): ByteSource {
  return spawnSource(["/bin/sh", "-c", command], `source command '${command}'`, "source command", stallMs);
}

/**
 * Read a program's stdout as a ByteSource (not seekable). No data for `stallMs` kills it; at the
 * end of its output a non-zero exit status is the error, with its last stderr line.
 */
export function spawnSource(argv: readonly string[], description: string, what: string, stallMs: number): ByteSource {
  const pipe = new ChildPipe(argv, { what, errorCode: "ERR_SOURCE", stallMs, stdin: false });
  const pending = new ByteQueue();
  let total = 0;
  let ended = false;
  const source: ByteSource = {
    description,
    seekable: false,
    get bytesRead() {
      return total;
    },
    async read(length) {
      while (pending.length < length && !ended) {
        const chunk = await pipe.next();
        if (chunk === null) {
          ended = true;
          await pipe.requireSuccess();
        } else {
          pending.push(chunk);
          total += chunk.length;
        }
      }
      return pending.take(length);
    },
    async skip(length) {
      let skipped = 0;
      while (skipped < length) {
        const piece = await source.read(Math.min(1024 * 1024, length - skipped));
        if (piece.length === 0) break;
        skipped += piece.length;
      }
      return skipped;
    },
    async close(abandon = false) {
      if (abandon) pipe.kill();
      pipe.child.stdout?.destroy();
      const status = await pipe.exit;
      pipe.child.stderr.destroy();
      if (!abandon && (status.code !== 0 || status.spawnError)) throw await pipe.exitFailure();
    },
  };
  return source;
}
