/** `qbackup list [options] BACKUP` — what qvm-backup-restore shows before restoring. */
import { Command } from "commander";
import { availableParallelism } from "node:os";
import { listBackup } from "../restore/index.js";
import type { BackupListing } from "../restore/index.js";
import { EXIT_OK } from "./exit.js";
import { addReadOptions, openOptionsFrom, openSource } from "./read-options.js";
import type { ReadFlags } from "./read-options.js";
import { formatBytes } from "./units.js";
import { renderTable } from "./output.js";
import { backupTitle } from "./output.js";

export function listCommand(): Command {
  const cmd = new Command("list")
    .description("show the qubes in a backup (reads only its header and qubes.xml)")
    .argument("[backup]", "a backup file, or - for stdin (leave out with --source-command)")
    .option("--json", "print one JSON object instead of a table");
  addReadOptions(cmd).addHelpText(
    "after",
    `
Examples:
  qbackup list -p ~/.backup-pass /mnt/backups/qubes-backup-2026-11-22T153000
  qbackup list --json --source-command 'ssh storage cat /srv/b/latest' | jq .domains`,
  );
  return cmd.action(async (backup: string | undefined, flags: ReadFlags & { json?: boolean }) => {
    const options = await openOptionsFrom(flags, backup);
    // the header's and qubes.xml's KDFs run side by side
    const listing = await listBackup(await openSource(backup, flags), {
      ...options,
      jobs: Math.min(2, availableParallelism()),
    });
    process.stdout.write(flags.json ? `${JSON.stringify(listing, null, 2)}\n` : listingTable(listing));
    process.exitCode = EXIT_OK;
  });
}

export function listingTable(l: BackupListing): string {
  const rows = [["qube", "class", "template", "netvm", "label", "size", "in backup"]];
  for (const d of l.domains) {
    rows.push([
      d.name,
      d.klass,
      d.template ?? "-",
      d.klass === "AdminVM" ? "-" : d.netvm === null ? "(none)" : d.netvm,
      d.label,
      d.included ? formatBytes(d.size) : "-",
      d.included ? "yes" : "no",
    ]);
  }
  const compression = l.compressed ? (l.compressionFilter ?? "?") : "none";
  return `${backupTitle(l.backupId, l.version)} (compression ${compression})\n${renderTable(rows, [5])}`;
}
