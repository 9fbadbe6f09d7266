/** Run the real `qbackup` binary (bin/qbackup.js over dist/) as a user would. */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const QBACKUP = path.join(REPO, "bin/qbackup.js");

/** True once process `pid` has `file` open: it is past its start-up and at work on it. */
export function hasOpen(pid: number, file: string): boolean {
  try {
    const fds = fs.readdirSync(`/proc/${pid}/fd`);
    return fds.some((fd) => {
      try {
        return fs.readlinkSync(`/proc/${pid}/fd/${fd}`) === file;
      } catch {
        return false;
      }
    });
  } catch {
    return false;
  }
}

export interface CliResult {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
}

export interface CliOptions {
  input?: string | Buffer;
  cwd?: string;
  /** Prepended to the command (e.g. setpriv to drop root's file-permission override). */
  wrapper?: string[];
  /** Send this signal once `when(pid)` becomes true (polled every 10 ms; pid: qbackup's process). */
  signal?: { name: NodeJS.Signals; when: (pid: number) => boolean };
  timeoutMs?: number;
  /** Extra environment variables (e.g. a PATH with fake tools first). */
  env?: Record<string, string>;
}

export function runQbackup(args: string[], opts: CliOptions = {}): Promise<CliResult> {
  const [cmd, ...pre] = [...(opts.wrapper ?? []), process.execPath, QBACKUP];
  const child = spawn(cmd!, [...pre, ...args], {
    cwd: opts.cwd ?? REPO,
    stdio: ["pipe", "pipe", "pipe"],
    env: { ...process.env, ...opts.env },
  });
  const stdout: Buffer[] = [];
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => stdout.push(d));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const poller =
    opts.signal &&
    setInterval(() => {
      if (child.pid !== undefined && opts.signal!.when(child.pid)) {
        child.kill(opts.signal!.name);
        clearInterval(poller);
      }
    }, 10);
  child.stdin.on("error", () => undefined);
  child.stdin.end(opts.input ?? "");
  const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 120_000);
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (status, signal) => {
      clearTimeout(timer);
      if (poller) clearInterval(poller);
      resolve({ status, signal, stdout: Buffer.concat(stdout), stderr });
    });
  });
}

export function tempDir(prefix = "qb-test-"): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export const TEST_PASSPHRASE = 'correct horse battery staple ünïcödé \\ "quoted" $HOME !bang';

export function passphraseFile(dir: string, passphrase = TEST_PASSPHRASE): string {
  const file = path.join(dir, "passphrase.txt");
  fs.writeFileSync(file, `${passphrase}\n`, { mode: 0o600 });
  return file;
}

/**
 * A test backup: `qbackup create -y -p PASSFILE --scrypt-logn 10 [options] OUT SOURCES…`, cheap
 * KDF, small chunks by default. Throws with qbackup's stderr if it fails.
 */
export async function makeBackup(
  passFile: string,
  out: string,
  sources: string[],
  options: string[] = ["--chunk-size", "256K"],
): Promise<void> {
  const r = await runQbackup(["create", "-y", "-p", passFile, "--scrypt-logn", "10", ...options, out, ...sources]);
  if (r.status !== 0) throw new Error(`qbackup create failed (status ${r.status}): ${r.stderr}`);
}
