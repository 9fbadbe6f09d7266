/**
 * One error class with a stable `code` for everything qbackup refuses or fails at.
 * Callers (and tests) branch on `code`, never on message text. The CLI maps codes to
 * exit statuses in one place (src/cli/exit.ts).
 */

export type ErrorCode =
  // command line and configuration
  | "ERR_USAGE"
  | "ERR_PROFILE"
  | "ERR_PASSPHRASE_INVALID"
  | "ERR_PASSPHRASE_MISMATCH"
  | "ERR_PASSPHRASE_SOURCE"
  // sources and destinations
  | "ERR_SOURCE"
  | "ERR_INPUT"
  | "ERR_DEST_EXISTS"
  | "ERR_DEST_FULL"
  | "ERR_DEST"
  | "ERR_FILTER_NOT_ALLOWED"
  | "ERR_FILTER_FAILED"
  | "ERR_ABORTED"
  // scrypt container
  | "ERR_SCRYPT_FORMAT"
  | "ERR_SCRYPT_HEADER_CHECKSUM"
  | "ERR_SCRYPT_PARAMS"
  | "ERR_KDF_LIMIT"
  | "ERR_PASSPHRASE_WRONG"
  | "ERR_CHUNK_AUTH"
  | "ERR_MISSING"
  // backup-header
  | "ERR_HEADER_MALFORMED"
  | "ERR_HEADER_UNSUPPORTED"
  // tar
  | "ERR_TAR_MALFORMED"
  | "ERR_UNSAFE_PATH"
  // qubes.xml
  | "ERR_QUBES_XML"
  // disk images browsed by ls/extract
  | "ERR_UNSUPPORTED_FS"
  | "ERR_IMAGE_MALFORMED"
  | "ERR_NOT_FOUND"
  // anything that is a bug, not bad input
  | "ERR_INTERNAL";

export class QbackupError extends Error {
  override readonly name = "QbackupError";
  readonly code: ErrorCode;
  /** A second line for the user: what to do about it. */
  readonly hint: string | undefined;

  constructor(code: ErrorCode, message: string, options?: { hint?: string; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.hint = options?.hint;
  }
}

export function isQbackupError(err: unknown, code?: ErrorCode): err is QbackupError {
  return err instanceof QbackupError && (code === undefined || err.code === code);
}

/** The errno-style code of a Node system error, if any (`ENOENT`, `ENOSPC`, …). */
export function systemErrorCode(err: unknown): string | undefined {
  if (typeof err === "object" && err !== null && "code" in err && typeof err.code === "string") return err.code;
  return undefined;
}

/** A failed write to a destination, as one line naming where: full, missing, not writable, or other. */
export function destinationError(err: unknown, where: string): QbackupError {
  if (err instanceof QbackupError) return err;
  const code = systemErrorCode(err);
  if (code === "ENOSPC" || code === "EDQUOT") {
    return new QbackupError("ERR_DEST_FULL", `destination full: no space left writing ${where}`, { cause: err });
  }
  if (code === "EEXIST") return new QbackupError("ERR_DEST_EXISTS", `${where} already exists`, { cause: err });
  if (code === "ENOENT") return new QbackupError("ERR_DEST", `destination ${where} does not exist`, { cause: err });
  if (code === "EACCES" || code === "EPERM" || code === "EROFS") {
    return new QbackupError("ERR_DEST", `destination ${where} is not writable (${code})`, { cause: err });
  }
  const detail = err instanceof Error ? err.message : String(err);
  return new QbackupError("ERR_DEST", `cannot write destination ${where}: ${detail}`, { cause: err });
}
