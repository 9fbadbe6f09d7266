/** Options shared by the commands that read a backup (list, verify, restore), and their resolution. */
import type { Command } from "commander";
import { DEFAULT_KDF_LIMITS } from "../codec/scrypt/index.js";
import type { KdfLimits } from "../codec/scrypt/index.js";
import { QbackupError } from "../errors.js";
import type { OpenOptions } from "../restore/index.js";
import { readPassphrase } from "../runtime/passphrase.js";
import type { PassphraseSource } from "../runtime/passphrase.js";
import { isRemoteSpec, openRemoteSource, parseRemote } from "../transport/remote.js";
import { commandSource, openFileSource, stdinSource } from "../transport/source.js";
import type { ByteSource } from "../transport/source.js";
import { addRemoteOptions, remoteOptionsFrom, stallMsFrom } from "./remote-options.js";
import type { RemoteFlags } from "./remote-options.js";
import { parseSize } from "../runtime/units.js";

export interface ReadFlags extends RemoteFlags {
  passphraseFile?: string;
  passphraseCommand?: string;
  sourceCommand?: string;
  compressionFilter?: string;
  maxKdfMemory?: string;
  maxKdfWork?: string;
}

export function addReadOptions(cmd: Command): Command {
  cmd
    .option("-p, --passphrase-file <file>", "read the passphrase from the first line of FILE (- = stdin)")
    .option("--passphrase-command <cmd>", "run CMD (with sh -c); its output is the passphrase")
    .option("--source-command <cmd>", "read the backup from the stdout of CMD (sh -c) instead of BACKUP")
    .option(
      "-Z, --compression-filter <prog>",
      "decompress with PROG whatever the header says (like qvm-backup-restore -Z)",
    )
    .option("--max-kdf-memory <size>", "refuse chunks whose scrypt needs more memory (K/M/G)", "2G")
    .option(
      "--max-kdf-work <n>",
      "refuse chunks whose scrypt work N·r·p is larger",
      String(DEFAULT_KDF_LIMITS.maxWork),
    );
  return addRemoteOptions(cmd, "the source command, ssh or rclone sends nothing");
}

/**
 * The backup argument (a path, `-`, ssh://…, ssh+agent://…, rclone:…), or the source command:
 * exactly one of them.
 */
export function openSource(backup: string | undefined, flags: ReadFlags): Promise<ByteSource> | ByteSource {
  if (flags.sourceCommand !== undefined) {
    if (backup !== undefined) throw new QbackupError("ERR_USAGE", "give either BACKUP or --source-command, not both");
    return commandSource(flags.sourceCommand, stallMsFrom(flags));
  }
  if (backup === undefined)
    throw new QbackupError("ERR_USAGE", "which backup? give BACKUP (a file, -, or a remote) or --source-command");
  if (isRemoteSpec(backup)) return openRemoteSource(parseRemote(backup), stallMsFrom(flags), remoteOptionsFrom(flags));
  return backup === "-" ? stdinSource() : openFileSource(backup);
}

export function kdfLimitsFrom(flags: ReadFlags): KdfLimits {
  return {
    maxMemoryBytes:
      flags.maxKdfMemory === undefined
        ? DEFAULT_KDF_LIMITS.maxMemoryBytes
        : parseSize(flags.maxKdfMemory, "--max-kdf-memory"),
    maxWork:
      flags.maxKdfWork === undefined ? DEFAULT_KDF_LIMITS.maxWork : parseSize(flags.maxKdfWork, "--max-kdf-work"),
  };
}

export function passphraseSourceFrom(flags: ReadFlags, backup: string | undefined, confirm: boolean): PassphraseSource {
  if (flags.passphraseFile !== undefined && flags.passphraseCommand !== undefined) {
    throw new QbackupError("ERR_USAGE", "--passphrase-file and --passphrase-command exclude each other");
  }
  if (flags.passphraseFile === "-" && backup === "-") {
    throw new QbackupError("ERR_USAGE", "stdin cannot carry both the backup and the passphrase");
  }
  if (flags.passphraseFile !== undefined) return { kind: "file", path: flags.passphraseFile };
  if (flags.passphraseCommand !== undefined) return { kind: "command", command: flags.passphraseCommand };
  return { kind: "prompt", confirm };
}

/** Everything openBackup needs, with the passphrase read (prompted) before any byte of the backup. */
export async function openOptionsFrom(flags: ReadFlags, backup: string | undefined): Promise<OpenOptions> {
  const kdfLimits = kdfLimitsFrom(flags);
  const passphrase = await readPassphrase(passphraseSourceFrom(flags, backup, false));
  return {
    passphrase,
    kdfLimits,
    ...(flags.compressionFilter === undefined ? {} : { forcedCompressionFilter: flags.compressionFilter }),
  };
}
