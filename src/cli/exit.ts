/**
 * The one place that turns an outcome into an exit status and a message on stderr.
 *   0 ok · 1 failure · 2 usage error · 130 interrupted (SIGINT) · 143 terminated (SIGTERM)
 */
import { QbackupError } from "../errors.js";

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
export const EXIT_SIGINT = 130;
export const EXIT_SIGTERM = 143;

export function exitCodeFor(err: unknown): number {
  if (err instanceof QbackupError) {
    if (err.code === "ERR_USAGE") return EXIT_USAGE;
  }
  return EXIT_FAILURE;
}

/** `qbackup: error: …` then, if known, `qbackup: hint: …`. Stack traces only with QBACKUP_DEBUG=1. */
export function reportError(err: unknown, stderr: NodeJS.WritableStream = process.stderr): void {
  if (err instanceof QbackupError) {
    stderr.write(`qbackup: error: ${err.message}\n`);
    if (err.hint) stderr.write(`qbackup: hint: ${err.hint}\n`);
  } else {
    const message = err instanceof Error ? err.message : String(err);
    stderr.write(`qbackup: error: internal error: ${message}\n`);
    stderr.write("qbackup: hint: this is a bug in qbackup; run with QBACKUP_DEBUG=1 for details\n");
  }
  if (process.env["QBACKUP_DEBUG"] === "1" && err instanceof Error && err.stack) stderr.write(`${err.stack}\n`);
}
