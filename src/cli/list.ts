/**
 * `qbackup list [options] BACKUP` — what qvm-backup-restore shows before restoring; and
 * `qbackup list ssh+agent://HOST/` — the backups a storage agent holds.
 */
import { Command } from "commander";
import { availableParallelism } from "node:os";
import { agentList } from "../agent/client.js";
import { RECOVERY_SHEET_SUFFIX } from "../format/recovery-sheet.js";
import { listBackup } from "../restore/index.js";
import { AGENT_REMOTE_COMMAND, parseRemote, sshArgv } from "../transport/remote.js";
import type { SshTarget } from "../transport/remote.js";
import type { BackupListing } from "../restore/index.js";
import { EXIT_OK } from "./exit.js";
import { addReadOptions, openOptionsFrom, openSource } from "./read-options.js";
import type { ReadFlags } from "./read-options.js";
import { remoteOptionsFrom, stallMsFrom } from "./remote-options.js";
import { formatBytes } from "../runtime/units.js";
import { backupTitle, renderTable } from "./output.js";
import { Reporter, addOutputOptions } from "./reporter.js";
import type { OutputFlags } from "./reporter.js";

export function listCommand(): Command {
  const cmd = new Command("list")
    .description("show the qubes in a backup (reads only its header and qubes.xml), or the backups an agent holds")
    .argument(
      "[backup]",
      "a backup file, - for stdin, a remote (leave out with --source-command); ssh+agent://HOST/ lists the agent's backups",
    );
  addOutputOptions(cmd);
  addReadOptions(cmd).addHelpText(
    "after",
    `
Examples:
  qbackup list -p ~/.backup-pass /mnt/backups/qubes-backup-2026-11-22T153000
  qbackup list --json --source-command 'ssh storage cat /srv/b/latest' | jq .domains
  qbackup list ssh+agent://backup@storage/          # the backups stored there, no passphrase needed`,
  );
  return cmd.action(async (backup: string | undefined, flags: ReadFlags & OutputFlags) => {
    const reporter = new Reporter(flags);
    const agent = backup === undefined ? undefined : agentRoot(backup);
    if (agent !== undefined) {
      await listAgent(backup!, agent, flags, reporter);
      process.exitCode = EXIT_OK;
      return;
    }
    const options = await openOptionsFrom(flags, backup);
    // the header's and qubes.xml's KDFs run side by side
    const listing = await listBackup(await openSource(backup, flags), {
      ...options,
      jobs: Math.min(2, availableParallelism()),
    });
    if (reporter.json) reporter.summary("list", { ...listing });
    else process.stdout.write(listingTable(listing));
    process.exitCode = EXIT_OK;
  });
}

/** The agent `ssh+agent://HOST/` names (no backup name), or undefined for anything else. */
function agentRoot(text: string): SshTarget | undefined {
  if (!text.startsWith("ssh+agent://")) return undefined;
  const spec = parseRemote(text);
  return spec.kind === "agent" && spec.name === "" ? spec.target : undefined;
}

/** The agent's backups (newest last), each with whether its restore instructions are beside it. */
async function listAgent(url: string, target: SshTarget, flags: ReadFlags, reporter: Reporter): Promise<void> {
  const entries = await agentList(
    sshArgv(target, AGENT_REMOTE_COMMAND, remoteOptionsFrom(flags).ssh),
    stallMsFrom(flags),
  );
  const names = new Set(entries.map((e) => e.name));
  const backups = entries
    .filter((e) => !e.name.endsWith(RECOVERY_SHEET_SUFFIX))
    .sort((a, b) => a.mtime.getTime() - b.mtime.getTime() || (a.name < b.name ? -1 : 1))
    .map((e) => ({
      name: e.name,
      size: e.size,
      received: e.mtime.toISOString(),
      restoreInstructions: names.has(`${e.name}${RECOVERY_SHEET_SUFFIX}`),
    }));
  if (reporter.json) {
    reporter.summary("list", { agent: url, backups });
    return;
  }
  const rows = [["backup", "size", "received (UTC)", "instructions"]];
  for (const b of backups) {
    rows.push([
      b.name,
      formatBytes(b.size),
      b.received.replace("T", " ").replace(/\.\d+Z$/, ""),
      b.restoreInstructions ? "yes" : "no",
    ]);
  }
  process.stdout.write(renderTable(rows, [1]));
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
