/**
 * `qbackup restore [options] BACKUP DESTDIR [QUBE...]` and `qbackup verify [options] BACKUP [QUBE...]`,
 * with qvm-backup-restore's options where they apply.
 */
import { Command } from "commander";
import { availableParallelism } from "node:os";
import { QbackupError } from "../errors.js";
import { restoreBackup } from "../restore/index.js";
import type { RestoreEvent, RestoreOptions, RestoreReport } from "../restore/index.js";
import { EXIT_INCOMPLETE, EXIT_OK } from "./exit.js";
import { onInterrupt } from "./interrupt.js";
import { backupTitle, restoreReportTable } from "./output.js";
import { Reporter, addOutputOptions } from "./reporter.js";
import type { OutputFlags, Progress } from "./reporter.js";
import { addReadOptions, openOptionsFrom, openSource } from "./read-options.js";
import type { ReadFlags } from "./read-options.js";
import { formatBytes, parseInteger } from "../runtime/units.js";

interface RestoreFlags extends ReadFlags, OutputFlags {
  exclude: string[];
  skipDom0Home?: boolean;
  ignoreSizeLimit?: boolean;
  verifyOnly?: boolean;
  renameConflicting?: boolean;
  keepComplete?: boolean;
  jobs: string;
}

const collect = (value: string, previous: string[]) => [...previous, value];

function addJobsOption(cmd: Command): Command {
  return cmd.option(
    "-j, --jobs <n>",
    "containers whose keys are derived at once, from a backup file (each needs the KDF's memory)",
    String(availableParallelism()),
  );
}

/** How long an interrupted restore may take to remove what it wrote (a KDF may have to finish). */
const INTERRUPT_GRACE_MS = 30_000;

export function restoreCommand(): Command {
  const cmd = new Command("restore")
    .description("restore qubes from a backup into DESTDIR/<qube>/ (volumes as sparse <volume>.img files)")
    .usage("[options] BACKUP DESTDIR [QUBE...]   (with --source-command: DESTDIR [QUBE...])")
    .argument("<args...>")
    .option("-x, --exclude <qube>", "do not restore QUBE (repeatable)", collect, [])
    .option("--skip-dom0-home", "do not restore the dom0 home directory")
    .option("--ignore-size-limit", "accept more data than a qube's recorded backup-size")
    .option("--verify-only", "verify the backup completely, write nothing (same as `qbackup verify`)")
    .option("--rename-conflicting", "restore beside an existing DESTDIR/<qube> as <qube>-1, -2, …")
    .option("--keep-complete", "keep each qube as soon as it is complete, even if a later part of the backup fails");
  addJobsOption(cmd);
  addOutputOptions(cmd);
  addReadOptions(cmd).addHelpText(
    "after",
    `
Output: DESTDIR/<qube>/<volume>.img (holes kept), firewall.xml and notes.txt beside it, directory
trees as DESTDIR/<qube>/<name>/, DESTDIR/<qube>/qube.json (class, label, template, netvm,
properties, features, tags, devices), and the dom0 home as DESTDIR/dom0-home/<user>/.
Every chunk is authenticated before any of its bytes is decompressed or parsed. Qubes are built
under temporary names and appear only when the whole restore succeeded (with --keep-complete:
each as soon as all of it was restored and verified). Existing files are never overwritten.

Examples:
  qbackup restore -p ~/.backup-pass /mnt/backups/qubes-backup-2026-11-22T153000 ~/restored work
  qbackup restore --source-command 'ssh storage cat /srv/b/latest' ~/restored -x untrusted`,
  );
  return cmd.action(async (args: string[], flags: RestoreFlags) => {
    const rest = [...args];
    const backup = flags.sourceCommand === undefined ? rest.shift() : undefined;
    const dest = flags.verifyOnly ? undefined : rest.shift();
    if (!flags.verifyOnly && dest === undefined)
      throw new QbackupError("ERR_USAGE", "restore needs BACKUP and DESTDIR");
    process.exitCode = await runRestore(backup, dest, rest, flags);
  });
}

export function verifyCommand(): Command {
  const cmd = new Command("verify")
    .description(
      "authenticate every chunk and decompress and parse every archive, writing nothing; report what is missing",
    )
    .usage("[options] BACKUP [QUBE...]   (with --source-command: [QUBE...])")
    .argument("[args...]")
    .option("-x, --exclude <qube>", "do not verify QUBE (repeatable)", collect, [])
    .option("--skip-dom0-home", "do not verify the dom0 home directory")
    .option("--ignore-size-limit", "accept more data than a qube's recorded backup-size");
  addJobsOption(cmd);
  addOutputOptions(cmd);
  addReadOptions(cmd).addHelpText(
    "after",
    `
Examples:
  qbackup verify -p ~/.backup-pass /mnt/backups/qubes-backup-2026-11-22T153000
  qbackup verify --json ssh+agent://storage/qubes-backup-2026-11-22T153000 work | jq 'select(.type == "summary")'`,
  );
  return cmd.action(async (args: string[], flags: RestoreFlags) => {
    const rest = [...args];
    const backup = flags.sourceCommand === undefined ? rest.shift() : undefined;
    process.exitCode = await runRestore(backup, undefined, rest, { ...flags, verifyOnly: true });
  });
}

async function runRestore(
  backup: string | undefined,
  dest: string | undefined,
  qubes: string[],
  flags: RestoreFlags,
): Promise<number> {
  const reporter = new Reporter(flags);
  const command = flags.verifyOnly ? "verify" : "restore";
  const open = await openOptionsFrom(flags, backup);
  const source = await openSource(backup, flags);
  const events = new RestoreEvents(reporter, flags.verifyOnly ? "verified" : "restored");
  const options: RestoreOptions = {
    ...open,
    include: qubes,
    exclude: flags.exclude,
    skipDom0Home: flags.skipDom0Home === true,
    ignoreSizeLimit: flags.ignoreSizeLimit === true,
    verifyOnly: flags.verifyOnly === true,
    renameConflicting: flags.renameConflicting === true,
    keepComplete: flags.keepComplete === true,
    jobs: parseInteger(flags.jobs, "--jobs", 1, 64),
    ...(dest === undefined ? {} : { destDir: dest }),
    onEvent: (e) => events.on(e),
  };
  let settled: Promise<unknown> = Promise.resolve();
  const forget = onInterrupt(async () => {
    events.close();
    // closing the source makes the restore fail at its next read; it then removes its temporary
    // directories (a running KDF finishes first), and only then may the process exit
    await source.close(true);
    await Promise.race([settled, new Promise((resolve) => setTimeout(resolve, INTERRUPT_GRACE_MS))]);
  });
  let report: RestoreReport;
  try {
    const running = restoreBackup(source, options);
    settled = running.catch(() => undefined);
    report = await running;
  } finally {
    events.close();
    forget();
  }
  reporter.info(`${backupTitle(report.backupId)}\n${restoreReportTable(report).trimEnd()}`);
  reporter.summary(command, { backupId: report.backupId, ok: report.ok, qubes: report.qubes });
  if (!report.ok) {
    process.stderr.write(
      `qbackup: error: ${command === "verify" ? "verification" : "restore"} incomplete: see the table above\n`,
    );
    return EXIT_INCOMPLETE;
  }
  return EXIT_OK;
}

/**
 * Restore events → progress: per qube, the data restored against the qube's recorded size (both
 * uncompressed), and the stored bytes read, which are smaller when the backup is compressed.
 */
export class RestoreEvents {
  private progress: Progress | undefined;
  private stored = 0;

  constructor(
    private readonly reporter: Reporter,
    private readonly verb: string,
  ) {}

  on(e: RestoreEvent): void {
    switch (e.type) {
      case "opened":
        this.reporter.detail(
          `qbackup: ${backupTitle(e.backupId)}: ${e.selected.map((q) => q.name).join(", ") || "no qubes"} selected`,
        );
        this.progress = this.reporter.progress(
          e.selected.map((q) => ({ name: q.name, total: q.backupSize })),
          this.verb,
          `data bytes ${this.verb}`,
        );
        break;
      case "qube-start":
        this.progress?.start(e.qube);
        break;
      case "data":
        this.progress?.advance(e.bytes);
        break;
      case "chunk":
        this.stored += e.bytes;
        this.progress?.detail(`${formatBytes(this.stored)} of the backup read`);
        break;
      case "file-done":
        this.reporter.detail(`qbackup: ${e.qube}: ${e.file} ${this.verb} (${formatBytes(e.bytes)})`);
        break;
      case "qube-done":
        this.progress?.finish(e.qube, e.result.status);
        break;
    }
  }

  close(): void {
    this.progress?.close();
  }
}
