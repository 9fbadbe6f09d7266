/** `qbackup create [options] DEST SOURCE...` — the qvm-backup of qbackup. */
import { Command, Option } from "commander";
import { availableParallelism } from "node:os";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { existsSync, realpathSync } from "node:fs";
import { DEFAULT_GZIP_LEVEL, createBackup, parseSourceSpec, planBackup, sourceHolding } from "../create/index.js";
import type { BackupPlan, Compression, CreateResult } from "../create/index.js";
import { QbackupError, systemErrorCode } from "../errors.js";
import { RECOVERY_SHEET_SUFFIX, recoverySheet } from "../format/recovery-sheet.js";
import { DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE } from "../format/names.js";
import { resolveFilterProgram } from "../runtime/filters.js";
import { readPassphrase } from "../runtime/passphrase.js";
import type { PassphraseSource } from "../runtime/passphrase.js";
import { openFileSink, resolveLocalDestination, stdoutSink } from "../transport/local.js";
import { commandSink } from "../transport/command-sink.js";
import { isRemoteSpec, openRemoteSink, parseRemote } from "../transport/remote.js";
import type { RemoteOptions } from "../transport/remote.js";
import type { BackupSink } from "../transport/sink.js";
import { EXIT_OK } from "./exit.js";
import { onInterrupt } from "./interrupt.js";
import { CreateProgress, resultLine, summaryTable } from "./output.js";
import { addRemoteOptions, remoteOptionsFrom, stallMsFrom } from "./remote-options.js";
import type { RemoteFlags } from "./remote-options.js";
import { confirm } from "./terminal.js";
import { parseInteger, parseSize } from "./units.js";

/** 256 MiB of KDF memory, ~1 s per container here (age uses the same); see README "Key derivation". */
export const DEFAULT_SCRYPT_LOGN = 18;
export const MIN_SCRYPT_LOGN = 10;
/** 1 GiB: the most the spec lets a writer demand of a restoring machine (spec §4.6). */
export const MAX_SCRYPT_LOGN = 20;
/** Below this the KDF is too cheap to slow down guessing; only for tests. */
const WEAK_SCRYPT_LOGN = 14;

interface CreateFlags extends RemoteFlags {
  destCommand?: string;
  passphraseFile?: string;
  passphraseCommand?: string;
  compressFilter?: string;
  compress: boolean;
  chunkSize: string;
  scryptLogn: string;
  backupId?: string;
  yes?: boolean;
  jobs: string;
  compressLevel: string;
}

export function createCommand(): Command {
  const cmd = new Command("create")
    .description("make an encrypted, authenticated Qubes OS backup (format v4) of the given sources")
    .argument(
      "<dest>",
      "a directory (the backup becomes DEST/qubes-backup-<date>), a new file path, - for stdout, or a remote (see below)",
    )
    .argument("[source...]", "NAME=PATH or NAME:VOLUME=PATH (see below)")
    .option("--dest-command <cmd>", "pipe the backup into CMD (sh -c) instead of DEST; leave DEST out")
    .option("-p, --passphrase-file <file>", "read the passphrase from the first line of FILE (- = stdin)")
    .option("--passphrase-command <cmd>", "run CMD (with sh -c); its output is the passphrase")
    .option("-Z, --compress-filter <prog>", "compress with PROG (gzip, bzip2, xz, zstd, pigz, pbzip2, lzma, zstdmt)")
    .option("--no-compress", "do not compress")
    .option("--compress-level <n>", "gzip level, 1 (fast) to 9 (small)", String(DEFAULT_GZIP_LEVEL))
    .option("-j, --jobs <n>", "cores to use for compression and key derivation", String(availableParallelism()))
    .option("--chunk-size <size>", "bytes per chunk, with K/M/G binary suffixes", "100M")
    .option(
      "--scrypt-logn <n>",
      `scrypt cost: N = 2^n, r = 8, p = 1 (${MIN_SCRYPT_LOGN}-${MAX_SCRYPT_LOGN})`,
      String(DEFAULT_SCRYPT_LOGN),
    )
    .addOption(new Option("--backup-id <id>", "use this backup id instead of a fresh one (tests)").hideHelp(false))
    .option("-y, --yes", "do not ask for confirmation");
  return addRemoteOptions(cmd, "the destination accepts nothing")
    .addHelpText(
      "after",
      `
Sources:
  NAME=FILE             a regular file or block device: volume "private" of qube NAME (vmN/private.img)
  NAME:VOLUME=FILE      the same, as volume VOLUME (e.g. win:root=/dev/vg/win-root → vmN/root.img)
  NAME=DIR              a directory tree for qube NAME, archived as vmN/<basename of DIR>
  NAME:LABEL=DIR        the same, archived as vmN/LABEL
  dom0=DIR              the dom0 home directory, archived as dom0-home/<basename of DIR>
  dom0:USER=DIR         the same, archived as dom0-home/USER
  Repeating NAME adds files to one qube. Qube names follow Qubes' rules: 1 to 31 characters,
  a letter first, then letters, digits, '_', '.' or '-'; not "none", "default" or "Domain-0"; not ending in "-dm".

Destinations (the backup is published under its final name only once it is complete):
  DIR or FILE                            a local directory (DIR/qubes-backup-<date>) or a new file
  -                                      standard output
  ssh://[user@]host[:port]/path          over the system ssh (a path ending in / gets the dated name)
  ssh+agent://[user@]host[:port]/NAME    to a host whose ssh forced command is \`qbackup agent\`
  rclone:REMOTE:PATH                     to any rclone remote
  --dest-command CMD                     into the stdin of CMD; it must exit 0

Passphrase: from --passphrase-file, --passphrase-command, or asked twice on the terminal. It must be
1 to 1024 bytes of printable UTF-8 without leading or trailing whitespace, so that Qubes' own restore
and the emergency procedure (tar, scrypt, gzip) can use it too.

Examples:
  qbackup create /mnt/backups work=/var/lib/qubes/appvms/work/private.img dom0=/home/user
  qbackup create -p ~/.backup-pass --no-compress backup.bin vault=./vault.img vault:root=./root.img
  qbackup create -y --passphrase-command 'pass show qubes-backup' - docs=~/Documents | ssh host 'cat > b.bin'
  qbackup create ssh+agent://storage/ work=/var/lib/qubes/appvms/work/private.img`,
    )
    .action(async function (this: Command, dest: string, sources: string[], flags: CreateFlags) {
      // with --dest-command there is no DEST: the first argument is a source
      const [destination, sourceArgs] =
        flags.destCommand === undefined ? [dest, sources] : [undefined, [dest, ...sources]];
      if (sourceArgs.length === 0) throw new QbackupError("ERR_USAGE", "nothing to back up: give at least one SOURCE");
      process.exitCode = await runCreate(destination, sourceArgs, flags);
    });
}

async function runCreate(dest: string | undefined, sourceArgs: string[], flags: CreateFlags): Promise<number> {
  const jobs = parseInteger(flags.jobs, "--jobs", 1, 64);
  const compression = compressionFrom(flags, jobs);
  const chunkSize = parseSize(flags.chunkSize, "--chunk-size");
  if (chunkSize < MIN_CHUNK_SIZE || chunkSize > MAX_CHUNK_SIZE) {
    throw new QbackupError(
      "ERR_USAGE",
      `--chunk-size must be between ${MIN_CHUNK_SIZE} bytes and ${MAX_CHUNK_SIZE / 1024 / 1024}M`,
    );
  }
  const logN = parseInteger(flags.scryptLogn, "--scrypt-logn", MIN_SCRYPT_LOGN, MAX_SCRYPT_LOGN);
  const passphraseSource = passphraseSourceFrom(flags);

  const stallMs = stallMsFrom(flags);
  const remoteOptions = remoteOptionsFrom(flags);
  const plan = await planBackup(sourceArgs.map(parseSourceSpec));
  warnIfPassphraseInside(plan, passphraseSource);
  const destination = await destinationFrom(dest, flags.destCommand, stallMs, remoteOptions);

  process.stderr.write(summaryTable(plan));
  if (logN < WEAK_SCRYPT_LOGN) {
    process.stderr.write(
      `qbackup: warning: --scrypt-logn ${logN} makes passphrase guessing cheap; use it for tests only\n`,
    );
  }
  if (chunkSize !== DEFAULT_CHUNK_SIZE) {
    process.stderr.write(
      `qbackup: warning: chunk size ${chunkSize} differs from Qubes' 100M; restoring from a qube may hit qvm-backup-restore's file-count limit\n`,
    );
  }
  if (!flags.yes && !(await confirm("Do you want to proceed?"))) {
    process.stderr.write("qbackup: backup cancelled\n");
    return EXIT_OK;
  }

  const passphrase = await readPassphrase(passphraseSource);
  const sink: BackupSink = await destination.open();
  const progress = new CreateProgress(process.stderr);
  const forget = onInterrupt(async () => {
    progress.clear();
    await sink.abort();
  });
  const started = Date.now();
  try {
    const result = await createBackup(plan, {
      sink,
      passphrase,
      compression,
      chunkSize,
      scrypt: { logN, r: 8, p: 1 },
      jobs,
      ...(flags.backupId === undefined ? {} : { backupId: flags.backupId }),
      onEvent: (e) => progress.onEvent(e),
    });
    progress.clear();
    process.stderr.write(resultLine(result, (Date.now() - started) / 1000));
    if (destination.file !== undefined) await writeRecoverySheet(destination.file, result);
    return EXIT_OK;
  } finally {
    progress.clear();
    forget();
  }
}

/**
 * Checks the destination now (before the passphrase is asked for) and returns how to open it
 * once the backup starts, and the local file it will be, if it is one.
 */
async function destinationFrom(
  dest: string | undefined,
  destCommand: string | undefined,
  stallMs: number,
  remote: RemoteOptions,
): Promise<{ open: () => Promise<BackupSink>; file?: string }> {
  if (destCommand !== undefined) return { open: () => Promise.resolve(commandSink(destCommand, stallMs)) };
  if (dest === undefined) throw new QbackupError("ERR_USAGE", "where to? give DEST or --dest-command");
  if (dest === "-") return { open: () => Promise.resolve(stdoutSink()) };
  if (isRemoteSpec(dest)) {
    const spec = parseRemote(dest);
    return { open: () => openRemoteSink(spec, stallMs, remote) };
  }
  const file = await resolveLocalDestination(dest);
  return { open: () => openFileSink(file), file };
}

/** `BACKUP.RESTORE-INSTRUCTIONS.txt` beside a backup file; a failure here does not undo the backup. */
async function writeRecoverySheet(file: string, result: CreateResult): Promise<void> {
  const sheetPath = `${file}${RECOVERY_SHEET_SUFFIX}`;
  const sheet = recoverySheet({
    backupName: path.basename(file),
    backupId: result.backupId,
    compressionFilter: result.compressionFilter,
    files: result.files,
  });
  try {
    await fs.writeFile(sheetPath, sheet, { flag: "wx", mode: 0o644 });
    process.stderr.write(`qbackup: restore instructions without qbackup: ${sheetPath}\n`);
  } catch (err) {
    process.stderr.write(
      `qbackup: warning: could not write ${sheetPath} (${systemErrorCode(err)}); \`qbackup recovery-sheet\` prints it\n`,
    );
  }
}

function compressionFrom(flags: CreateFlags, jobs: number): Compression {
  if (flags.compressFilter !== undefined && !flags.compress) {
    throw new QbackupError("ERR_USAGE", "--compress-filter and --no-compress exclude each other");
  }
  if (!flags.compress) return { kind: "none" };
  if (flags.compressFilter === undefined || flags.compressFilter === "gzip") {
    return { kind: "gzip", level: parseInteger(flags.compressLevel, "--compress-level", 1, 9), jobs };
  }
  const program = resolveFilterProgram(flags.compressFilter);
  return { kind: "filter", name: flags.compressFilter, program };
}

/**
 * People lose backups whose passphrase lived only inside them. Warn when the passphrase file, or a
 * path the passphrase command names, is part of what is being backed up.
 */
function warnIfPassphraseInside(plan: BackupPlan, source: PassphraseSource): void {
  const candidates =
    source.kind === "file" && source.path !== "-"
      ? [source.path]
      : source.kind === "command"
        ? source.command.split(/\s+/).filter((w) => w.includes("/") && existsSync(w))
        : [];
  const real = (p: string) => {
    try {
      return realpathSync(p);
    } catch {
      return path.resolve(p);
    }
  };
  for (const candidate of candidates) {
    const holder = sourceHolding(plan, candidate, real);
    if (holder !== undefined) {
      process.stderr.write(
        `qbackup: warning: the passphrase comes from ${candidate}, which is inside this backup (${holder}); keep a copy elsewhere, or the backup cannot be opened without itself\n`,
      );
    }
  }
}

function passphraseSourceFrom(flags: CreateFlags): PassphraseSource {
  if (flags.passphraseFile !== undefined && flags.passphraseCommand !== undefined) {
    throw new QbackupError("ERR_USAGE", "--passphrase-file and --passphrase-command exclude each other");
  }
  if (flags.passphraseFile !== undefined) return { kind: "file", path: flags.passphraseFile };
  if (flags.passphraseCommand !== undefined) return { kind: "command", command: flags.passphraseCommand };
  return { kind: "prompt", confirm: true };
}
