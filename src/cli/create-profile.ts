/**
 * `create --profile P` and `create --save-profile P`: a profile stands for create's options. Options
 * given on the command line win over the profile's; --save-profile writes only what was given, so
 * defaults stay defaults.
 */
import type { Command } from "commander";
import * as path from "node:path";
import { saveProfile } from "../config/profile-file.js";
import type { LoadedProfile, Profile, ProfileCompression } from "../config/profile.js";
import { parseSourceSpec } from "../create/index.js";
import { QbackupError } from "../errors.js";
import { readPassphrase } from "../runtime/passphrase.js";
import { isRemoteSpec } from "../transport/remote.js";
import type { RemoteFlags } from "./remote-options.js";
import { parseInteger, parseSize } from "../runtime/units.js";

/** The options of `qbackup create`, as commander hands them over. */
export interface CreateFlags extends RemoteFlags {
  destCommand?: string;
  passphraseFile?: string;
  passphraseCommand?: string;
  compressFilter?: string;
  compress: boolean;
  compressLevel: string;
  chunkSize: string;
  scryptLogn: string;
  jobs: string;
  exclude: string[];
  backupId?: string;
  yes?: boolean;
  onSuccess?: string;
  onFailure?: string;
  profile?: string;
  saveProfile?: string;
  storePassphraseInProfile?: boolean;
  json?: boolean;
  quiet?: boolean;
  verbose?: boolean;
}

/** Everything a create run needs from the command line or a profile. */
export interface CreateRequest {
  dest: string | undefined;
  sourceArgs: string[];
  flags: CreateFlags;
  /** The profile's passphrase, when it holds one in plain text. */
  profilePassphrase?: { passphrase: string; origin: string };
  profileName?: string;
}

const given = (cmd: Command, key: string) => cmd.getOptionValueSource(key) === "cli";

/** The profile's values for every option not given on the command line. */
export function requestFromProfile(loaded: LoadedProfile, cmd: Command, flags: CreateFlags): CreateRequest {
  const p = loaded.profile;
  const merged: CreateFlags = { ...flags, exclude: [...(p.exclude ?? []), ...flags.exclude] };
  const set = <K extends keyof CreateFlags>(key: K, value: CreateFlags[K] | undefined) => {
    if (value !== undefined && !given(cmd, key)) merged[key] = value;
  };
  if (!given(cmd, "compressFilter") && !given(cmd, "compress") && p.compression !== undefined) {
    if (p.compression === "none") merged.compress = false;
    else merged.compressFilter = p.compression;
  }
  set("compressLevel", p.compressLevel?.toString());
  set("jobs", p.jobs?.toString());
  set("chunkSize", p.chunkSize?.toString());
  set("scryptLogn", p.scryptLogn?.toString());
  set("sshCommand", p.sshCommand);
  set("stallTimeout", p.stallTimeout?.toString());
  set("onSuccess", p.onSuccess);
  set("onFailure", p.onFailure);
  set("destCommand", p.destCommand);
  const passphraseOnCli = given(cmd, "passphraseFile") || given(cmd, "passphraseCommand");
  if (!passphraseOnCli) {
    merged.passphraseFile = p.passphraseFile;
    merged.passphraseCommand = p.passphraseCommand;
  }
  return {
    dest: p.destination,
    sourceArgs: p.sourceArgs,
    flags: merged,
    ...(!passphraseOnCli && p.passphrase !== undefined
      ? { profilePassphrase: { passphrase: p.passphrase, origin: `profile ${loaded.file}` } }
      : {}),
    profileName: loaded.name,
  };
}

/** Writes the options given on the command line as profile NAME; returns where, and what to warn about. */
export async function saveProfileFrom(
  name: string,
  request: CreateRequest,
  cmd: Command,
): Promise<{ file: string; warnings: string[] }> {
  const { flags } = request;
  const warnings: string[] = [];
  const absolute = (p: string) => (p === "-" ? p : path.resolve(p));
  const profile: Profile = {
    sources: request.sourceArgs.map(parseSourceSpec).map((s) => ({ ...s, path: path.resolve(s.path) })),
    sourceArgs: [],
    ...(request.dest === undefined
      ? {}
      : { destination: isRemoteSpec(request.dest) ? request.dest : absolute(request.dest) }),
    ...(flags.destCommand === undefined ? {} : { destCommand: flags.destCommand }),
    ...(flags.exclude.length > 0 ? { exclude: flags.exclude } : {}),
    ...compressionOf(flags, cmd),
    ...(given(cmd, "compressLevel")
      ? { compressLevel: parseInteger(flags.compressLevel, "--compress-level", 1, 9) }
      : {}),
    ...(given(cmd, "jobs") ? { jobs: parseInteger(flags.jobs, "--jobs", 1, 64) } : {}),
    ...(given(cmd, "chunkSize") ? { chunkSize: parseSize(flags.chunkSize, "--chunk-size") } : {}),
    ...(given(cmd, "scryptLogn") ? { scryptLogn: parseInteger(flags.scryptLogn, "--scrypt-logn", 10, 20) } : {}),
    ...(flags.passphraseCommand === undefined ? {} : { passphraseCommand: flags.passphraseCommand }),
    ...(flags.passphraseFile === undefined ? {} : { passphraseFile: absolute(flags.passphraseFile) }),
    ...(flags.sshCommand === undefined ? {} : { sshCommand: flags.sshCommand }),
    ...(given(cmd, "stallTimeout")
      ? { stallTimeout: parseInteger(flags.stallTimeout, "--stall-timeout", 1, 86_400) }
      : {}),
    ...(flags.onSuccess === undefined ? {} : { onSuccess: flags.onSuccess }),
    ...(flags.onFailure === undefined ? {} : { onFailure: flags.onFailure }),
  };
  if (flags.passphraseFile === "-") {
    throw new QbackupError("ERR_USAGE", "a profile cannot read its passphrase from stdin: give a file or a command");
  }
  if (flags.storePassphraseInProfile) {
    if (flags.passphraseFile !== undefined || flags.passphraseCommand !== undefined) {
      throw new QbackupError(
        "ERR_USAGE",
        "--store-passphrase-in-profile asks for the passphrase; leave out --passphrase-file/--passphrase-command",
      );
    }
    profile.passphrase = await readPassphrase({ kind: "prompt", confirm: true });
    warnings.push(
      "the profile holds the passphrase in plain text (mode 0600); anyone who can read it can open the backups",
    );
  } else if (profile.passphraseCommand === undefined && profile.passphraseFile === undefined) {
    warnings.push(
      "the profile has no passphrase source: `create --profile` will ask on the terminal, and `schedule` needs passphrase_command or passphrase_file",
    );
  }
  const file = await saveProfile(name, profile);
  return { file, warnings };
}

function compressionOf(flags: CreateFlags, cmd: Command): { compression?: ProfileCompression } {
  if (given(cmd, "compress") && !flags.compress) return { compression: "none" };
  if (flags.compressFilter !== undefined) return { compression: flags.compressFilter as ProfileCompression };
  return {};
}
