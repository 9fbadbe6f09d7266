/**
 * Where a backup stream goes. A sink receives bytes in order; `commit` makes the backup visible
 * under its final name only after everything was written; `abort` removes every trace of it.
 * Sinks know nothing about the backup format.
 */
export interface BackupSink {
  /** Human-readable final location, for messages (a path, `-` for stdout, …). */
  readonly location: string;
  /** Resolves once the bytes were handed to the OS; the buffer may be reused afterwards. */
  write(data: Uint8Array): Promise<void>;
  /**
   * Seekable sinks only (a file): overwrite bytes already written, at `position` from the start.
   * Lets a writer put a placeholder first and the real bytes once they are known.
   */
  writeAt?(position: number, data: Uint8Array): Promise<void>;
  /** Flush, make durable, and publish under the final name. Never overwrites an existing file. */
  commit(): Promise<void>;
  /** Remove the partial output. Safe to call more than once and after a failed commit. */
  abort(): Promise<void>;
}
