/**
 * A destination that is a command: `--dest-command CMD` (`sh -c CMD`, the backup on its stdin, the
 * mirror of qvm-backup's "command to pipe the backup to"), and the same for an argv run without
 * any shell (ssh, rclone). Also the child-process plumbing the remote transports and the agent
 * client share: a spawned program whose stdin is written and whose stdout is read with a stall
 * watchdog, and whose failures become one line naming the exit status and the last stderr line.
 */
import { spawn } from "node:child_process";
import type { ChildProcessByStdio } from "node:child_process";
import type { Readable, Writable } from "node:stream";
import { QbackupError } from "../errors.js";
import type { ErrorCode } from "../errors.js";
import type { BackupSink } from "./sink.js";

const STDERR_TAIL_BYTES = 2048;
/** Writes are handed to the child in pieces this big; each must go through within the stall time. */
const WRITE_PIECE_BYTES = 1024 * 1024;
/** After the child exited, how long its last stderr words may take to arrive. */
const STDERR_GRACE_MS = 300;
/** How long a child that failed a write gets to exit, so its status and stderr can be reported. */
const EXIT_GRACE_MS = 2000;

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the program could not be started at all. */
  spawnError?: Error;
}

export interface ChildPipeOptions {
  /** How the program is named in messages: `destination command`, `ssh`, `storage agent`. */
  what: string;
  /** ERR_DEST on the create side, ERR_SOURCE on the read side. */
  errorCode: ErrorCode;
  /** No progress for this long (a write not taken, no output) → the child is killed, an error. */
  stallMs: number;
  /** Feed stdin (sinks, the agent) or not (sources). */
  stdin: boolean;
  /** Read stdout (sources, the agent) or send it to /dev/null (sinks: nobody reads it, it must not block). */
  stdout?: boolean;
  /** What "no progress" means in the stall message. */
  stallWhat?: string;
}

/**
 * One spawned program (never through a shell unless argv says so). The environment is passed
 * explicitly as this process's own, unchanged.
 */
export class ChildPipe {
  readonly child: ChildProcessByStdio<Writable | null, Readable | null, Readable>;
  readonly exit: Promise<ExitStatus>;
  private status: ExitStatus | undefined;
  private stderrTail = "";
  private readonly stderrDone: Promise<void>;
  private failure: QbackupError | undefined;
  private chunks: AsyncIterator<Buffer> | undefined;
  private pendingChunk: Promise<IteratorResult<Buffer>> | undefined;

  constructor(
    readonly argv: readonly string[],
    private readonly opts: ChildPipeOptions,
  ) {
    if (argv.length === 0) throw new QbackupError("ERR_INTERNAL", "empty argv");
    this.child = spawn(argv[0]!, argv.slice(1), {
      stdio: [opts.stdin ? "pipe" : "ignore", opts.stdout === false ? "ignore" : "pipe", "pipe"],
      env: process.env,
      // its own process group, so that kill() reaches what a `sh -c` command started too
      detached: true,
    }) as ChildProcessByStdio<Writable | null, Readable | null, Readable>;
    this.child.stdin?.on("error", () => undefined); // EPIPE surfaces through the write callbacks
    this.child.stderr.on("data", (d: Buffer) => {
      this.stderrTail = (this.stderrTail + d.toString("utf8")).slice(-STDERR_TAIL_BYTES);
    });
    this.stderrDone = new Promise((resolve) => {
      this.child.stderr.once("close", resolve);
      this.child.stderr.once("error", () => resolve());
    });
    // 'exit', not 'close': a grandchild may keep the pipes open after the child is gone
    this.exit = new Promise((resolve) => {
      this.child.once("error", (err) => {
        this.status ??= { code: null, signal: null, spawnError: err };
        resolve(this.status);
      });
      this.child.once("exit", (code, signal) => {
        this.status ??= { code, signal };
        resolve(this.status);
      });
    });
  }

  get exited(): ExitStatus | undefined {
    return this.status;
  }

  get failed(): QbackupError | undefined {
    return this.failure;
  }

  /** Remember the first failure; every later operation reports it. */
  fail(err: QbackupError): QbackupError {
    this.failure ??= err;
    return this.failure;
  }

  /** Kills the child and everything in its process group, and lets go of its pipes. */
  kill(signal: NodeJS.Signals = "SIGKILL"): void {
    const pid = this.child.pid;
    if (pid !== undefined) {
      try {
        process.kill(-pid, signal);
      } catch {
        // the group is gone already
      }
    }
    // a grandchild that survived must not keep this process alive through an open pipe
    this.child.stdin?.destroy();
    this.child.stdout?.destroy();
    setTimeout(() => this.child.stderr.destroy(), STDERR_GRACE_MS).unref();
  }

  private stallError(): QbackupError {
    const seconds = Math.max(1, Math.round(this.opts.stallMs / 1000));
    const what = this.opts.stallWhat ?? (this.opts.stdin ? "accepted no data" : "sent no data");
    return new QbackupError(this.opts.errorCode, `${this.opts.what} stalled: it ${what} for ${seconds} s`, {
      hint: "check the command or the connection, or raise --stall-timeout",
    });
  }

  /** Run `p`, but give up (kill the child) when it takes longer than the stall time. */
  private watchdog<T>(p: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.kill();
        reject(this.fail(this.stallError()));
      }, this.opts.stallMs);
      p.then(
        (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        (e: unknown) => {
          clearTimeout(timer);
          reject(e);
        },
      );
    });
  }

  /** Hand `data` to the child's stdin; resolves once it went into the pipe (the buffer may then be reused). */
  async write(data: Uint8Array): Promise<void> {
    const stdin = this.child.stdin;
    if (!stdin) throw new QbackupError("ERR_INTERNAL", `${this.opts.what}: no stdin`);
    for (let off = 0; off < data.length; off += WRITE_PIECE_BYTES) {
      if (this.failure) throw this.failure;
      if (this.status !== undefined) throw await this.exitFailure("exited before taking all the data");
      const piece = data.subarray(off, Math.min(data.length, off + WRITE_PIECE_BYTES));
      const written = new Promise<void>((resolve, reject) => {
        stdin.write(piece, (err) => (err ? reject(err) : resolve()));
      });
      try {
        await this.watchdog(written);
      } catch (err) {
        if (err instanceof QbackupError) throw err;
        throw await this.exitFailure("stopped reading its input", err);
      }
    }
  }

  /** Close stdin: the child sees the end of its input. */
  endInput(): void {
    this.child.stdin?.end();
  }

  /** The next chunk of the child's stdout, or null at its end; no data for the stall time is an error. */
  async next(): Promise<Buffer | null> {
    // no early failure check: after a failed write, what the child said before dying is still wanted
    const stdout = this.child.stdout;
    if (!stdout) throw new QbackupError("ERR_INTERNAL", `${this.opts.what}: stdout is not read`);
    this.chunks ??= stdout[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    this.pendingChunk ??= this.chunks.next();
    const pending = this.pendingChunk;
    pending.catch(() => undefined);
    const r = await this.watchdog(pending).catch((err: unknown) => {
      if (err instanceof QbackupError) throw err;
      const detail = err instanceof Error ? err.message : String(err);
      throw this.fail(new QbackupError(this.opts.errorCode, `reading from ${this.opts.what} failed: ${detail}`));
    });
    this.pendingChunk = undefined;
    return r.done ? null : r.value;
  }

  /** Wait for the child to exit, at most `timeoutMs` (then it is killed and that is a stall). */
  async waitExit(timeoutMs: number = this.opts.stallMs): Promise<ExitStatus> {
    if (this.status !== undefined) return this.status;
    return new Promise<ExitStatus>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.kill();
        reject(this.fail(this.stallError()));
      }, timeoutMs);
      void this.exit.then((s) => {
        clearTimeout(timer);
        resolve(s);
      });
    });
  }

  /** Require exit status 0; anything else is an error naming the status and the last stderr line. */
  async requireSuccess(timeoutMs?: number): Promise<void> {
    const status = await this.waitExit(timeoutMs);
    if (status.code !== 0 || status.spawnError) throw await this.exitFailure();
  }

  /** The last non-empty stderr line, once the child's stderr ended (or shortly after it exited). */
  async lastStderrLine(): Promise<string> {
    await Promise.race([this.stderrDone, new Promise((r) => setTimeout(r, STDERR_GRACE_MS))]);
    const lines = this.stderrTail
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l.length > 0);
    return (lines.pop() ?? "").replace(/[^\x20-\x7e]/g, "?");
  }

  /**
   * One line saying why the child failed: it could not start, exited with a status, or was
   * killed. `otherwise` describes a child that is still running or exited 0 despite the failure.
   */
  async exitFailure(otherwise = "failed", cause?: unknown): Promise<QbackupError> {
    if (this.failure) return this.failure;
    const status = await Promise.race([
      this.exit,
      new Promise<undefined>((r) => setTimeout(() => r(undefined), EXIT_GRACE_MS)),
    ]);
    const what = this.opts.what;
    let message: string;
    if (status?.spawnError) {
      message = `cannot run ${what} (${this.argv[0]}): ${status.spawnError.message}`;
    } else {
      const how =
        status === undefined || (status.code === 0 && !status.signal)
          ? otherwise
          : status.signal
            ? `was killed by ${status.signal}`
            : `exited with status ${status.code}`;
      const tail = await this.lastStderrLine();
      message = `${what} ${how}${tail ? `: ${tail}` : ""}`;
    }
    return this.fail(new QbackupError(this.opts.errorCode, message, cause === undefined ? undefined : { cause }));
  }
}

export interface SpawnSinkOptions {
  /** Shown as the sink's location. */
  location: string;
  /** How the program is named in messages. */
  what: string;
  /** Map an exit status to a more precise error (e.g. "already exists"). */
  exitError?: (status: ExitStatus, lastStderrLine: string) => QbackupError | undefined;
}

/**
 * A sink that is a program's stdin. `commit` closes stdin and requires exit status 0 within the
 * stall time; a program that takes no data for `stallMs` is killed; `abort` kills it.
 */
export function spawnSink(argv: readonly string[], stallMs: number, opts: SpawnSinkOptions): BackupSink {
  const pipe = new ChildPipe(argv, { what: opts.what, errorCode: "ERR_DEST", stallMs, stdin: true, stdout: false });
  let state: "open" | "committed" | "aborted" = "open";
  const refine = async (err: unknown): Promise<unknown> => {
    if (!opts.exitError || pipe.exited === undefined) return err;
    const better = opts.exitError(pipe.exited, await pipe.lastStderrLine());
    return better ?? err;
  };
  const abort = async () => {
    if (state !== "open") return;
    state = "aborted";
    pipe.kill();
    pipe.child.stdin?.destroy();
    await pipe.exit;
  };
  return {
    location: opts.location,
    async write(data) {
      if (state !== "open") throw new QbackupError("ERR_INTERNAL", `write to a sink that is ${state}`);
      try {
        await pipe.write(data);
      } catch (err) {
        throw await refine(err);
      }
    },
    async commit() {
      if (state !== "open") throw new QbackupError("ERR_INTERNAL", `commit of a sink that is ${state}`);
      try {
        if (pipe.failed) throw pipe.failed;
        pipe.endInput();
        await pipe.requireSuccess();
        state = "committed";
      } catch (err) {
        const refined = await refine(err);
        await abort();
        throw refined;
      }
    },
    abort,
  };
}

/**
 * `--dest-command CMD`: `sh -c CMD` with the backup on its stdin. Exit status 0 after the end of
 * the input is the only success; the command decides where the bytes go and how they are published.
 */
export function commandSink(command: string, stallMs: number): BackupSink {
  return spawnSink(["/bin/sh", "-c", command], stallMs, {
    location: `destination command '${command}'`,
    what: "destination command",
  });
}
