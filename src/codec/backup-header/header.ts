/**
 * The `backup-header` member: types, the byte-exact v4 writer form, and a parser that accepts and
 * rejects exactly like the reference reader's rules 1–11 (spec §3.4), stricter only in its allow-lists
 * and a size cap. Hand-written because no key=value library reproduces those quirks (Python's
 * `splitlines`/`strip` semantics, per-key validation order, forced values).
 */
import { QbackupError } from "../../errors.js";
import {
  isAllowedCompressionFilter,
  isKnownCompressionFilter,
  isKnownCryptoAlgorithm,
  isKnownHmacAlgorithm,
} from "./allowlists.js";

/** The v4 `backup-header.hmac` (header + 128 bytes of scrypt container) must fit in 4096 bytes (spec §2.5). */
export const MAX_BACKUP_HEADER_BYTES = 4096 - 128;

/** Versions the reference reader knows (1 = no real header; the restore layer refuses it). */
export const MIN_BACKUP_VERSION = 1;
export const MAX_BACKUP_VERSION = 4;
/** The only version we write. */
export const WRITTEN_BACKUP_VERSION = 4;

export interface BackupHeader {
  version: number; // 1..4
  encrypted: boolean;
  compressed: boolean;
  /** Present if the header had it (or it was forced). */
  compressionFilter?: string;
  /** As written (case preserved, e.g. `AES-256-CBC`); compare case-insensitively. */
  cryptoAlgorithm?: string;
  /** As written (case preserved, e.g. `SHA512`); compare case-insensitively. */
  hmacAlgorithm?: string;
  backupId?: string;
}

export interface ParseHeaderOptions {
  /** Like qvm-backup-restore -Z: the header's compression-filter value is ignored entirely and this used. */
  forcedCompressionFilter?: string;
  /** Whether an optional filter (zstd, pigz, ...) is installed here; default: none are. Pure: injected. */
  isFilterInstalled?: (name: string) => boolean;
}

export interface BackupHeaderV4Input {
  compressed: boolean;
  /** Written even when not compressed (REF-W writes `gzip` then). */
  compressionFilter: string;
  backupId: string;
}

/** Rules 4 and 8: keys and values are `[A-Za-z0-9-]*` (empty allowed). */
const KEY_OR_VALUE_RE = /^[A-Za-z0-9-]*$/;
/**
 * A non-empty `[A-Za-z0-9-]` name not starting with '-': `backup-id` as REF-R checks it (rules 8 + 10),
 * and what we require of a forced filter name (it becomes a program name, never an option or a path).
 */
const PLAIN_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9-]*$/;
/** What Python's `int()` accepts from a string that already passed rule 8. */
const PY_INT_RE = /^-?[0-9]+$/;
/** Python `bool` conversion in REF-R: anything else is False. */
const TRUE_WORDS: readonly string[] = ["1", "true", "yes"];
/** ASCII characters Python's `str.splitlines()` breaks at (`\r\n` counts as one break). */
const LINE_BREAK_CODES: ReadonlySet<number> = new Set([0x0a, 0x0b, 0x0c, 0x0d, 0x1c, 0x1d, 0x1e]);
/** ASCII characters Python's `str.strip()` removes. */
const STRIP_CODES: ReadonlySet<number> = new Set([0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x1c, 0x1d, 0x1e, 0x1f, 0x20]);
const CR = 0x0d;
const LF = 0x0a;
const MAX_ASCII = 0x7f;
/** Longest piece of untrusted text quoted back in an error message. */
const MAX_QUOTED_CHARS = 40;

const KNOWN_KEYS = [
  "version",
  "encrypted",
  "compressed",
  "compression-filter",
  "crypto-algorithm",
  "hmac-algorithm",
  "backup-id",
] as const;
type KnownKey = (typeof KNOWN_KEYS)[number];

function isKnownKey(key: string): key is KnownKey {
  return (KNOWN_KEYS as readonly string[]).includes(key);
}

function malformed(message: string): QbackupError {
  return new QbackupError("ERR_HEADER_MALFORMED", `backup-header: ${message}`);
}

function unsupported(message: string, hint?: string): QbackupError {
  return new QbackupError("ERR_HEADER_UNSUPPORTED", `backup-header: ${message}`, hint === undefined ? {} : { hint });
}

/** Quote untrusted text for a one-line message: control characters escaped, length capped. */
function quote(text: string): string {
  const shown = text.length > MAX_QUOTED_CHARS ? `${text.slice(0, MAX_QUOTED_CHARS)}...` : text;
  // eslint-disable-next-line no-control-regex
  return `'${shown.replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`)}'`;
}

/** Python `str.splitlines()` for ASCII text: no empty line after a final break, `\r\n` is one break. */
function splitLinesLikePython(text: string): string[] {
  const lines: string[] = [];
  let start = 0;
  let i = 0;
  while (i < text.length) {
    const code = text.charCodeAt(i);
    if (LINE_BREAK_CODES.has(code)) {
      lines.push(text.slice(start, i));
      i += code === CR && text.charCodeAt(i + 1) === LF ? 2 : 1;
      start = i;
    } else {
      i += 1;
    }
  }
  if (start < text.length) lines.push(text.slice(start));
  return lines;
}

/** Python `str.strip()` for ASCII text. */
function stripLikePython(text: string): string {
  let start = 0;
  let end = text.length;
  while (start < end && STRIP_CODES.has(text.charCodeAt(start))) start += 1;
  while (end > start && STRIP_CODES.has(text.charCodeAt(end - 1))) end -= 1;
  return text.slice(start, end);
}

/** REF-R's backup-id rule (§4.1): `[A-Za-z0-9-]+`, not starting with '-'. */
export function isValidBackupId(id: string): boolean {
  return PLAIN_NAME_RE.test(id);
}

/** REF-W form, byte-exact: version, encrypted, compressed, compression-filter, hmac-algorithm, backup-id. */
export function serializeBackupHeaderV4(h: BackupHeaderV4Input): Buffer {
  if (!isValidBackupId(h.backupId)) throw malformed(`cannot write invalid backup id ${quote(h.backupId)}`);
  if (!isKnownCompressionFilter(h.compressionFilter)) {
    throw malformed(`cannot write unknown compression filter ${quote(h.compressionFilter)}`);
  }
  const text =
    `version=${WRITTEN_BACKUP_VERSION}\n` +
    `encrypted=True\n` +
    `compressed=${h.compressed ? "True" : "False"}\n` +
    `compression-filter=${h.compressionFilter}\n` +
    `hmac-algorithm=scrypt\n` +
    `backup-id=${h.backupId}\n`;
  if (text.length > MAX_BACKUP_HEADER_BYTES) {
    throw malformed(`header would be ${text.length} bytes, more than the limit of ${MAX_BACKUP_HEADER_BYTES}`);
  }
  return Buffer.from(text, "ascii");
}

interface Fields {
  version?: number;
  encrypted?: boolean;
  compressed?: boolean;
  compressionFilter?: string;
  cryptoAlgorithm?: string;
  hmacAlgorithm?: string;
  backupId?: string;
}

/** Rules 9–10 for one known key whose value passed rule 8; stores the converted value. */
function applyKnownKey(
  fields: Fields,
  key: KnownKey,
  value: string,
  lineNo: number,
  options: ParseHeaderOptions,
): void {
  switch (key) {
    case "version": {
      if (!PY_INT_RE.test(value)) throw malformed(`version ${quote(value)} on line ${lineNo} is not a decimal number`);
      const version = Number(value);
      if (!(version >= MIN_BACKUP_VERSION && version <= MAX_BACKUP_VERSION)) {
        throw unsupported(`unsupported backup version ${quote(value)}`);
      }
      fields.version = version;
      return;
    }
    case "encrypted":
    case "compressed":
      fields[key] = TRUE_WORDS.includes(value.toLowerCase());
      return;
    case "compression-filter":
      if (!isAllowedCompressionFilter(value, options.isFilterInstalled)) {
        throw unsupported(
          `compression filter ${quote(value)} is not allowed here; use --compression-filter=${value} to force it`,
          "a forced filter is run as a program: force only one you trust",
        );
      }
      fields.compressionFilter = value;
      return;
    case "crypto-algorithm":
      if (!isKnownCryptoAlgorithm(value)) throw unsupported(`unknown crypto-algorithm ${quote(value)}`);
      fields.cryptoAlgorithm = value;
      return;
    case "hmac-algorithm":
      if (!isKnownHmacAlgorithm(value)) throw unsupported(`unknown hmac-algorithm ${quote(value)}`);
      fields.hmacAlgorithm = value;
      return;
    case "backup-id":
      if (!isValidBackupId(value)) throw malformed(`invalid backup-id ${quote(value)} on line ${lineNo}`);
      fields.backupId = value;
      return;
  }
}

/** Rule 11: keys each version needs. Version 1 needs nothing; anything else unknown is unsupported. */
function checkRequiredKeys(fields: Fields): number {
  const { version } = fields;
  if (version === undefined) {
    throw unsupported("unsupported backup version (no version line: format v2 or older?)");
  }
  if (version === MIN_BACKUP_VERSION) return version;
  const required: [KnownKey, unknown][] = [
    ["version", fields.version],
    ["encrypted", fields.encrypted],
    ["compressed", fields.compressed],
    ["hmac-algorithm", fields.hmacAlgorithm],
  ];
  if (fields.encrypted === true && version < 4) required.push(["crypto-algorithm", fields.cryptoAlgorithm]);
  if (fields.compressed === true && version >= 3) required.push(["compression-filter", fields.compressionFilter]);
  if (version >= 4) required.push(["backup-id", fields.backupId]);
  for (const [key, present] of required) {
    if (present === undefined) throw malformed(`missing '${key}' (required in format v${version})`);
  }
  return version;
}

/** Parse with the reference reader's rules 1–11 (spec §3.4), at least as strictly. Throws QbackupError. */
export function parseBackupHeader(bytes: Uint8Array, options: ParseHeaderOptions = {}): BackupHeader {
  if (bytes.length > MAX_BACKUP_HEADER_BYTES) {
    throw malformed(`${bytes.length} bytes, more than the limit of ${MAX_BACKUP_HEADER_BYTES}`);
  }
  const forced = options.forcedCompressionFilter;
  if (forced !== undefined && !PLAIN_NAME_RE.test(forced)) {
    throw new QbackupError("ERR_USAGE", `--compression-filter: ${quote(forced)} is not a plain program name`);
  }
  // Rule 1: ASCII only.
  const nonAscii = bytes.findIndex((b) => b > MAX_ASCII);
  if (nonAscii !== -1) throw malformed(`non-ASCII byte at offset ${nonAscii}`);
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("latin1");

  const fields: Fields = {};
  if (forced !== undefined) fields.compressionFilter = forced;
  const seen = new Set<KnownKey>();
  // Rule 2: Python splitlines().
  splitLinesLikePython(text).forEach((line, index) => {
    const lineNo = index + 1;
    // Rule 3: exactly one '=' (counted before stripping; stripping never removes '=').
    const equals = line.split("=").length - 1;
    if (equals === 0) throw malformed(`line ${lineNo} has no '='`);
    if (equals > 1) throw malformed(`line ${lineNo} has more than one '='`);
    // Rule 4: strip the whole line, split, check the key.
    const stripped = stripLikePython(line);
    const at = stripped.indexOf("=");
    const key = stripped.slice(0, at);
    const value = stripped.slice(at + 1);
    if (!KEY_OR_VALUE_RE.test(key)) throw malformed(`invalid key ${quote(key)} on line ${lineNo}`);
    // Rule 5: unknown keys are ignored, values unchecked, may repeat.
    if (!isKnownKey(key)) return;
    // Rule 6: a known key only once (checked even when its value is forced).
    if (seen.has(key)) throw malformed(`duplicated key '${key}' on line ${lineNo}`);
    seen.add(key);
    // Rule 7: a forced value wins; the header's value is not even looked at.
    if (key === "compression-filter" && forced !== undefined) return;
    // Rule 8.
    if (!KEY_OR_VALUE_RE.test(value)) throw malformed(`invalid value ${quote(value)} for '${key}' on line ${lineNo}`);
    applyKnownKey(fields, key, value, lineNo, options);
  });

  const version = checkRequiredKeys(fields);
  const header: BackupHeader = {
    version,
    // Only version 1 may lack these; it has no real header and is refused later anyway.
    encrypted: fields.encrypted ?? false,
    compressed: fields.compressed ?? false,
  };
  if (fields.compressionFilter !== undefined) header.compressionFilter = fields.compressionFilter;
  if (fields.cryptoAlgorithm !== undefined) header.cryptoAlgorithm = fields.cryptoAlgorithm;
  if (fields.hmacAlgorithm !== undefined) header.hmacAlgorithm = fields.hmacAlgorithm;
  if (fields.backupId !== undefined) header.backupId = fields.backupId;
  return header;
}
