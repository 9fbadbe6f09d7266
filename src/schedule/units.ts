/**
 * The text `qbackup schedule` installs: a systemd user service + timer pair, or one crontab line.
 * Pure: strings in, strings out (the CLI writes the files). Quoting is hand-written because it
 * follows systemd's and cron's own rules, which no shell-quoting library knows.
 */
import { QbackupError } from "../errors.js";
import { PROFILE_NAME_PATTERN } from "../config/profile-path.js";

/** The four schedule words both systemd (OnCalendar=) and this module's crontab lines understand. */
export const EVERY_PRESETS = ["hourly", "daily", "weekly", "monthly"] as const;
export type EveryPreset = (typeof EVERY_PRESETS)[number];

/** Longest OnCalendar expression accepted: far more than any real one needs. */
export const MAX_EVERY_LENGTH = 100;
/** The default spread of start times: an hour (10 minutes when running hourly). */
export const DEFAULT_RANDOM_DELAY_SEC = 3600;
export const DEFAULT_HOURLY_RANDOM_DELAY_SEC = 600;
/** The longest --random-delay accepted: one week. */
export const MAX_RANDOM_DELAY_SEC = 7 * 24 * 3600;

/** What cron can spread a start over without changing the day: a whole hour, or a whole day. */
const HOUR_MINUTES = 60;
const DAY_MINUTES = 24 * 60;
const SECONDS_PER: Record<string, number> = { "": 1, s: 1, m: 60, h: 3600 };

/** Everything a schedule depends on. */
export interface ScheduleSpec {
  /** The profile's name; it names the units (`qbackup-NAME.service`). */
  profileName: string;
  /** The profile file, absolute. */
  profileFile: string;
  /** A preset word or a systemd OnCalendar expression (see parseEvery). */
  every: string;
  randomDelaySec: number;
  /** Also prune the profile's destination after a successful backup. */
  prune: boolean;
  /** The command that runs qbackup: `[node, <repo>/bin/qbackup.js]` (tests pass a fake). */
  program: readonly string[];
}

export interface SystemdUnits {
  serviceName: string;
  timerName: string;
  service: string;
  timer: string;
}

/** Words that need no quoting, for systemd and for sh alike. */
const BARE_WORD = /^[A-Za-z0-9_/.,:=+@-]+$/;
// eslint-disable-next-line no-control-regex
const CONTROL_CHAR = /[\u0000-\u001f\u007f]/;
/**
 * What systemd will not take in an executable's path: quotes, backslashes and control characters
 * ("contains special characters"), and `$`, since variables are substituted in the arguments but
 * not in the path, so `$$` would stay doubled.
 */
// eslint-disable-next-line no-control-regex
const UNSAFE_EXECUTABLE = /["'\\$\u0000-\u001f\u007f]/;
const UNSAFE_WHAT = "a quote, backslash, '$' or control character";

/**
 * One ExecStart= argument, as systemd reads it back: double quotes with C escapes for `"`, `\`
 * and control characters; `%%` for a literal `%` (specifiers) and `$$` for `$` (variables).
 */
export function systemdQuote(arg: string): string {
  if (BARE_WORD.test(arg)) return arg;
  let out = '"';
  for (const ch of arg) {
    const code = ch.codePointAt(0)!;
    if (ch === '"' || ch === "\\") out += `\\${ch}`;
    else if (ch === "%") out += "%%";
    else if (ch === "$") out += "$$";
    else if (code < 0x20 || code === 0x7f) out += `\\x${code.toString(16).padStart(2, "0")}`;
    else out += ch;
  }
  return `${out}"`;
}

/** One word for /bin/sh: single quotes, with `'` written as `'\''`. */
export function shQuote(arg: string): string {
  if (BARE_WORD.test(arg)) return arg;
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

/**
 * Make sh text safe in a crontab command field, where an unescaped `%` ends the command. Every
 * `%` becomes `\%`; cron drops that backslash. A `%` right after a backslash (only possible inside
 * single quotes, see shQuote) first gets `''` in between, since cron would read `\\%` as `\` + end.
 */
export function cronEscape(shText: string): string {
  return shText.replace(/\\%/g, "\\''%").replace(/%/g, "\\%");
}

/** Validate --every: a preset, or (not with cron) an OnCalendar expression checked only lightly. */
export function parseEvery(text: string, cron: boolean): string {
  const every = text.trim();
  if (isPreset(every)) return every;
  if (cron) {
    throw new QbackupError("ERR_USAGE", `--every '${text}' with cron: give ${EVERY_PRESETS.join(", ")}`);
  }
  if (every === "" || every.length > MAX_EVERY_LENGTH || !/^[\x20-\x7e]+$/.test(every) || every.includes("\\")) {
    throw new QbackupError(
      "ERR_USAGE",
      `--every '${text}' is not a schedule: give ${EVERY_PRESETS.join(", ")} or a systemd OnCalendar expression ` +
        `(printable ASCII, no backslash, at most ${MAX_EVERY_LENGTH} characters)`,
      { hint: "check an expression with: systemd-analyze calendar 'EXPRESSION'" },
    );
  }
  return every;
}

export function isPreset(every: string): every is EveryPreset {
  return (EVERY_PRESETS as readonly string[]).includes(every);
}

/** A --random-delay (`30m`, `2h`, `90s`, `0`) in seconds. */
export function parseDelay(text: string): number {
  const m = /^(\d{1,7})([smh]?)$/.exec(text.trim());
  const seconds = m ? Number(m[1]) * SECONDS_PER[m[2]!]! : NaN;
  if (!Number.isSafeInteger(seconds) || seconds > MAX_RANDOM_DELAY_SEC) {
    throw new QbackupError(
      "ERR_USAGE",
      `--random-delay '${text}' is not a duration: a number with s, m or h (e.g. 30m, 2h), at most ${formatDelay(MAX_RANDOM_DELAY_SEC)}`,
    );
  }
  return seconds;
}

export function defaultDelaySec(every: string): number {
  return every === "hourly" ? DEFAULT_HOURLY_RANDOM_DELAY_SEC : DEFAULT_RANDOM_DELAY_SEC;
}

/** Seconds in the largest whole unit systemd reads back (`1h`, `10m`, `90s`). */
export function formatDelay(seconds: number): string {
  if (seconds > 0 && seconds % 3600 === 0) return `${seconds / 3600}h`;
  if (seconds > 0 && seconds % 60 === 0) return `${seconds / 60}m`;
  return `${seconds}s`;
}

/** The argv lists the schedule runs: create, then (with prune) prune. */
export function scheduledCommands(spec: ScheduleSpec): string[][] {
  if (spec.program.length === 0) throw new QbackupError("ERR_INTERNAL", "schedule: empty program");
  const create = [...spec.program, "create", "--profile", spec.profileFile, "-y", "-q"];
  const prune = [...spec.program, "prune", "--profile", spec.profileFile];
  return spec.prune ? [create, prune] : [create];
}

export function unitBaseName(profileName: string): string {
  if (!PROFILE_NAME_PATTERN.test(profileName)) {
    throw new QbackupError(
      "ERR_USAGE",
      `profile name '${profileName}' cannot name a systemd unit: 1 to 64 letters, digits, '_', '.' or '-'`,
      { hint: "rename the profile file, or use --cron" },
    );
  }
  return `qbackup-${profileName}`;
}

/** The service and timer for a spec. */
export function systemdUnits(spec: ScheduleSpec): SystemdUnits {
  const base = unitBaseName(spec.profileName);
  const every = parseEvery(spec.every, false);
  const executable = spec.program[0] ?? "";
  if (!executable.startsWith("/")) {
    throw new QbackupError("ERR_INTERNAL", `schedule: program '${executable}' is not an absolute path`);
  }
  if (UNSAFE_EXECUTABLE.test(executable)) {
    throw new QbackupError(
      "ERR_USAGE",
      `systemd cannot run ${JSON.stringify(executable)}: its path has ${UNSAFE_WHAT}`,
      {
        hint: "use --cron, or install node under a plainer path",
      },
    );
  }
  const header = [
    `# Written by \`qbackup schedule ${spec.profileName}\`; run it again to change this schedule.`,
    `# Stop it with: systemctl --user disable --now ${base}.timer`,
    "",
  ];
  const service = [
    ...header,
    "[Unit]",
    `Description=qbackup: back up profile ${spec.profileName}`,
    "",
    "[Service]",
    "Type=oneshot",
    // oneshot: each ExecStart= runs only if the one before it succeeded
    ...scheduledCommands(spec).map((argv) => `ExecStart=${argv.map(systemdQuote).join(" ")}`),
    "Nice=10",
    "IOSchedulingClass=idle",
    "",
  ].join("\n");
  const timer = [
    ...header,
    "[Unit]",
    `Description=qbackup: schedule for profile ${spec.profileName}`,
    "",
    "[Timer]",
    `OnCalendar=${every.replace(/%/g, "%%")}`,
    `RandomizedDelaySec=${formatDelay(spec.randomDelaySec)}`,
    "Persistent=true",
    "",
    "[Install]",
    "WantedBy=timers.target",
    "",
  ].join("\n");
  return { serviceName: `${base}.service`, timerName: `${base}.timer`, service, timer };
}

/**
 * One crontab line (no newline). Cron has no randomised delay, so one is chosen now: a start
 * offset drawn from [0, random delay), capped at an hour (hourly) or a day, fixes the minute and
 * (daily, weekly = Monday, monthly = the 1st) the hour. `random` returns a number in [0, 1).
 */
export function crontabLine(spec: ScheduleSpec, random: () => number): string {
  const every = parseEvery(spec.every, true) as EveryPreset;
  const commands = scheduledCommands(spec);
  for (const arg of commands.flat()) {
    if (CONTROL_CHAR.test(arg)) {
      throw new QbackupError("ERR_USAGE", `cannot schedule with cron: ${JSON.stringify(arg)} has a control character`);
    }
  }
  const period = every === "hourly" ? HOUR_MINUTES : DAY_MINUTES;
  const window = Math.max(1, Math.min(Math.ceil(spec.randomDelaySec / 60), period));
  const offset = Math.min(window - 1, Math.floor(random() * window));
  const minute = offset % HOUR_MINUTES;
  const hour = Math.floor(offset / HOUR_MINUTES);
  const when = {
    hourly: `${minute} * * * *`,
    daily: `${minute} ${hour} * * *`,
    weekly: `${minute} ${hour} * * 1`,
    monthly: `${minute} ${hour} 1 * *`,
  }[every];
  const sh = commands.map((argv) => argv.map(shQuote).join(" ")).join(" && ");
  return `${when} ${cronEscape(sh)}`;
}
