/**
 * Random byte-level edits of a valid input, for the property tests that feed mutated input to a
 * parser: set or insert a byte (often one the format gives meaning to), delete a run, truncate.
 */
import fc from "fast-check";
import { BLOCK_SIZE, headerChecksum } from "../../src/codec/tar/header.js";
import { F_CHKSUM, F_MAGIC } from "../../src/codec/tar/layout.js";

export type ByteEdit =
  | { kind: "set" | "insert"; at: number; byte: number }
  | { kind: "delete"; at: number; length: number }
  | { kind: "truncate"; at: number };

/** Edits whose bytes are one of `interesting` or any byte, deleting 1 to `maxDelete` bytes. */
export function byteEditArb(interesting: readonly number[], maxDelete: number): fc.Arbitrary<ByteEdit> {
  return fc.oneof(
    fc.record({
      kind: fc.constantFrom("set" as const, "insert" as const),
      at: fc.nat(),
      byte: fc.oneof(fc.constantFrom(...interesting), fc.nat(255)),
    }),
    fc.record({ kind: fc.constant("delete" as const), at: fc.nat(), length: fc.integer({ min: 1, max: maxDelete }) }),
    fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }),
  );
}

/** The input with the edits applied in order; positions wrap around the current length. */
export function applyByteEdits(input: Uint8Array, edits: readonly ByteEdit[]): Buffer {
  let b = Buffer.from(input);
  for (const e of edits) {
    const at = e.at % (b.length + 1);
    if (e.kind === "set" && at < b.length) b[at] = e.byte;
    else if (e.kind === "set" || e.kind === "insert") {
      b = Buffer.concat([b.subarray(0, at), Buffer.of(e.byte), b.subarray(at)]);
    } else if (e.kind === "delete") b = Buffer.concat([b.subarray(0, at), b.subarray(at + e.length)]);
    else b = b.subarray(0, at);
  }
  return b;
}

/** Rewrites the checksum field of a 512-byte tar header block after its other fields changed. */
export function writeTarChecksum(block: Buffer): void {
  block.write(`${headerChecksum(block).toString(8).padStart(CHKSUM_DIGITS, "0")}\0 `, F_CHKSUM, "latin1");
}

/**
 * If byte `at` lies in a ustar header block, recompute that block's checksum, so that an edit
 * reaches the field parsers instead of stopping at the checksum.
 */
export function refreshTarChecksum(b: Buffer, at: number): void {
  const start = at - (at % BLOCK_SIZE);
  if (start + BLOCK_SIZE > b.length) return;
  const block = b.subarray(start, start + BLOCK_SIZE);
  if (block.toString("latin1", F_MAGIC, F_MAGIC + 5) === "ustar") writeTarChecksum(block);
}

/** Six octal digits, NUL, space: how GNU tar writes the checksum field. */
const CHKSUM_DIGITS = 6;
