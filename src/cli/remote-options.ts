/** Options shared by every command that talks to a remote or a command (ssh, rclone, pipes). */
import type { Command } from "commander";
import { QbackupError } from "../errors.js";
import type { RemoteOptions } from "../transport/remote.js";
import { parseInteger } from "../runtime/units.js";

export const DEFAULT_STALL_TIMEOUT_S = 120;

export interface RemoteFlags {
  sshCommand?: string;
  stallTimeout: string;
}

export function addRemoteOptions(cmd: Command, stallWhat: string): Command {
  return cmd
    .option(
      "-e, --ssh-command <cmd>",
      "ssh program and options for ssh:// and ssh+agent:// (split on spaces, like rsync -e)",
    )
    .option("--stall-timeout <seconds>", `give up when ${stallWhat} for this long`, String(DEFAULT_STALL_TIMEOUT_S));
}

export function stallMsFrom(flags: RemoteFlags): number {
  return parseInteger(flags.stallTimeout, "--stall-timeout", 1, 86_400) * 1000;
}

export function remoteOptionsFrom(flags: RemoteFlags): RemoteOptions {
  if (flags.sshCommand === undefined) return {};
  const ssh = flags.sshCommand.trim().split(/\s+/);
  if (ssh[0] === undefined || ssh[0] === "") throw new QbackupError("ERR_USAGE", "--ssh-command is empty");
  return { ssh };
}
