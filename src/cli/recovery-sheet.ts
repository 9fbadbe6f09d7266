/** `qbackup recovery-sheet BACKUP` — print the instructions for restoring BACKUP without qbackup. */
import { Command } from "commander";
import * as path from "node:path";
import { recoverySheet } from "../format/recovery-sheet.js";
import { recoveryFactsOf } from "../restore/recovery.js";
import { openFileSource } from "../transport/source.js";
import { EXIT_OK } from "./exit.js";
import { Reporter } from "./reporter.js";

export function recoverySheetCommand(): Command {
  return new Command("recovery-sheet")
    .description("print how to restore BACKUP with GNU tar, scrypt and gzip alone (no passphrase needed)")
    .argument("<backup>", "a format v4 backup file")
    .option("--json", "one JSON summary object with the backup's facts and the text")
    .addHelpText(
      "after",
      `
The same text create writes beside every backup file as BACKUP.RESTORE-INSTRUCTIONS.txt. Keep a
copy, and the passphrase, somewhere that is not inside the backup.

Example:
  qbackup recovery-sheet /mnt/backups/qubes-backup-2026-11-22T153000 > instructions.txt`,
    )
    .action(async (backup: string, flags: { json?: boolean }) => {
      const source = await openFileSource(backup);
      try {
        const facts = await recoveryFactsOf(source, path.basename(backup));
        const text = recoverySheet(facts);
        if (flags.json) new Reporter(flags).summary("recovery-sheet", { ...facts, text });
        else process.stdout.write(text);
      } finally {
        await source.close(true);
      }
      process.exitCode = EXIT_OK;
    });
}
