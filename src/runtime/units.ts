/** Sizes on the command line (`100M`, `4K`, `1G`: binary suffixes) and in human output. */
import { QbackupError } from "../errors.js";

const SUFFIX: Record<string, number> = { "": 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 };

export function parseSize(text: string, what: string): number {
  const m = /^(\d+)([KMG]?)$/i.exec(text.trim());
  const value = m ? Number(m[1]) * SUFFIX[m[2]!.toUpperCase()]! : NaN;
  if (!Number.isSafeInteger(value)) {
    throw new QbackupError("ERR_USAGE", `${what} '${text}' is not a size (bytes, or a number with K, M or G)`);
  }
  return value;
}

export function parseInteger(text: string, what: string, min: number, max: number): number {
  const value = /^\d+$/.test(text.trim()) ? Number(text) : NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new QbackupError("ERR_USAGE", `${what} must be an integer from ${min} to ${max}, not '${text}'`);
  }
  return value;
}

export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
}
