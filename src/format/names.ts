/**
 * v4 naming rules shared by the create and restore pipelines (spec §2.2, §4.1, §4.5, §4.6):
 * outer member names, chunk numbering, and the passphrase strings that bind each sealed unit
 * to its backup, its file and its position.
 */
import { randomInt } from "node:crypto";
import { QbackupError } from "../errors.js";

export const BACKUP_HEADER_NAME = "backup-header";
export const BACKUP_HEADER_HMAC_NAME = "backup-header.hmac";
export const QUBES_XML_BASE = "qubes.xml";
export const ENC_SUFFIX = ".enc";
/** Qubes' writer constant; smaller chunks break the reference reader's file-count limit (spec §4.5). */
export const DEFAULT_CHUNK_SIZE = 100 * 1024 * 1024;
export const MAX_CHUNK_SIZE = DEFAULT_CHUNK_SIZE;
/** Only for tests and experiments; every chunk costs a KDF run and a member header. */
export const MIN_CHUNK_SIZE = 1024;
/** The stock scrypt CLI reads the passphrase through a 2048-byte buffer and silently truncates (spec §4.6). */
export const MAX_PASSPHRASE_STRING_BYTES = 2047;

/** `3` → `"003"`, `1000` → `"1000"` (printf `%03d`: the width grows after 999). */
export function chunkNumber(index: number): string {
  if (!Number.isSafeInteger(index) || index < 0) throw new QbackupError("ERR_INTERNAL", `bad chunk index ${index}`);
  return String(index).padStart(3, "0");
}

/** `vm5/private.img`, 3 → `vm5/private.img.003` (the name the passphrase string uses). */
export function chunkPath(fileBase: string, index: number): string {
  return `${fileBase}.${chunkNumber(index)}`;
}

/** `vm5/private.img`, 3 → `vm5/private.img.003.enc` (the outer member name). */
export function chunkMemberName(fileBase: string, index: number): string {
  return chunkPath(fileBase, index) + ENC_SUFFIX;
}

/**
 * `<file>.NNN<suffix>` → base `<file>`, index NNN, refusing a number printf %03d would not have
 * written. v4 members end in `.enc` (`vm5/private.img.003.enc`), v3 chunks in nothing
 * (`vm5/private.img.003`; a v3 template's `vm1/..000` has base `vm1/.`).
 */
export function parseChunkName(name: string, suffix: string, format: string): { base: string; index: number } {
  const digits = name.endsWith(suffix) ? /^(.+)\.(\d{3,})$/.exec(name.slice(0, name.length - suffix.length)) : null;
  if (!digits) {
    throw new QbackupError("ERR_TAR_MALFORMED", `member ${name} is not a ${format} chunk (<file>.NNN${suffix})`);
  }
  const index = Number(digits[2]);
  if (!Number.isSafeInteger(index) || chunkNumber(index) !== digits[2]) {
    throw new QbackupError("ERR_TAR_MALFORMED", `member ${name} has a malformed chunk number`);
  }
  return { base: digits[1]!, index };
}

/** `vm5/private.img.003.enc` → base `vm5/private.img`, index 3. */
export function parseChunkMemberName(name: string): { base: string; index: number } {
  return parseChunkName(name, ENC_SUFFIX, "v4");
}

/** Passphrase string of `backup-header.hmac`: `backup-header!P`. */
export function headerPassphraseString(passphrase: string): Buffer {
  return boundedPassphraseString(`${BACKUP_HEADER_NAME}!${passphrase}`);
}

/** Passphrase string of a chunk: `<backup-id>!<path>.NNN!P`. */
export function chunkPassphraseString(backupId: string, fileBase: string, index: number, passphrase: string): Buffer {
  return boundedPassphraseString(`${backupId}!${chunkPath(fileBase, index)}!${passphrase}`);
}

function boundedPassphraseString(s: string): Buffer {
  const bytes = Buffer.from(s, "utf8");
  if (bytes.length > MAX_PASSPHRASE_STRING_BYTES) {
    throw new QbackupError(
      "ERR_PASSPHRASE_INVALID",
      `passphrase string for a member is ${bytes.length} bytes; the stock scrypt tool reads at most ${MAX_PASSPHRASE_STRING_BYTES}`,
      { hint: "use a shorter passphrase" },
    );
  }
  return bytes;
}

/**
 * A fresh backup id: local time `YYYYmmddTHHMMSS` like the reference writer, then 9 random digits
 * instead of its PID, so two backups with one passphrase do not share an id (spec §4.1).
 */
export function newBackupId(now: Date = new Date()): string {
  const p = (n: number, w = 2) => String(n).padStart(w, "0");
  const stamp =
    `${p(now.getFullYear(), 4)}${p(now.getMonth() + 1)}${p(now.getDate())}T` +
    `${p(now.getHours())}${p(now.getMinutes())}${p(now.getSeconds())}`;
  return `${stamp}-${String(randomInt(0, 1_000_000_000)).padStart(9, "0")}`;
}

/** Outer directory of a qube's members: `vm<qid>/` (spec §4.2). */
export function qubeBackupPath(qid: number): string {
  return `vm${qid}/`;
}

/** File base of the dom0 home: `dom0-home/<user>` (spec §7). */
export function dom0HomeBase(user: string): string {
  return `dom0-home/${user}`;
}
