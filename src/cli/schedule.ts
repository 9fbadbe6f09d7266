/** `qbackup schedule PROFILE --every WHEN` — run a profile's backup from a systemd user timer, or from cron. */
import { Command } from "commander";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { loadProfile } from "../config/profile-file.js";
import { profileNameOf, profilePath } from "../config/profile-path.js";
import { QbackupError, destinationError } from "../errors.js";
import {
  EVERY_PRESETS,
  crontabLine,
  defaultDelaySec,
  isPreset,
  parseDelay,
  parseEvery,
  systemdUnits,
} from "../schedule/units.js";
import type { ScheduleSpec } from "../schedule/units.js";
import { EXIT_FAILURE, EXIT_OK } from "./exit.js";

/** systemd creates this directory when it is the running init; sd_booted() checks the same. */
export const SYSTEMD_RUNTIME_DIR = "/run/systemd/system";
/** <repo>/bin/qbackup.js: two levels up from both src/cli/ (under tsx) and dist/cli/. */
export const QBACKUP_BIN = fileURLToPath(new URL("../../bin/qbackup.js", import.meta.url));
/** What systemctl says when there is no user manager (or no bus) to talk to. */
const NO_USER_MANAGER =
  /failed to connect to (the )?bus|user scope bus|DBUS_SESSION_BUS_ADDRESS|XDG_RUNTIME_DIR|no medium found|host is down/i;

export interface SystemctlResult {
  /** systemctl is not installed. */
  missing: boolean;
  status: number | null;
  stderr: string;
}

/** Everything the command touches outside its arguments; tests replace parts of it. */
export interface ScheduleDeps {
  env: NodeJS.ProcessEnv;
  /** The command that runs qbackup (`[node, bin/qbackup.js]`). */
  program: readonly string[];
  systemdPresent: () => boolean;
  /** Runs `systemctl --user ARGS…`. */
  systemctl: (args: readonly string[]) => SystemctlResult;
  random: () => number;
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

interface ScheduleFlags {
  every: string;
  randomDelay?: string;
  cron?: boolean;
  print?: boolean;
  enable: boolean;
  prune?: boolean;
  json?: boolean;
}

export function defaultProgram(): string[] {
  return [process.execPath, QBACKUP_BIN];
}

function runSystemctl(args: readonly string[]): SystemctlResult {
  const r = spawnSync("systemctl", ["--user", ...args], { encoding: "utf8" });
  if (r.error) {
    const missing = (r.error as NodeJS.ErrnoException).code === "ENOENT";
    return { missing, status: null, stderr: r.error.message };
  }
  return { missing: false, status: r.status, stderr: r.stderr };
}

const defaultDeps: ScheduleDeps = {
  env: process.env,
  program: defaultProgram(),
  systemdPresent: () => fs.existsSync(SYSTEMD_RUNTIME_DIR),
  systemctl: runSystemctl,
  random: Math.random,
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
};

/** Where systemd looks for a user's own units: `$XDG_CONFIG_HOME/systemd/user` (default ~/.config). */
export function userUnitDirectory(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env["XDG_CONFIG_HOME"];
  const base = xdg !== undefined && path.isAbsolute(xdg) ? xdg : path.join(env["HOME"] ?? os.homedir(), ".config");
  return path.join(base, "systemd", "user");
}

/**
 * The whole profile must load (a timer is a bad place to find a typo), and it must give the
 * passphrase without a terminal.
 */
export async function checkProfile(file: string, env: NodeJS.ProcessEnv): Promise<void> {
  const { profile } = await loadProfile(file, env);
  if (
    profile.passphraseCommand === undefined &&
    profile.passphraseFile === undefined &&
    profile.passphrase === undefined
  ) {
    throw new QbackupError(
      "ERR_USAGE",
      `profile ${file} has no passphrase_command, passphrase_file or passphrase: a scheduled backup has no terminal to ask on`,
      { hint: "add e.g. `passphrase_command: pass show qbackup` or `passphrase_file: /path/to/file` to the profile" },
    );
  }
}

/** Write FILE through a temporary file and a rename; say whether it was new, changed or the same. */
function writeAtomically(file: string, content: string): "wrote" | "updated" | "unchanged" {
  let old: string | undefined;
  try {
    old = fs.readFileSync(file, "utf8");
  } catch {
    old = undefined;
  }
  if (old === content) return "unchanged";
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  try {
    fs.writeFileSync(temp, content, { mode: 0o644 });
    fs.renameSync(temp, file);
  } catch (err) {
    fs.rmSync(temp, { force: true });
    throw destinationError(err, file);
  }
  return old === undefined ? "wrote" : "updated";
}

export function scheduleCommand(overrides: Partial<ScheduleDeps> = {}): Command {
  const deps: ScheduleDeps = { ...defaultDeps, ...overrides };
  return new Command("schedule")
    .description("run a profile's backup regularly: a systemd user timer, or a crontab line")
    .argument("<profile>", "a profile name (~/.config/qbackup/profiles/NAME.yaml) or file")
    .requiredOption("--every <when>", `${EVERY_PRESETS.join(", ")}, or a systemd OnCalendar expression`)
    .option("--random-delay <duration>", "spread the start over up to DURATION: 30m, 2h, 90s (default 1h; hourly 10m)")
    .option("--prune", "after a successful backup, prune the profile's destination (keep_within/keep_last)")
    .option("--cron", "print a crontab line instead of writing systemd units")
    .option("--print", "print the units (or crontab line) and write nothing")
    .option("--no-enable", "write the units but do not run systemctl")
    .option("--json", "print one JSON summary (the units or the crontab line, and what was done) instead")
    .addHelpText(
      "after",
      `
The profile must get its passphrase without a terminal (passphrase_command or passphrase_file).
The units are ~/.config/systemd/user/qbackup-PROFILE.{service,timer}; the timer catches up on a
missed run at the next boot (Persistent=true). Without systemd (or with --cron), a crontab line
is printed instead, with a start time chosen at random now within the random delay.

Examples:
  qbackup schedule laptop --every daily
  qbackup schedule laptop --every 'Mon..Fri 12:30' --random-delay 30m --prune
  qbackup schedule ~/backup/usb.yaml --every weekly --print
  qbackup schedule laptop --every hourly --cron      # then paste the line into: crontab -e`,
    )
    .action(async (profile: string, flags: ScheduleFlags) => {
      process.exitCode = await runSchedule(profile, flags, deps);
    });
}

/** Returns the exit status. */
async function runSchedule(profile: string, flags: ScheduleFlags, deps: ScheduleDeps): Promise<number> {
  const file = path.resolve(profilePath(profile, deps.env));
  if (!fs.existsSync(file) || !fs.statSync(file).isFile()) {
    throw new QbackupError("ERR_USAGE", `profile ${profile} not found (looked for ${file})`);
  }
  await checkProfile(file, deps.env);
  const systemd = !flags.cron && deps.systemdPresent();
  if (!flags.cron && !systemd && !isPreset(flags.every.trim())) {
    throw new QbackupError(
      "ERR_USAGE",
      `--every '${flags.every}': systemd is not running here (no ${SYSTEMD_RUNTIME_DIR}), so the schedule is a ` +
        `crontab line, which takes only ${EVERY_PRESETS.join(", ")}`,
    );
  }
  const every = parseEvery(flags.every, !systemd);
  const spec: ScheduleSpec = {
    profileName: profileNameOf(file),
    profileFile: file,
    every,
    randomDelaySec: flags.randomDelay === undefined ? defaultDelaySec(every) : parseDelay(flags.randomDelay),
    prune: flags.prune === true,
    program: deps.program,
  };
  if (systemd) return installSystemd(spec, flags, deps);
  printCron(spec, flags, deps);
  return EXIT_OK;
}

function printCron(spec: ScheduleSpec, flags: ScheduleFlags, deps: ScheduleDeps): void {
  const line = crontabLine(spec, deps.random);
  if (flags.json) {
    deps.stdout(`${JSON.stringify({ type: "summary", command: "schedule", kind: "cron", line })}\n`);
    return;
  }
  if (!flags.cron) {
    deps.stderr(`qbackup: systemd is not running here (no ${SYSTEMD_RUNTIME_DIR}): printing a crontab line instead\n`);
  }
  deps.stdout(`${line}\n`);
  if (!flags.print) {
    deps.stderr(
      "qbackup: add this line to your crontab with `crontab -e`; cron mails you its output, which is only problems (-q)\n",
    );
  }
}

function installSystemd(spec: ScheduleSpec, flags: ScheduleFlags, deps: ScheduleDeps): number {
  const units = systemdUnits(spec);
  const dir = userUnitDirectory(deps.env);
  const files: [string, string][] = [
    [path.join(dir, units.serviceName), units.service],
    [path.join(dir, units.timerName), units.timer],
  ];
  const summary = (enabled: boolean) => {
    if (!flags.json) return;
    const unitList = files.map(([file, text]) => ({ file, text }));
    deps.stdout(
      `${JSON.stringify({ type: "summary", command: "schedule", kind: "systemd", units: unitList, written: !flags.print, enabled })}\n`,
    );
  };
  if (flags.print) {
    if (flags.json) summary(false);
    else deps.stdout(files.map(([file, content]) => `# ${file}\n${content}`).join("\n"));
    return EXIT_OK;
  }
  try {
    fs.mkdirSync(dir, { recursive: true });
  } catch (err) {
    throw destinationError(err, dir);
  }
  for (const [file, content] of files) deps.stderr(`qbackup: ${writeAtomically(file, content)} ${file}\n`);

  const steps = [["daemon-reload"], ["enable", "--now", units.timerName]];
  const howTo = steps.map((args) => `  systemctl --user ${args.join(" ")}\n`).join("");
  if (!flags.enable) {
    deps.stderr(`qbackup: not enabled (--no-enable); to start the timer, run:\n${howTo}`);
    summary(false);
    return EXIT_OK;
  }
  for (const args of steps) {
    const r = deps.systemctl(args);
    if (r.status === 0) continue;
    const said = r.stderr.trim().split("\n")[0] ?? "";
    if (r.missing || NO_USER_MANAGER.test(r.stderr)) {
      deps.stderr(
        `qbackup: warning: cannot reach your systemd user manager (${r.missing ? "no systemctl" : said})\n` +
          `qbackup: the units are ${files.map(([file]) => file).join(" and ")}; in a session of yours, run:\n${howTo}`,
      );
      summary(false);
      return EXIT_OK;
    }
    deps.stderr(`qbackup: error: systemctl --user ${args.join(" ")} failed: ${said}\n`);
    return EXIT_FAILURE;
  }
  deps.stderr(
    `qbackup: enabled ${units.timerName}; see \`systemctl --user list-timers ${units.timerName}\`\n` +
      "qbackup: user timers run only while you are logged in, unless: loginctl enable-linger\n",
  );
  summary(true);
  return EXIT_OK;
}
