/**
 * Decompression of authenticated streams: gzip in-process (gunzip.ts: libdeflate member by member,
 * node:zlib's rules for anything else: strict about truncation and trailing data), other
 * allowlisted filters as `<prog> -d` child processes, or nothing.
 */
import type { BackupHeader } from "../codec/backup-header/index.js";
import { QbackupError } from "../errors.js";
import { resolveFilterProgram, runFilter } from "../runtime/filters.js";
import { gunzip } from "../runtime/gunzip.js";

export type Decompression = { kind: "none" } | { kind: "gzip" } | { kind: "filter"; name: string; program: string };

/** From the authenticated header (or the user's --compression-filter, already applied by the parser). */
export function decompressionFor(header: BackupHeader): Decompression {
  if (!header.compressed) return { kind: "none" };
  const name = header.compressionFilter;
  if (name === undefined)
    throw new QbackupError("ERR_HEADER_MALFORMED", "backup-header: compressed without a compression-filter");
  if (name === "gzip") return { kind: "gzip" };
  return { kind: "filter", name, program: resolveFilterProgram(name) };
}

export function decompress(input: AsyncIterable<Buffer>, d: Decompression, what: string): AsyncIterable<Buffer> {
  switch (d.kind) {
    case "none":
      return input;
    case "gzip":
      return renameErrors(gunzip(input), what, "gzip");
    case "filter":
      return runFilter(d.program, ["-d"], input);
  }
}

async function* renameErrors(input: AsyncIterable<Buffer>, what: string, name: string): AsyncGenerator<Buffer> {
  try {
    yield* input;
  } catch (err) {
    if (err instanceof QbackupError) throw err;
    const detail = err instanceof Error ? err.message : String(err);
    const truncated = /unexpected end of file/i.test(detail);
    throw new QbackupError(
      truncated ? "ERR_MISSING" : "ERR_FILTER_FAILED",
      truncated
        ? `${what}: compressed stream ends early (a chunk is missing)`
        : `${what}: ${name} stream is corrupt: ${detail}`,
      { cause: err },
    );
  }
}
