/** `qbackup prune ssh+agent://HOST/ --keep-within D [--keep-last N]` — delete old backups through an agent. */
import { Command } from "commander";
import { agentPrune } from "../agent/client.js";
import { parsePruneSpec } from "../agent/protocol.js";
import { QbackupError } from "../errors.js";
import { AGENT_REMOTE_COMMAND, parseRemote, sshArgv } from "../transport/remote.js";
import { EXIT_OK } from "./exit.js";
import { addRemoteOptions, remoteOptionsFrom, stallMsFrom } from "./remote-options.js";
import type { RemoteFlags } from "./remote-options.js";

interface PruneFlags extends RemoteFlags {
  keepWithin?: string;
  keepLast?: string;
}

export function pruneCommand(): Command {
  const cmd = new Command("prune")
    .description("delete the backups an agent holds that no rule keeps (needs a key without --append-only)")
    .argument("<agent>", "ssh+agent://[user@]host[:port]/")
    .option("--keep-within <duration>", "keep every backup received within DURATION (e.g. 30d, 12h, 2w)")
    .option("--keep-last <n>", "keep the N most recently received backups");
  return addRemoteOptions(cmd, "the agent answers nothing")
    .addHelpText(
      "after",
      `
A backup is kept if either rule keeps it. --keep-within is the safe rule against a client that
can only append: it can flood the store with new backups, pushing good ones out of --keep-last,
but it cannot make the agent's receive times younger.

Example:
  qbackup prune -e "ssh -i ~/.ssh/backup-admin" ssh+agent://backup@storage/ --keep-within 90d`,
    )
    .action(async (agent: string, flags: PruneFlags) => {
      const spec = parseRemote(agent);
      if (spec.kind !== "agent" || spec.name !== "") {
        throw new QbackupError("ERR_USAGE", "prune works on a storage agent: give ssh+agent://[user@]host[:port]/");
      }
      const words = [
        ...(flags.keepWithin === undefined ? [] : ["--keep-within", flags.keepWithin]),
        ...(flags.keepLast === undefined ? [] : ["--keep-last", flags.keepLast]),
      ];
      if (words.length === 0) throw new QbackupError("ERR_USAGE", "give --keep-within and/or --keep-last");
      const policy = parsePruneSpec(words);
      if (!policy.ok) throw new QbackupError("ERR_USAGE", policy.message);
      const argv = sshArgv(spec.target, AGENT_REMOTE_COMMAND, remoteOptionsFrom(flags).ssh);
      const deleted = await agentPrune(argv, policy.value, stallMsFrom(flags));
      process.stdout.write(deleted.map((name) => `deleted ${name}\n`).join(""));
      process.stderr.write(`qbackup: ${deleted.length} backup${deleted.length === 1 ? "" : "s"} deleted\n`);
      process.exitCode = EXIT_OK;
    });
}
