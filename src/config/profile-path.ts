/** Where profiles live: `$XDG_CONFIG_HOME/qbackup/profiles/NAME.yaml` (default `~/.config`), or a path. */
import * as os from "node:os";
import * as path from "node:path";
import { QbackupError } from "../errors.js";

/** A profile name is one short path component, so it can also name a systemd unit. */
export const PROFILE_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const PROFILE_SUFFIX = ".yaml";

export function configDirectory(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env["XDG_CONFIG_HOME"];
  const base = xdg !== undefined && path.isAbsolute(xdg) ? xdg : path.join(env["HOME"] ?? os.homedir(), ".config");
  return path.join(base, "qbackup");
}

export function profileDirectory(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(configDirectory(env), "profiles");
}

/** Whether the argument of --profile is a file path (it has a `/` or ends in .yaml/.yml) rather than a name. */
export function isProfilePath(nameOrPath: string): boolean {
  return nameOrPath.includes("/") || /\.ya?ml$/.test(nameOrPath);
}

/** The absolute file of profile NAME, or of the given path. */
export function profilePath(nameOrPath: string, env: NodeJS.ProcessEnv = process.env): string {
  if (isProfilePath(nameOrPath)) return path.resolve(nameOrPath);
  if (!PROFILE_NAME_PATTERN.test(nameOrPath)) {
    throw new QbackupError(
      "ERR_USAGE",
      `bad profile name '${nameOrPath}': 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit`,
    );
  }
  return path.join(profileDirectory(env), `${nameOrPath}${PROFILE_SUFFIX}`);
}

/** The name a profile file is known by (its file name without .yaml/.yml). */
export function profileNameOf(file: string): string {
  return path.basename(file).replace(/\.ya?ml$/, "");
}
