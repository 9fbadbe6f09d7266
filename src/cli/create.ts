/** `qbackup create [options] DEST SOURCE...` — the qvm-backup of qbackup. */
import { Command, Option } from "commander";
import { availableParallelism } from "node:os";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { existsSync, realpathSync } from "node:fs";
import { DEFAULT_GZIP_LEVEL, createBackup, parseSourceSpec, planBackup, sourceHolding } from "../create/index.js";
import type { BackupPlan, Compression, CreateEvent, CreateResult, PlannedFile } from "../create/index.js";
import { loadProfile } from "../config/profile-file.js";
import { QbackupError, systemErrorCode } from "../errors.js";
import { RECOVERY_SHEET_SUFFIX, recoverySheet } from "../format/recovery-sheet.js";
import { DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE } from "../format/names.js";
import { resolveFilterProgram } from "../runtime/filters.js";
import { readPassphrase } from "../runtime/passphrase.js";
import type { PassphraseSource } from "../runtime/passphrase.js";
import { openFileSink, resolveLocalDestination, stdoutSink } from "../transport/local.js";
import { commandSink } from "../transport/command-sink.js";
import {
  AGENT_REMOTE_COMMAND,
  isRemoteSpec,
  openRemoteSink,
  parseRemote,
  sshArgv,
  withDefaultName,
} from "../transport/remote.js";
import { agentSink } from "../agent/client.js";
import type { RemoteOptions } from "../transport/remote.js";
import type { BackupSink } from "../transport/sink.js";
import { requestFromProfile, saveProfileFrom } from "./create-profile.js";
import type { CreateFlags, CreateRequest } from "./create-profile.js";
import { EXIT_OK, exitCodeFor, messageOf } from "./exit.js";
import { runHook } from "./hooks.js";
import { interruptedBy, onInterrupt } from "./interrupt.js";
import { resultLine, summaryTable } from "./output.js";
import { addRemoteOptions, remoteOptionsFrom, stallMsFrom } from "./remote-options.js";
import { Reporter, addOutputOptions } from "./reporter.js";
import type { Progress } from "./reporter.js";
import { confirm } from "./terminal.js";
import { formatBytes, parseInteger, parseSize } from "../runtime/units.js";

/** 256 MiB of KDF memory, ~1 s per container here (age uses the same); see README "Key derivation". */
export const DEFAULT_SCRYPT_LOGN = 18;
export const MIN_SCRYPT_LOGN = 10;
/** 1 GiB: the most the spec lets a writer demand of a restoring machine (spec §4.6). */
export const MAX_SCRYPT_LOGN = 20;
/** Below this the KDF is too cheap to slow down guessing; only for tests. */
const WEAK_SCRYPT_LOGN = 14;

const collect = (value: string, previous: string[]) => [...previous, value];

export function createCommand(): Command {
  const cmd = new Command("create")
    .description("make an encrypted, authenticated Qubes OS backup (format v4) of the given sources")
    .usage("[options] DEST SOURCE...   (with --dest-command: SOURCE...; with --profile: nothing)")
    .argument(
      "[dest]",
      "a directory (the backup becomes DEST/qubes-backup-<date>), a new file path, - for stdout, or a remote (see below)",
    )
    .argument("[source...]", "NAME=PATH or NAME:VOLUME=PATH (see below)")
    .option("--profile <name>", "take destination, sources and options from a profile (a name or a .yaml path)")
    .option("--save-profile <name>", "write DEST, the sources and the options given as profile NAME, and exit")
    .option(
      "--store-passphrase-in-profile",
      "with --save-profile: ask for the passphrase and keep it in the profile, in plain text (mode 0600)",
    )
    .option("--dest-command <cmd>", "pipe the backup into CMD (sh -c) instead of DEST; leave DEST out")
    .option("-p, --passphrase-file <file>", "read the passphrase from the first line of FILE (- = stdin)")
    .option("--passphrase-command <cmd>", "run CMD (with sh -c); its output is the passphrase")
    .option("-x, --exclude <qube>", "leave out the sources of QUBE (repeatable)", collect, [])
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
    .option("-y, --yes", "do not ask for confirmation")
    .option("--on-success <cmd>", "run CMD (sh -c) after a successful backup; QBACKUP_* variables say what happened")
    .option("--on-failure <cmd>", "run CMD (sh -c) after a failed backup (QBACKUP_ERROR, QBACKUP_EXIT_STATUS, …)");
  addOutputOptions(cmd);
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

Passphrase: from --passphrase-file, --passphrase-command, a profile, or asked twice on the terminal.
It must be 1 to 1024 bytes of printable UTF-8 without leading or trailing whitespace, so that Qubes'
own restore and the emergency procedure (tar, scrypt, gzip) can use it too.

Profiles: ~/.config/qbackup/profiles/NAME.yaml (README "Profiles"). Options given on the command
line win over the profile's.

Examples:
  qbackup create /mnt/backups work=/var/lib/qubes/appvms/work/private.img dom0=/home/user
  qbackup create -p ~/.backup-pass --no-compress backup.bin vault=./vault.img vault:root=./root.img
  qbackup create -y --passphrase-command 'pass show qubes-backup' - docs=~/Documents | ssh host 'cat > b.bin'
  qbackup create ssh+agent://storage/ work=/var/lib/qubes/appvms/work/private.img
  qbackup create --save-profile laptop --passphrase-command 'pass show qubes-backup' /mnt/usb work=/dev/vg/work
  qbackup create --profile laptop -y --on-failure 'notify-send "backup failed: $QBACKUP_ERROR"'`,
    )
    .action(async function (this: Command, dest: string | undefined, sources: string[], flags: CreateFlags) {
      const reporter = new Reporter(flags);
      const request = await requestFrom(this, dest, sources, flags);
      if (flags.saveProfile !== undefined) {
        if (flags.profile !== undefined)
          throw new QbackupError("ERR_USAGE", "--profile and --save-profile exclude each other");
        const saved = await saveProfileFrom(flags.saveProfile, request, this);
        for (const w of saved.warnings) reporter.warn(w);
        reporter.info(
          `qbackup: profile saved to ${saved.file}; run it with: qbackup create --profile ${flags.saveProfile}`,
        );
        reporter.summary("create", { savedProfile: saved.file });
        process.exitCode = EXIT_OK;
        return;
      }
      process.exitCode = await runWithHooks(request, reporter);
    });
}

/** DEST and SOURCE... from the command line, or everything from --profile (then no arguments). */
async function requestFrom(
  cmd: Command,
  dest: string | undefined,
  sources: string[],
  flags: CreateFlags,
): Promise<CreateRequest> {
  if (flags.storePassphraseInProfile && flags.saveProfile === undefined) {
    throw new QbackupError("ERR_USAGE", "--store-passphrase-in-profile goes with --save-profile");
  }
  if (flags.profile !== undefined) {
    if (dest !== undefined) {
      throw new QbackupError(
        "ERR_USAGE",
        "with --profile, the destination and sources come from the profile: give no arguments",
        { hint: "options given here still win over the profile's (e.g. -x QUBE, --dest-command)" },
      );
    }
    return requestFromProfile(await loadProfile(flags.profile), cmd, flags);
  }
  // with --dest-command there is no DEST: the first argument is a source
  const args = dest === undefined ? [] : [dest, ...sources];
  const [destination, sourceArgs] = flags.destCommand === undefined ? [args[0], args.slice(1)] : [undefined, args];
  if (flags.destCommand === undefined && destination === undefined) {
    throw new QbackupError("ERR_USAGE", "where to? give DEST (or --dest-command, or --profile)");
  }
  if (sourceArgs.length === 0) throw new QbackupError("ERR_USAGE", "nothing to back up: give at least one SOURCE");
  return { dest: destination, sourceArgs, flags };
}

async function runWithHooks(request: CreateRequest, reporter: Reporter): Promise<number> {
  const { flags } = request;
  const profile = request.profileName === undefined ? {} : { profile: request.profileName };
  let result: CreateResult | undefined;
  try {
    result = await runCreate(request, reporter);
  } catch (err) {
    if (flags.onFailure !== undefined && interruptedBy() === undefined) {
      const outcome = { event: "failure" as const, exitStatus: exitCodeFor(err), error: messageOf(err), ...profile };
      const problem = await runHook(flags.onFailure, outcome);
      if (problem !== undefined) reporter.warn(problem);
    }
    throw err;
  }
  if (result !== undefined && flags.onSuccess !== undefined) {
    const outcome = {
      event: "success" as const,
      exitStatus: EXIT_OK,
      backupId: result.backupId,
      location: result.location,
      ...profile,
    };
    const problem = await runHook(flags.onSuccess, outcome);
    if (problem !== undefined) reporter.warn(problem);
  }
  return EXIT_OK;
}

/** Makes the backup; undefined when the user declined at the confirmation. */
async function runCreate(request: CreateRequest, reporter: Reporter): Promise<CreateResult | undefined> {
  const { flags, dest } = request;
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
  const passphraseSource = passphraseSourceFrom(flags, request.profilePassphrase);
  if (reporter.json && dest === "-" && flags.destCommand === undefined) {
    throw new QbackupError("ERR_USAGE", "--json needs stdout, which DEST - gives to the backup", {
      hint: "use --dest-command 'CMD' to pipe the backup instead",
    });
  }

  const stallMs = stallMsFrom(flags);
  const remoteOptions = remoteOptionsFrom(flags);
  const plan = await planBackup(selectedSources(request.sourceArgs, flags.exclude, reporter).map(parseSourceSpec));
  warnIfPassphraseInside(plan, passphraseSource, reporter);
  const destination = await destinationFrom(dest, flags.destCommand, stallMs, remoteOptions);

  reporter.info(summaryTable(plan).trimEnd());
  if (logN < WEAK_SCRYPT_LOGN)
    reporter.warn(`--scrypt-logn ${logN} makes passphrase guessing cheap; use it for tests only`);
  if (chunkSize !== DEFAULT_CHUNK_SIZE) {
    reporter.warn(
      `chunk size ${chunkSize} differs from Qubes' 100M; restoring from a qube may hit qvm-backup-restore's file-count limit`,
    );
  }
  if (!flags.yes && !(await confirm("Do you want to proceed?"))) {
    reporter.info("qbackup: backup cancelled");
    reporter.summary("create", { cancelled: true });
    return undefined;
  }
  reporter.detail(
    `qbackup: scrypt logN ${logN} (r 8, p 1), ${compressionName(compression)}, chunks of ${formatBytes(chunkSize)}, ${jobs} jobs`,
  );

  const passphrase = await readPassphrase(passphraseSource);
  const sink: BackupSink = await destination.open();
  // source bytes read: data, and the whole of a volume scanned for holes (progressItems)
  const progress = reporter.progress(progressItems(plan), "read", "source bytes read");
  const forget = onInterrupt(async () => {
    progress.close();
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
      onEvent: createEventHandler(plan, progress, reporter),
    });
    progress.close();
    const seconds = (Date.now() - started) / 1000;
    reporter.info(resultLine(result, seconds).trimEnd());
    const sheet =
      destination.sheet === undefined ? undefined : await storeRecoverySheet(destination.sheet, result, reporter);
    reporter.summary("create", {
      backupId: result.backupId,
      location: result.location,
      bytesWritten: result.bytesWritten,
      members: result.members,
      seconds: Math.round(seconds * 10) / 10,
      compression: result.compressionFilter,
      qubes: result.qubes,
      recoverySheet: sheet ?? null,
    });
    return result;
  } finally {
    progress.close();
    forget();
  }
}

/** The sources whose qube -x/--exclude does not name. */
function selectedSources(sourceArgs: readonly string[], exclude: readonly string[], reporter: Reporter): string[] {
  const kept = sourceArgs.filter((arg) => !exclude.includes(parseSourceSpec(arg).qube));
  for (const name of exclude) {
    if (!sourceArgs.some((arg) => parseSourceSpec(arg).qube === name))
      reporter.warn(`--exclude ${name}: no such source`);
  }
  if (kept.length === 0) throw new QbackupError("ERR_USAGE", "nothing to back up: every source is excluded");
  return kept;
}

/**
 * One progress item per qube; its work is what create reads: its data, and all of a volume whose
 * holes are found by reading it.
 */
function progressItems(plan: BackupPlan): Array<{ name: string; total: number }> {
  const qubes = plan.dom0 ? [...plan.qubes, plan.dom0] : plan.qubes;
  const scanned = (f: PlannedFile) => (f.kind === "volume" && f.holeSearch === "read" ? f.realSize : 0);
  return qubes.map((q) => ({ name: q.name, total: q.files.reduce((n, f) => n + scanned(f) + f.estimate, 0) }));
}

function createEventHandler(plan: BackupPlan, progress: Progress, reporter: Reporter): (e: CreateEvent) => void {
  const qubes = plan.dom0 ? [...plan.qubes, plan.dom0] : plan.qubes;
  const filesLeft = new Map(qubes.map((q) => [q.name, q.files.length]));
  const stored = new Map<string, number>();
  let current: string | undefined;
  let written = 0;
  return (e) => {
    switch (e.type) {
      case "file-start":
        if (e.qube !== current) progress.start(e.qube);
        current = e.qube;
        reporter.detail(`qbackup: ${e.qube}: archiving ${e.file} (~${formatBytes(e.estimate)})`);
        break;
      case "scanned":
      case "read":
        progress.advance(e.bytes);
        break;
      case "member":
        written += e.size;
        progress.detail(`written ${formatBytes(written)}`);
        break;
      case "file-done": {
        reporter.detail(`qbackup: ${e.qube}: ${e.file}: ${e.chunks} chunks, ${formatBytes(e.storedBytes)} stored`);
        stored.set(e.qube, (stored.get(e.qube) ?? 0) + e.storedBytes);
        const left = (filesLeft.get(e.qube) ?? 1) - 1;
        filesLeft.set(e.qube, left);
        if (left === 0) progress.finish(e.qube, `${formatBytes(stored.get(e.qube) ?? 0)} stored`);
        break;
      }
      case "warning":
        reporter.warn(e.message);
        break;
      default:
        break;
    }
  };
}

function compressionName(c: Compression): string {
  return c.kind === "none" ? "no compression" : c.kind === "gzip" ? `gzip -${c.level}` : c.name;
}

/** Where the backup goes, and where its restore instructions go beside it (files and agents). */
interface Destination {
  open: () => Promise<BackupSink>;
  /** The backup's own name there, and how to store `NAME.RESTORE-INSTRUCTIONS.txt` beside it. */
  sheet?: { backupName: string; store: (text: string) => Promise<string> };
}

/**
 * Checks the destination now (before the passphrase is asked for) and returns how to open it
 * once the backup starts.
 */
async function destinationFrom(
  dest: string | undefined,
  destCommand: string | undefined,
  stallMs: number,
  remote: RemoteOptions,
): Promise<Destination> {
  if (destCommand !== undefined) return { open: () => Promise.resolve(commandSink(destCommand, stallMs)) };
  if (dest === undefined) throw new QbackupError("ERR_USAGE", "where to? give DEST or --dest-command");
  if (dest === "-") return { open: () => Promise.resolve(stdoutSink()) };
  if (isRemoteSpec(dest)) {
    const spec = withDefaultName(parseRemote(dest));
    if (spec.kind !== "agent") return { open: () => openRemoteSink(spec, stallMs, remote) };
    const sheetName = `${spec.name}${RECOVERY_SHEET_SUFFIX}`;
    const store = async (text: string) => {
      const sink = agentSink(sshArgv(spec.target, AGENT_REMOTE_COMMAND, remote.ssh), sheetName, stallMs);
      try {
        await sink.write(Buffer.from(text, "utf8"));
        await sink.commit();
      } catch (err) {
        await sink.abort();
        throw err;
      }
      return sink.location;
    };
    return { open: () => openRemoteSink(spec, stallMs, remote), sheet: { backupName: spec.name, store } };
  }
  const file = await resolveLocalDestination(dest);
  const store = async (text: string) => {
    const sheetPath = `${file}${RECOVERY_SHEET_SUFFIX}`;
    await fs.writeFile(sheetPath, text, { flag: "wx", mode: 0o644 });
    return sheetPath;
  };
  return { open: () => openFileSink(file), sheet: { backupName: path.basename(file), store } };
}

/** `BACKUP.RESTORE-INSTRUCTIONS.txt` beside the backup; a failure here does not undo the backup. */
async function storeRecoverySheet(
  sheet: NonNullable<Destination["sheet"]>,
  result: CreateResult,
  reporter: Reporter,
): Promise<string | undefined> {
  const text = recoverySheet({
    backupName: sheet.backupName,
    backupId: result.backupId,
    compressionFilter: result.compressionFilter,
    files: result.files,
  });
  try {
    const where = await sheet.store(text);
    reporter.info(`qbackup: restore instructions without qbackup: ${where}`);
    return where;
  } catch (err) {
    const why = systemErrorCode(err) ?? messageOf(err);
    reporter.warn(
      `could not store the restore instructions beside the backup (${why}); \`qbackup recovery-sheet\` prints them`,
    );
    return undefined;
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
function warnIfPassphraseInside(plan: BackupPlan, source: PassphraseSource, reporter: Reporter): void {
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
      reporter.warn(
        `the passphrase comes from ${candidate}, which is inside this backup (${holder}); keep a copy elsewhere, or the backup cannot be opened without itself`,
      );
    }
  }
}

function passphraseSourceFrom(
  flags: CreateFlags,
  fromProfile: { passphrase: string; origin: string } | undefined,
): PassphraseSource {
  if (flags.passphraseFile !== undefined && flags.passphraseCommand !== undefined) {
    throw new QbackupError("ERR_USAGE", "--passphrase-file and --passphrase-command exclude each other");
  }
  if (fromProfile !== undefined) return { kind: "value", ...fromProfile };
  if (flags.passphraseFile !== undefined) return { kind: "file", path: flags.passphraseFile };
  if (flags.passphraseCommand !== undefined) return { kind: "command", command: flags.passphraseCommand };
  return { kind: "prompt", confirm: true };
}
