/**
 * `--on-success CMD` / `--on-failure CMD`: tell monitoring how a backup went. The command runs with
 * `sh -c`, its output goes to stderr (stdout may be the backup), and it learns the outcome from
 * QBACKUP_* variables; never the passphrase, which no child ever gets. A hook that fails or hangs
 * is a warning: it does not change what happened to the backup.
 */
import { spawn } from "node:child_process";
import { messageOf } from "./exit.js";

/** A monitoring ping that has not answered in this long is killed. */
export const HOOK_TIMEOUT_MS = 10 * 60_000;

export interface HookOutcome {
  event: "success" | "failure";
  exitStatus: number;
  profile?: string;
  backupId?: string;
  location?: string;
  error?: string;
}

export function hookEnvironment(outcome: HookOutcome, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return {
    ...base,
    QBACKUP_EVENT: outcome.event,
    QBACKUP_EXIT_STATUS: String(outcome.exitStatus),
    QBACKUP_PROFILE: outcome.profile ?? "",
    QBACKUP_BACKUP_ID: outcome.backupId ?? "",
    QBACKUP_LOCATION: outcome.location ?? "",
    QBACKUP_ERROR: outcome.error ?? "",
  };
}

/** Runs the hook; resolves with a warning to show, or undefined when it exited 0. */
export function runHook(
  command: string,
  outcome: HookOutcome,
  timeoutMs = HOOK_TIMEOUT_MS,
): Promise<string | undefined> {
  return new Promise((resolve) => {
    const child = spawn("/bin/sh", ["-c", command], {
      stdio: ["ignore", process.stderr, process.stderr],
      env: hookEnvironment(outcome),
      detached: true,
    });
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        // already gone
      }
    }, timeoutMs);
    child.on("error", (err) => {
      clearTimeout(timer);
      resolve(`--on-${outcome.event} could not start: ${messageOf(err)}`);
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(undefined);
      else resolve(`--on-${outcome.event} command ${signal ? `was killed (${signal})` : `exited with status ${code}`}`);
    });
  });
}
