/** `qbackup recovery-sheet BACKUP` — print the instructions for restoring BACKUP without qbackup. */
import { Command } from "commander";
import * as path from "node:path";
import { recoverySheet } from "../format/recovery-sheet.js";
import { recoveryFactsOf } from "../restore/recovery.js";
import { openFileSource } from "../transport/source.js";
import { EXIT_OK } from "./exit.js";

export function recoverySheetCommand(): Command {
  return new Command("recovery-sheet")
    .description("print how to restore BACKUP with GNU tar, scrypt and gzip alone (no passphrase needed)")
    .argument("<backup>", "a format v4 backup file")
    .addHelpText(
      "after",
      `
The same text create writes beside every backup file as BACKUP.RESTORE-INSTRUCTIONS.txt. Keep a
copy, and the passphrase, somewhere that is not inside the backup.

Example:
  qbackup recovery-sheet /mnt/backups/qubes-backup-2026-11-22T153000 > instructions.txt`,
    )
    .action(async (backup: string) => {
      const source = await openFileSource(backup);
      try {
        process.stdout.write(recoverySheet(await recoveryFactsOf(source, path.basename(backup))));
      } finally {
        await source.close(true);
      }
      process.exitCode = EXIT_OK;
    });
}
