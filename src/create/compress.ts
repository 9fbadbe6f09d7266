/**
 * Compression stage: one compressed stream per archived file (spec §4.4), gzip in-process via
 * node:zlib, or an allowlisted external filter program, or none.
 */
import { createGzip } from "node:zlib";
import { runFilter } from "../runtime/filters.js";
import { through } from "../runtime/streams.js";

export type Compression =
  | { kind: "none" }
  | { kind: "gzip"; level: number }
  /** `program` is the resolved path of an allowlisted filter; `name` goes into the header. */
  | { kind: "filter"; name: string; program: string };

export const DEFAULT_GZIP_LEVEL = 6;

/** The `compressed` / `compression-filter` pair for the backup header (REF-W writes gzip when off). */
export function headerCompressionFields(c: Compression): { compressed: boolean; compressionFilter: string } {
  switch (c.kind) {
    case "none":
      return { compressed: false, compressionFilter: "gzip" };
    case "gzip":
      return { compressed: true, compressionFilter: "gzip" };
    case "filter":
      return { compressed: true, compressionFilter: c.name };
  }
}

export function compress(input: AsyncIterable<Buffer>, c: Compression): AsyncIterable<Buffer> {
  switch (c.kind) {
    case "none":
      return input;
    case "gzip":
      return through(input, createGzip({ level: c.level }));
    case "filter":
      return runFilter(c.program, [], input);
  }
}
