/**
 * The recovery sheet: plain-text instructions, written beside a backup, for restoring it with GNU
 * tar, the stock `scrypt` tool and the decompressor alone (spec §9.1) — the day qbackup is not
 * at hand. Everything specific to the backup is spelled out: its backup-id, every chunk name in
 * order (past .999 too, where the usual `*.???.enc` glob fails), the `!`-passphrase strings, and a
 * script to run as it stands.
 */
import { BACKUP_HEADER_HMAC_NAME, BACKUP_HEADER_NAME, chunkPath } from "./names.js";

export interface RecoveryFacts {
  /** The backup's file name, as stored. */
  backupName: string;
  backupId: string;
  /** The compression filter (`gzip`, `xz`, …), or null when the backup is not compressed. */
  compressionFilter: string | null;
  /** Every archived file (qubes.xml included) and its number of chunks, in backup order. */
  files: ReadonlyArray<{ base: string; chunks: number }>;
}

/** Written beside a backup file: `<backup>.RESTORE-INSTRUCTIONS.txt`. */
export const RECOVERY_SHEET_SUFFIX = ".RESTORE-INSTRUCTIONS.txt";

export const SCRIPT_BEGIN = "# ----- begin restore.sh -----";
export const SCRIPT_END = "# ----- end restore.sh -----";

/** Shell single-quoting: `it's` → `'it'\''s'`. */
function q(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

export function recoverySheet(f: RecoveryFacts): string {
  const decompress = f.compressionFilter === null ? "cat" : `${f.compressionFilter} -d`;
  const script: string[] = [
    "#!/bin/bash",
    "# usage: bash restore.sh BACKUP-FILE   (asks for the passphrase; restores into ./restored)",
    "set -euo pipefail",
    'BACKUP=$(realpath "${1:?give the backup file}")',
    "IFS= read -r -s -p 'backup passphrase: ' PASS; echo >&2",
    "mkdir restored && cd restored",
    'tar -i -xf "$BACKUP"',
    "# 1. the header is authentic only if its sealed copy decrypts to exactly the same bytes",
    `printf '%s\\n' "backup-header!$PASS" | scrypt dec -P ${BACKUP_HEADER_HMAC_NAME} ${BACKUP_HEADER_NAME}.verified`,
    `cmp ${BACKUP_HEADER_NAME} ${BACKUP_HEADER_NAME}.verified`,
    "mkdir extracted",
    "# 2. each file: decrypt its chunks in order (each checks itself), decompress, untar",
  ];
  for (const { base, chunks } of f.files) {
    const parts = Array.from({ length: chunks }, (_, i) => chunkPath(base, i));
    script.push(`# ${base}: ${chunks} chunk${chunks === 1 ? "" : "s"}`);
    for (const part of parts) {
      script.push(
        `printf '%s\\n' ${q(`${f.backupId}!${part}!`)}"$PASS" | scrypt dec -P ${q(`${part}.enc`)} ${q(part)}`,
      );
    }
    script.push(`cat ${parts.map(q).join(" ")} | ${decompress} | tar -xf - -C extracted`);
    script.push(`rm ${parts.map(q).join(" ")}`);
  }
  script.push('echo "restored into $PWD/extracted" >&2');

  return [
    `RESTORE INSTRUCTIONS for the Qubes backup ${f.backupName}`,
    "",
    `Backup id:   ${f.backupId}`,
    "Format:      Qubes OS backup format v4 (qvm-backup-restore, qbackup and the commands below read it)",
    `Compression: ${f.compressionFilter ?? "none"}`,
    `Files:       ${f.files.map((x) => `${x.base} (${x.chunks} chunk${x.chunks === 1 ? "" : "s"})`).join(", ")}`,
    "",
    "With qbackup:",
    `    qbackup list ${q(f.backupName)}`,
    `    qbackup restore ${q(f.backupName)} DESTDIR`,
    "",
    "With Qubes OS: qvm-backup-restore, or the Qube Manager's restore dialog.",
    "",
    "With nothing but GNU tar, scrypt and the decompressor:",
    "  You need GNU tar, `scrypt` (Debian/Ubuntu: apt install scrypt; source: https://www.tarsnap.com/scrypt.html)",
    `  and ${f.compressionFilter ?? "nothing else"}. Every member of the backup is a scrypt container; the`,
    "  passphrase of each is a string built from the backup passphrase P:",
    "      backup-header.hmac      backup-header!P",
    `      <file>.NNN.enc          ${f.backupId}!<file>.NNN!P`,
    "  `scrypt dec` refuses a container whose passphrase string is wrong or whose bytes were",
    "  altered; stop at the first refusal (the file it wrote is then unverified: delete it).",
    "  If scrypt says the container needs more memory or time than it allows, add -f after `dec`.",
    "  Save the lines between the markers below as restore.sh and run: bash restore.sh BACKUP-FILE",
    "  The qubes' files appear under restored/extracted/vmN/, the dom0 home under",
    "  restored/extracted/dom0-home/, and the list of qubes in restored/extracted/qubes.xml.",
    "",
    SCRIPT_BEGIN,
    ...script,
    SCRIPT_END,
    "",
  ].join("\n");
}

/** The script part of a sheet (between the markers), for running it. */
export function scriptOf(sheet: string): string {
  const begin = sheet.indexOf(SCRIPT_BEGIN);
  const end = sheet.indexOf(SCRIPT_END);
  return begin < 0 || end < begin ? "" : sheet.slice(begin + SCRIPT_BEGIN.length + 1, end);
}
