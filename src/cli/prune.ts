/**
 * `qbackup prune TARGET --keep-within D [--keep-last N]` and `qbackup prune --profile P`: delete old
 * backups in a local directory, or through a storage agent.
 */
import { Command } from "commander";
import * as fs from "node:fs/promises";
import { agentPrune } from "../agent/client.js";
import { parsePruneSpec } from "../agent/protocol.js";
import type { PrunePolicy } from "../agent/protocol.js";
import { loadProfile } from "../config/profile-file.js";
import { QbackupError } from "../errors.js";
import { pruneDirectory } from "../transport/local-prune.js";
import { AGENT_REMOTE_COMMAND, isRemoteSpec, parseRemote, sshArgv } from "../transport/remote.js";
import { EXIT_OK } from "./exit.js";
import { addRemoteOptions, remoteOptionsFrom, stallMsFrom } from "./remote-options.js";
import type { RemoteFlags } from "./remote-options.js";
import { Reporter, addOutputOptions } from "./reporter.js";
import type { OutputFlags } from "./reporter.js";

interface PruneFlags extends RemoteFlags, OutputFlags {
  keepWithin?: string;
  keepLast?: string;
  profile?: string;
}

export function pruneCommand(): Command {
  const cmd = new Command("prune")
    .description("delete the backups no rule keeps, in a local directory or through a storage agent")
    .argument("[target]", "a directory of dated backups, or ssh+agent://[user@]host[:port]/ (leave out with --profile)")
    .option("--keep-within <duration>", "keep every backup made (received) within DURATION (e.g. 30d, 12h, 2w)")
    .option("--keep-last <n>", "keep the N newest backups")
    .option("--profile <name>", "the destination and keep_within/keep_last (and prune_ssh_command) of a profile");
  addOutputOptions(cmd);
  return addRemoteOptions(cmd, "the agent answers nothing")
    .addHelpText(
      "after",
      `
A backup is kept if either rule keeps it. In a directory, only the dated backups create names
(qubes-backup-YYYY-MM-DDTHHMMSS) are candidates, by modification time, each with its
.RESTORE-INSTRUCTIONS.txt; nothing else there is touched. Through an agent, the client's key must
not be --append-only. --keep-within is the safe rule against a client that can only append: it can
flood the store with new backups, pushing good ones out of --keep-last, but it cannot make the
agent's receive times younger.

Examples:
  qbackup prune /mnt/backups --keep-within 30d --keep-last 10
  qbackup prune -e "ssh -i ~/.ssh/backup-admin" ssh+agent://backup@storage/ --keep-within 90d
  qbackup prune --profile laptop`,
    )
    .action(async function (this: Command, target: string | undefined, flags: PruneFlags) {
      const reporter = new Reporter(flags);
      const job = await pruneJob(this, target, flags);
      const deleted = await runPrune(job);
      if (!reporter.json) process.stdout.write(deleted.map((name) => `deleted ${name}\n`).join(""));
      reporter.info(`qbackup: ${deleted.length} backup${deleted.length === 1 ? "" : "s"} deleted`);
      reporter.summary("prune", { target: job.target, deleted });
      process.exitCode = EXIT_OK;
    });
}

interface PruneJob {
  target: string;
  policy: PrunePolicy;
  flags: PruneFlags;
}

/** The target and rules from the arguments, or from a profile (options given here win). */
async function pruneJob(cmd: Command, target: string | undefined, flags: PruneFlags): Promise<PruneJob> {
  const given = (key: string) => cmd.getOptionValueSource(key) === "cli";
  const effective: PruneFlags = { ...flags };
  let where = target;
  if (flags.profile !== undefined) {
    if (target !== undefined) throw new QbackupError("ERR_USAGE", "with --profile, the target comes from the profile");
    const { profile, file } = await loadProfile(flags.profile);
    if (profile.destination === undefined) {
      throw new QbackupError("ERR_USAGE", `profile ${file} has no destination to prune (it uses dest_command)`);
    }
    where = profile.destination;
    if (!given("keepWithin") && !given("keepLast")) {
      effective.keepWithin = profile.keepWithin;
      effective.keepLast = profile.keepLast?.toString();
    }
    if (!given("sshCommand")) effective.sshCommand = profile.pruneSshCommand ?? profile.sshCommand;
    if (!given("stallTimeout") && profile.stallTimeout !== undefined)
      effective.stallTimeout = String(profile.stallTimeout);
    if (effective.keepWithin === undefined && effective.keepLast === undefined) {
      throw new QbackupError("ERR_USAGE", `profile ${file} has no keep_within or keep_last: nothing says what to keep`);
    }
  }
  if (where === undefined)
    throw new QbackupError("ERR_USAGE", "prune what? give a directory, ssh+agent://HOST/, or --profile");
  const words = [
    ...(effective.keepWithin === undefined ? [] : ["--keep-within", effective.keepWithin]),
    ...(effective.keepLast === undefined ? [] : ["--keep-last", effective.keepLast]),
  ];
  if (words.length === 0) throw new QbackupError("ERR_USAGE", "give --keep-within and/or --keep-last");
  const policy = parsePruneSpec(words);
  if (!policy.ok) throw new QbackupError("ERR_USAGE", policy.message);
  return { target: where, policy: policy.value, flags: effective };
}

async function runPrune({ target, policy, flags }: PruneJob): Promise<string[]> {
  if (isRemoteSpec(target)) {
    const spec = parseRemote(target);
    if (spec.kind !== "agent" || spec.name !== "") {
      throw new QbackupError(
        "ERR_USAGE",
        `cannot prune ${target}: prune works on a local directory or a storage agent (ssh+agent://[user@]host[:port]/)`,
      );
    }
    const argv = sshArgv(spec.target, AGENT_REMOTE_COMMAND, remoteOptionsFrom(flags).ssh);
    return agentPrune(argv, policy, stallMsFrom(flags));
  }
  const st = await fs.stat(target).catch(() => undefined);
  if (!st?.isDirectory()) {
    throw new QbackupError("ERR_USAGE", `cannot prune ${target}: not a directory of backups`, {
      hint: "a destination that names one file has nothing to prune",
    });
  }
  return pruneDirectory(target, policy);
}
