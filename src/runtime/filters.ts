/**
 * External compression filters, run as child processes the way Qubes runs them: `<prog>` to
 * compress stdin to stdout, `<prog> -d` to decompress. Only programs on the reference reader's
 * allowlist may run (QSB-051: the filter name comes from a header), and only if installed.
 */
import { spawn } from "node:child_process";
import { accessSync, constants as fsConstants } from "node:fs";
import * as path from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { QbackupError } from "../errors.js";

/** Always accepted by the reference reader, plus the ones it accepts when installed (spec §3.4 rule 10). */
export const ALLOWED_FILTER_PROGRAMS = ["gzip", "bzip2", "xz", "lzma", "pbzip2", "pigz", "zstd", "zstdmt"] as const;
const STDERR_TAIL_BYTES = 2048;

export function findProgram(name: string, envPath: string = process.env["PATH"] ?? ""): string | undefined {
  for (const dir of envPath.split(path.delimiter)) {
    if (dir === "") continue;
    const candidate = path.join(dir, name);
    try {
      accessSync(candidate, fsConstants.X_OK);
      return candidate;
    } catch {
      // keep looking
    }
  }
  return undefined;
}

/** Throws ERR_FILTER_NOT_ALLOWED unless `name` is allowlisted and installed; returns its path. */
export function resolveFilterProgram(name: string): string {
  if (!(ALLOWED_FILTER_PROGRAMS as readonly string[]).includes(name)) {
    throw new QbackupError("ERR_FILTER_NOT_ALLOWED", `compression filter '${name}' is not allowed`, {
      hint: `use one of: ${ALLOWED_FILTER_PROGRAMS.join(", ")} (a program name, without options)`,
    });
  }
  const found = findProgram(name);
  if (found === undefined) {
    throw new QbackupError(
      "ERR_FILTER_NOT_ALLOWED",
      `compression filter '${name}' is not installed (not found in PATH)`,
    );
  }
  return found;
}

/**
 * Pipe `input` through `program args…` and yield its stdout. The child gets no passphrase and an
 * environment without our secrets (we hold none in the environment). A non-zero exit, a signal or
 * an early exit becomes ERR_FILTER_FAILED with the tail of its stderr.
 */
export async function* runFilter(
  program: string,
  args: readonly string[],
  input: AsyncIterable<Uint8Array>,
): AsyncGenerator<Buffer> {
  const label = [path.basename(program), ...args].join(" ");
  const child = spawn(program, args, { stdio: ["pipe", "pipe", "pipe"] });
  let stderrTail = Buffer.alloc(0);
  child.stderr.on("data", (d: Buffer) => {
    stderrTail = Buffer.concat([stderrTail, d]).subarray(-STDERR_TAIL_BYTES);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code, signal) => resolve({ code, signal }));
  });
  const failure = (why: string, cause?: unknown) => {
    const tail = stderrTail.toString("utf8").trim().split("\n").pop();
    return new QbackupError("ERR_FILTER_FAILED", `filter '${label}' ${why}${tail ? `: ${tail}` : ""}`, { cause });
  };
  const feeding = pipeline(Readable.from(input, { objectMode: false }), child.stdin).catch((err: unknown) => err);
  let completed = false;
  try {
    for await (const piece of child.stdout as AsyncIterable<Buffer>) yield piece;
    const fed = await feeding;
    const { code, signal } = await exited.catch((err: unknown) => {
      throw failure("could not be started", err);
    });
    if (signal !== null) throw failure(`was killed by ${signal}`);
    if (code !== 0) throw failure(`exited with status ${code}`);
    if (fed !== undefined) {
      if (fed instanceof QbackupError) throw fed;
      throw failure("stopped reading its input", fed);
    }
    completed = true;
  } finally {
    if (!completed) {
      child.stdin.destroy();
      child.stdout.destroy();
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited.catch(() => undefined);
      // surface an error from our own input (e.g. a source read error) rather than the filter's EPIPE
      await feeding;
    }
  }
}
