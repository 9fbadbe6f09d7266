/**
 * The one place that turns an outcome into an exit status and a message on stderr. The statuses are
 * part of qbackup's interface (README "Exit codes"); scripts branch on them, so they never change:
 *   0 ok
 *   1 failure not listed below (an unreadable file to back up, a refused KDF cost, a failed
 *     compression program, an unsupported format, a bug)
 *   2 usage: a bad command line or profile, a passphrase that breaks the rules, no terminal to ask on
 *   3 wrong passphrase
 *   4 tampered or damaged: something failed authentication, or authenticated data is malformed
 *     (also a damaged filesystem inside a disk image, for ls/extract)
 *   5 incomplete: data is missing (a truncated backup, a dropped chunk, a qube or volume absent)
 *   6 storage: the destination or the backup's source failed (absent, not writable, full, already
 *     exists, an ssh/rclone/agent/command transport failed or stalled)
 *   130 interrupted (SIGINT) · 143 terminated (SIGTERM)
 */
import type { ErrorCode } from "../errors.js";
import { QbackupError } from "../errors.js";

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
export const EXIT_WRONG_PASSPHRASE = 3;
export const EXIT_TAMPERED = 4;
export const EXIT_INCOMPLETE = 5;
export const EXIT_STORAGE = 6;
export const EXIT_SIGINT = 130;
export const EXIT_SIGTERM = 143;

const EXIT_BY_CODE: Partial<Record<ErrorCode, number>> = {
  ERR_USAGE: EXIT_USAGE,
  ERR_PROFILE: EXIT_USAGE,
  ERR_PASSPHRASE_INVALID: EXIT_USAGE,
  ERR_PASSPHRASE_MISMATCH: EXIT_USAGE,
  ERR_PASSPHRASE_WRONG: EXIT_WRONG_PASSPHRASE,
  ERR_CHUNK_AUTH: EXIT_TAMPERED,
  ERR_SCRYPT_HEADER_CHECKSUM: EXIT_TAMPERED,
  ERR_SCRYPT_FORMAT: EXIT_TAMPERED,
  ERR_HEADER_MALFORMED: EXIT_TAMPERED,
  ERR_TAR_MALFORMED: EXIT_TAMPERED,
  ERR_QUBES_XML: EXIT_TAMPERED,
  ERR_UNSAFE_PATH: EXIT_TAMPERED,
  ERR_IMAGE_MALFORMED: EXIT_TAMPERED,
  ERR_MISSING: EXIT_INCOMPLETE,
  ERR_DEST: EXIT_STORAGE,
  ERR_DEST_FULL: EXIT_STORAGE,
  ERR_DEST_EXISTS: EXIT_STORAGE,
  ERR_SOURCE: EXIT_STORAGE,
};

export function exitCodeFor(err: unknown): number {
  return (err instanceof QbackupError ? EXIT_BY_CODE[err.code] : undefined) ?? EXIT_FAILURE;
}

/** `qbackup: error: …` then, if known, `qbackup: hint: …`. Stack traces only with QBACKUP_DEBUG=1. */
export function reportError(err: unknown, stderr: NodeJS.WritableStream = process.stderr): void {
  if (err instanceof QbackupError) {
    stderr.write(`qbackup: error: ${err.message}\n`);
    if (err.hint) stderr.write(`qbackup: hint: ${err.hint}\n`);
  } else {
    stderr.write(`qbackup: error: internal error: ${messageOf(err)}\n`);
    stderr.write("qbackup: hint: this is a bug in qbackup; run with QBACKUP_DEBUG=1 for details\n");
  }
  if (process.env["QBACKUP_DEBUG"] === "1" && err instanceof Error && err.stack) stderr.write(`${err.stack}\n`);
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
