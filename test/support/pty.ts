/**
 * Drive a program in a real pseudo-terminal, as a user at a keyboard would: its stdin, stdout and
 * stderr are the pty, the terminal has a set size, and input is typed only once the screen shows
 * what a step waits for. No native module: util-linux `script` owns the pty.
 *
 * Inside the pty: `sh -c 'stty cols C rows R; exec node -e LAUNCHER -- STATUSFILE ARGV…'`. The small
 * Node launcher runs ARGV and records how it ended (exit code or signal) in STATUSFILE, because
 * `script -e` folds a death by signal N into status 128+N, which would make "exited 130 after
 * cleaning up" look the same as "killed by SIGINT".
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { QBACKUP, REPO } from "./cli.js";

export interface PtyStep {
  /** Wait until the transcript (ANSI kept) matches; searched after the previous step's match. */
  waitFor: RegExp;
  /** Then type this (include "\r" or "\n" yourself). */
  send: string;
}

export interface PtyRun {
  /** The program's exit code, or null if a signal ended it. */
  status: number | null;
  signal: NodeJS.Signals | null;
  /** Everything the terminal showed, raw (ANSI escapes, \r\n line ends, echoed input). */
  transcript: string;
}

export interface PtyOptions {
  steps?: readonly PtyStep[];
  /** Merged over process.env (a key set to undefined removes that variable). */
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  columns?: number;
  rows?: number;
  timeoutMs?: number;
}

export const DEFAULT_COLUMNS = 80;
export const DEFAULT_ROWS = 24;
export const DEFAULT_TIMEOUT_MS = 60_000;
/** How much of the plain transcript an error message quotes. */
const ERROR_TAIL_CHARS = 500;
/** TERM for the child unless the caller's env sets one: a common colour terminal. */
const DEFAULT_TERM = "xterm-256color";
/** After SIGKILL, how long to wait for `script` to be reaped before rejecting anyway. */
const KILL_GRACE_MS = 5_000;
/** Rounds of "find new processes, stop them" before the final SIGKILL (catches forks in flight). */
const KILL_SCAN_ROUNDS = 4;
const SCRIPT = "script";

/**
 * Runs in the pty (CommonJS, via `node -e`): argv is STATUSFILE, PROGRAM, ARGS…. Terminal-generated
 * signals reach the program directly (same foreground process group), so the launcher ignores them;
 * TERM and HUP sent to the launcher alone are passed on.
 */
const LAUNCHER = `
const fs = require("node:fs");
const { spawn } = require("node:child_process");
const [statusFile, file, ...args] = process.argv.slice(1);
const record = (status, signal) => fs.writeFileSync(statusFile, JSON.stringify({ status, signal }));
for (const s of ["SIGINT", "SIGQUIT", "SIGTSTP"]) process.on(s, () => {});
const child = spawn(file, args, { stdio: "inherit" });
for (const s of ["SIGTERM", "SIGHUP"]) process.on(s, () => child.kill(s));
child.on("error", (e) => {
  process.stderr.write(file + ": " + e.message + "\\n");
  record(127, null);
  process.exit(127);
});
child.on("exit", (status, signal) => {
  record(status, signal);
  process.exit(status ?? 128 + (require("node:os").constants.signals[signal] ?? 0));
});
`;

/** Quote one word for POSIX sh. */
export function shQuote(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

const ESC = "\u001b";
const BEL = "\u0007";
/** OSC/DCS/APC/PM/SOS strings, CSI sequences, then any other two- or three-byte escape. */
const ANSI = new RegExp(
  [`${ESC}[\\]PX^_][\\s\\S]*?(?:${BEL}|${ESC}\\\\)`, `${ESC}\\[[0-?]*[ -/]*[@-~]`, `${ESC}[ -/]*[0-~]`].join("|"),
  "g",
);

/** Transcript with ANSI escapes and \r removed, for text assertions. */
export function plainText(transcript: string): string {
  return transcript.replace(ANSI, "").replace(/\r/g, "");
}

/** Runs a qbackup command line (the built bin/qbackup.js, as runQbackup does) in a pty. */
export function runQbackupInPty(args: readonly string[], opts: PtyOptions = {}): Promise<PtyRun> {
  return runInPty([process.execPath, QBACKUP, ...args], { cwd: REPO, ...opts });
}

/** Runs argv in a pty of `columns` x `rows`, typing the steps in order. */
export function runInPty(argv: readonly string[], opts: PtyOptions = {}): Promise<PtyRun> {
  if (argv.length === 0) throw new Error("runInPty: empty argv");
  const steps = opts.steps ?? [];
  const columns = opts.columns ?? DEFAULT_COLUMNS;
  const rows = opts.rows ?? DEFAULT_ROWS;
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  for (const [name, n] of [
    ["columns", columns],
    ["rows", rows],
  ] as const) {
    if (!Number.isInteger(n) || n < 1) throw new Error(`runInPty: ${name} must be a positive integer, got ${n}`);
  }
  const env: NodeJS.ProcessEnv = { ...process.env, TERM: DEFAULT_TERM, ...opts.env };

  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), "qb-pty-"));
  const statusFile = path.join(workDir, "status.json");
  // script runs the command with $SHELL -c; the program gets the caller's SHELL back.
  const restoreShell = env.SHELL === undefined ? "unset SHELL" : `SHELL=${shQuote(env.SHELL)}; export SHELL`;
  const program = [process.execPath, "-e", LAUNCHER, "--", statusFile, ...argv].map(shQuote).join(" ");
  const command = `stty cols ${columns} rows ${rows} || exit 126; ${restoreShell}; exec ${program}`;

  const child = spawn(SCRIPT, ["--quiet", "--return", "--echo", "always", "--command", command, "/dev/null"], {
    cwd: opts.cwd ?? process.cwd(),
    env: { ...env, SHELL: "/bin/sh" },
    stdio: ["pipe", "pipe", "pipe"],
    detached: true,
  });

  let transcript = "";
  let stepIndex = 0;
  let cursor = 0; // steps match only output after the previous step's match
  let scriptErrors = "";

  const advance = () => {
    while (stepIndex < steps.length) {
      const step = steps[stepIndex]!;
      const re = new RegExp(step.waitFor.source, step.waitFor.flags.replace(/[gy]/g, ""));
      const m = re.exec(transcript.slice(cursor));
      if (!m) return;
      cursor += m.index + m[0].length;
      stepIndex++;
      child.stdin.write(step.send);
    }
  };
  const waitingFor = () =>
    stepIndex < steps.length
      ? `step ${stepIndex + 1}/${steps.length} (waitFor ${String(steps[stepIndex]!.waitFor)})`
      : "the program to exit after the last step";
  const tail = () => plainText(transcript).slice(-ERROR_TAIL_CHARS);

  child.stdout.setEncoding("utf8");
  child.stdout.on("data", (d: string) => {
    transcript += d;
    advance();
  });
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (d: string) => (scriptErrors += d));
  child.stdin.on("error", () => undefined);
  // stdin stays open until script exits: at EOF script types the EOF character into the pty.
  advance();

  return new Promise<PtyRun>((resolve, reject) => {
    let timedOut = false;
    let settled = false;
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      fs.rmSync(workDir, { recursive: true, force: true });
      fn();
    };
    const timer = setTimeout(() => {
      timedOut = true;
      if (child.pid !== undefined) killTree(child.pid);
      const error = new Error(
        `runInPty: timed out after ${timeoutMs} ms waiting for ${waitingFor()}; last output:\n${tail()}`,
      );
      const fallback = setTimeout(() => finish(() => reject(error)), KILL_GRACE_MS);
      child.once("close", () => {
        clearTimeout(fallback);
        finish(() => reject(error));
      });
    }, timeoutMs);
    child.once("error", (e) => finish(() => reject(e)));
    child.once("exit", () => child.stdin.end());
    child.once("close", (code, signal) => {
      if (timedOut) return;
      const run = outcome(statusFile, code, signal, transcript);
      if (stepIndex < steps.length) {
        const how = run.signal ? `signal ${run.signal}` : `status ${run.status}`;
        const err = new Error(
          `runInPty: program ended (${how}) before ${waitingFor()} matched${scriptErrors ? `; script: ${scriptErrors.trim()}` : ""}; last output:\n${tail()}`,
        );
        finish(() => reject(err));
        return;
      }
      finish(() => resolve(run));
    });
  });
}

/** How the program ended: the launcher's record, else script's own status (128+N for signal N). */
function outcome(statusFile: string, code: number | null, signal: NodeJS.Signals | null, transcript: string): PtyRun {
  try {
    const rec = JSON.parse(fs.readFileSync(statusFile, "utf8")) as {
      status: number | null;
      signal: NodeJS.Signals | null;
    };
    return { status: rec.status, signal: rec.signal, transcript };
  } catch {
    return { status: code, signal, transcript };
  }
}

interface ProcInfo {
  pid: number;
  ppid: number;
  sid: number;
}

function processTable(): ProcInfo[] {
  const out: ProcInfo[] = [];
  for (const name of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, "utf8");
      // "pid (comm) state ppid pgrp session …"; comm may hold spaces and parentheses.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      out.push({ pid: Number(name), ppid: Number(fields[1]), sid: Number(fields[3]) });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** `root`, its descendants, and every process in a session one of them leads. */
function processTree(root: number): number[] {
  const table = processTable();
  const found = new Set<number>([root]);
  for (let grew = true; grew;) {
    grew = false;
    for (const p of table) {
      if (!found.has(p.pid) && (found.has(p.ppid) || found.has(p.sid))) {
        found.add(p.pid);
        grew = true;
      }
    }
  }
  return [...found];
}

function signalPid(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

/** Stop everything under `root` (so nothing forks away), then SIGKILL it all. */
function killTree(root: number): void {
  const seen = new Set<number>();
  for (let round = 0; round < KILL_SCAN_ROUNDS; round++) {
    const fresh = processTree(root).filter((pid) => !seen.has(pid));
    if (fresh.length === 0) break;
    for (const pid of fresh) {
      seen.add(pid);
      signalPid(pid, "SIGSTOP");
    }
  }
  for (const pid of seen) signalPid(pid, "SIGKILL");
}
