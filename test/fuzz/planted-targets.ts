/**
 * Targets with planted bugs, to check that the fuzz engine (fuzz/engine.ts) finds what it must:
 * a crash behind a chain of byte comparisons (only coverage guidance gets there in seconds), a
 * hang, an absurd allocation, and an unhandled rejection. QbackupErrors are never crashes.
 */
import { QbackupError } from "../../src/errors.js";
import type { TargetSpec } from "../../fuzz/engine.js";

/** Bytes the crash hides behind, one comparison (one new block) per byte. */
const MAGIC = [0x3c, 0x3d, 0x30, 0x20];
const ALLOCATION = 1 << 20;

async function plantedCrash(data: Buffer): Promise<void> {
  let matched = 0;
  for (const [i, b] of MAGIC.entries()) {
    if (data[i] !== b) break;
    matched++;
  }
  // one block per depth, so each byte matched is new coverage
  switch (matched) {
    case 0:
      throw new QbackupError("ERR_TAR_MALFORMED", "planted: no magic");
    case 1:
      throw new QbackupError("ERR_TAR_MALFORMED", "planted: one byte");
    case 2:
      throw new QbackupError("ERR_TAR_MALFORMED", "planted: two bytes");
    case 3:
      throw new QbackupError("ERR_TAR_MALFORMED", "planted: three bytes");
    default:
      throw new TypeError("planted crash");
  }
}

async function plantedHang(data: Buffer): Promise<void> {
  if (data.length > 0 && data[0]! < 0x80) for (;;);
}

async function plantedAllocation(data: Buffer): Promise<void> {
  if (data.length === 0 || data[0]! >= 0x80) return;
  const hoard: number[][] = [];
  for (;;) hoard.push(new Array<number>(ALLOCATION).fill(data.length));
}

async function plantedRejection(data: Buffer): Promise<void> {
  if (data.length > 0 && data[0]! < 0x80) void Promise.reject(new TypeError("planted rejection"));
}

async function internalError(): Promise<void> {
  throw new QbackupError("ERR_INTERNAL", "planted internal error");
}

export const TARGETS: Readonly<Record<string, TargetSpec>> = {
  "planted-crash": { name: "planted-crash", run: plantedCrash, maxLen: 8 },
  "planted-hang": { name: "planted-hang", run: plantedHang, maxLen: 8 },
  "planted-allocation": { name: "planted-allocation", run: plantedAllocation, maxLen: 8 },
  "planted-rejection": { name: "planted-rejection", run: plantedRejection, maxLen: 8 },
  "internal-error": { name: "internal-error", run: internalError, maxLen: 8 },
};
