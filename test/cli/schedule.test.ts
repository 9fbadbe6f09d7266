/**
 * `qbackup schedule` end to end, in-process with a temporary HOME/XDG_CONFIG_HOME: the units it
 * writes pass `systemd-analyze verify`, their ExecStart lines and the crontab line really run a
 * program with the exact profile path (one with spaces, %, $, quotes and a backslash in it).
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { QBACKUP_BIN, defaultProgram, scheduleCommand } from "../../src/cli/schedule.js";
import type { ScheduleDeps, SystemctlResult } from "../../src/cli/schedule.js";
import { systemdUnits } from "../../src/schedule/units.js";

const AWKWARD_DIR = `it's a "dir" 100% $HOME \\ ;`;

let root: string;
let env: NodeJS.ProcessEnv;
let unitDir: string;
let namedProfile: string;
let awkwardProfile: string;
let fakeProgram: string[];
let fakeLog: string;
let fakeFailFlag: string;

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "qb-"));
  const xdg = path.join(root, "conf dir");
  env = { HOME: path.join(root, "home"), XDG_CONFIG_HOME: xdg };
  unitDir = path.join(xdg, "systemd", "user");
  namedProfile = path.join(xdg, "qbackup", "profiles", "nightly.yaml");
  fs.mkdirSync(path.dirname(namedProfile), { recursive: true });
  fs.writeFileSync(
    namedProfile,
    "destination: /mnt/backup\nsources: [work=/dev/vg/work]\npassphrase_command: pass show qbackup\n",
  );
  awkwardProfile = path.join(root, AWKWARD_DIR, "usb.yaml");
  fs.mkdirSync(path.dirname(awkwardProfile));
  fs.writeFileSync(
    awkwardProfile,
    "destination: /mnt/usb\nsources: [work=/dev/vg/work]\npassphrase_file: /root/pass\nkeep_last: 3\n",
  );

  // stands in for bin/qbackup.js: records its argv, fails `create` when asked to
  const fakeDir = path.join(root, "bin 50% $x 'q' ;"); // node cannot run an ES module from a path with a backslash
  fs.mkdirSync(fakeDir);
  fakeLog = path.join(root, "argv.log");
  fakeFailFlag = path.join(root, "fail-create");
  const fake = path.join(fakeDir, "fake qbackup.mjs");
  fs.writeFileSync(
    fake,
    `import * as fs from "node:fs";
const args = process.argv.slice(2);
fs.appendFileSync(${JSON.stringify(fakeLog)}, JSON.stringify(args) + "\\n");
process.exit(args[0] === "create" && fs.existsSync(${JSON.stringify(fakeFailFlag)}) ? 3 : 0);
`,
  );
  fakeProgram = [process.execPath, fake];
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
afterEach(() => {
  fs.rmSync(unitDir, { recursive: true, force: true });
  fs.rmSync(fakeLog, { force: true });
  fs.rmSync(fakeFailFlag, { force: true });
  process.exitCode = undefined;
});

interface Run {
  stdout: string;
  stderr: string;
  status: number | undefined;
  calls: string[][];
}

async function schedule(args: string[], deps: Partial<ScheduleDeps> = {}): Promise<Run> {
  const run: Run = { stdout: "", stderr: "", status: undefined, calls: [] };
  const cmd = scheduleCommand({
    env,
    systemdPresent: () => true,
    systemctl: (a) => {
      run.calls.push([...a]);
      return { missing: false, status: 0, stderr: "" };
    },
    random: () => 0.5,
    stdout: (t) => (run.stdout += t),
    stderr: (t) => (run.stderr += t),
    ...deps,
  });
  cmd.exitOverride();
  cmd.configureOutput({ writeOut: (t) => (run.stdout += t), writeErr: (t) => (run.stderr += t) });
  await cmd.parseAsync(args, { from: "user" });
  run.status = typeof process.exitCode === "number" ? process.exitCode : undefined;
  return run;
}

const C_ESCAPES: Record<string, string> = { n: "\n", t: "\t", r: "\r", s: " " };

/** An ExecStart= value read as systemd does: blanks split, quotes, C escapes, then `%%` and `$$`. */
function systemdUnquote(line: string): string[] {
  const words: string[] = [];
  for (let i = 0; i < line.length;) {
    if (line[i] === " ") {
      i++;
      continue;
    }
    let word = "";
    let quote: string | undefined;
    for (; i < line.length && (quote !== undefined || line[i] !== " "); i++) {
      const ch = line[i]!;
      if (ch === quote) quote = undefined;
      else if (quote === undefined && (ch === '"' || ch === "'")) quote = ch;
      else if (ch !== "\\") word += ch;
      else if (line[i + 1] === "x") {
        word += String.fromCharCode(parseInt(line.slice(i + 2, i + 4), 16));
        i += 3;
      } else word += C_ESCAPES[line[++i]!] ?? line[i];
    }
    expect(quote).toBeUndefined();
    words.push(unescapeDoubled(unescapeDoubled(word, "%"), "$"));
  }
  return words;
}

/** `%%` → `%` (specifiers) or `$$` → `$` (variables); any other use of the sign is a test failure. */
function unescapeDoubled(word: string, sign: string): string {
  const parts = word.split(sign + sign);
  for (const part of parts) expect(part).not.toContain(sign);
  return parts.join(sign);
}

/** The command cron runs for a crontab command field: `\%` is `%`, a bare `%` ends the command. */
function cronCommand(field: string): string {
  let out = "";
  for (let i = 0; i < field.length && field[i] !== "%"; i++) {
    if (field[i] === "\\" && i + 1 < field.length) out += field[++i] === "%" ? "%" : `\\${field[i]}`;
    else out += field[i];
  }
  return out;
}

function loggedArgv(): string[][] {
  return fs
    .readFileSync(fakeLog, "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as string[]);
}

function execStarts(service: string): string[][] {
  return service
    .split("\n")
    .filter((l) => l.startsWith("ExecStart="))
    .map((l) => systemdUnquote(l.slice("ExecStart=".length)));
}

describe("qbackup schedule with systemd", () => {
  it("writes the units under $XDG_CONFIG_HOME/systemd/user, and systemd-analyze verify accepts them", async () => {
    const r = await schedule(["nightly", "--every", "daily", "--prune", "--no-enable"]);
    expect(r.status).toBe(0);
    expect(r.calls).toEqual([]);
    const service = path.join(unitDir, "qbackup-nightly.service");
    const timer = path.join(unitDir, "qbackup-nightly.timer");
    expect(fs.readdirSync(unitDir).sort()).toEqual(["qbackup-nightly.service", "qbackup-nightly.timer"]);
    const expected = systemdUnits({
      profileName: "nightly",
      profileFile: namedProfile,
      every: "daily",
      randomDelaySec: 3600,
      prune: true,
      program: defaultProgram(),
    });
    expect(fs.readFileSync(service, "utf8")).toBe(expected.service);
    expect(fs.readFileSync(timer, "utf8")).toBe(expected.timer);
    expect(r.stderr).toContain(`qbackup: wrote ${service}\n`);
    expect(r.stderr).toContain("systemctl --user enable --now qbackup-nightly.timer");
    expect(execStarts(expected.service)[0]).toEqual([
      process.execPath,
      QBACKUP_BIN,
      "create",
      "--profile",
      namedProfile,
      "-y",
      "-q",
    ]);
    expect(fs.existsSync(QBACKUP_BIN)).toBe(true);

    const v = spawnSync("systemd-analyze", ["verify", service, timer], { encoding: "utf8" });
    expect(v.stderr).not.toMatch(/qbackup-/);
    expect(v.status).toBe(0);

    const printed = await schedule(["nightly", "--every", "daily", "--print", "--json"]);
    const summary = JSON.parse(printed.stdout) as {
      kind: string;
      units: Array<{ file: string; text: string }>;
      written: boolean;
    };
    expect(summary).toMatchObject({ kind: "systemd", written: false });
    expect(summary.units.map((u) => u.file)).toEqual([service, timer]);
    expect(summary.units[0]!.text).toBe(fs.readFileSync(service, "utf8").replace(/ExecStart=.*prune.*\n/, ""));
    const cron = await schedule(["nightly", "--every", "daily", "--cron", "--json"]);
    expect(JSON.parse(cron.stdout)).toMatchObject({ type: "summary", command: "schedule", kind: "cron" });
    const again = await schedule(["nightly", "--every", "daily", "--prune", "--no-enable"]);
    expect(again.stderr).toContain(`qbackup: unchanged ${service}\n`);
    const changed = await schedule(["nightly", "--every", "weekly", "--no-enable"]);
    expect(changed.stderr).toContain(`qbackup: updated ${timer}\n`);
    expect(fs.readFileSync(timer, "utf8")).toContain("\nOnCalendar=weekly\n");
    expect(fs.readdirSync(unitDir)).toHaveLength(2);
  });

  it("quotes an awkward profile path so systemd verifies the unit and ExecStart runs with it exactly", async () => {
    const args = [awkwardProfile, "--every", "Mon..Fri 12:30", "--random-delay", "30m", "--prune", "--no-enable"];
    const r = await schedule(args, { program: fakeProgram });
    expect(r.status).toBe(0);
    const service = path.join(unitDir, "qbackup-usb.service");
    const timer = path.join(unitDir, "qbackup-usb.timer");
    expect(fs.readFileSync(timer, "utf8")).toContain("\nOnCalendar=Mon..Fri 12:30\nRandomizedDelaySec=30m\n");
    const v = spawnSync("systemd-analyze", ["verify", service, timer], { encoding: "utf8" });
    expect(v.stderr).not.toMatch(/qbackup-/);
    expect(v.status).toBe(0);

    const lines = execStarts(fs.readFileSync(service, "utf8"));
    expect(lines).toHaveLength(2);
    for (const argv of lines) {
      expect(spawnSync(argv[0]!, argv.slice(1)).status).toBe(0);
    }
    expect(loggedArgv()).toEqual([
      ["create", "--profile", awkwardProfile, "-y", "-q"],
      ["prune", "--profile", awkwardProfile],
    ]);
  });

  it("systemd itself reads a quoted executable path back exactly", () => {
    // verify names a missing executable in its complaint: that is systemd's own unquoting at work
    const missing = path.join(root, "no such 100% ; é", "node");
    const units = systemdUnits({
      profileName: "probe",
      profileFile: awkwardProfile,
      every: "daily",
      randomDelaySec: 0,
      prune: false,
      program: [missing, QBACKUP_BIN],
    });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "qb-"));
    try {
      fs.writeFileSync(path.join(dir, units.serviceName), units.service);
      const v = spawnSync("systemd-analyze", ["verify", path.join(dir, units.serviceName)], { encoding: "utf8" });
      expect(v.status).not.toBe(0);
      expect(v.stderr).toContain(`Command ${missing} is not executable`);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("enables the timer through systemctl --user", async () => {
    const r = await schedule(["nightly", "--every", "hourly"]);
    expect(r.status).toBe(0);
    expect(r.calls).toEqual([["daemon-reload"], ["enable", "--now", "qbackup-nightly.timer"]]);
    expect(r.stderr).toContain("enabled qbackup-nightly.timer");
    expect(fs.readFileSync(path.join(unitDir, "qbackup-nightly.timer"), "utf8")).toContain("RandomizedDelaySec=10m");
  });

  it("without a user manager or systemctl, says what to run and exits 0", async () => {
    const cases: SystemctlResult[] = [
      { missing: false, status: 1, stderr: "Failed to connect to bus: No medium found\n" },
      { missing: true, status: null, stderr: "spawnSync systemctl ENOENT" },
    ];
    for (const answer of cases) {
      const r = await schedule(["nightly", "--every", "daily"], { systemctl: () => answer });
      expect(r.status).toBe(0);
      expect(r.stderr).toMatch(/^qbackup: warning: cannot reach your systemd user manager/m);
      expect(r.stderr).toContain(path.join(unitDir, "qbackup-nightly.service"));
      expect(r.stderr).toContain(
        "  systemctl --user daemon-reload\n  systemctl --user enable --now qbackup-nightly.timer\n",
      );
    }
  });

  it("fails (exit 1) when systemctl refuses for another reason", async () => {
    const answer = { missing: false, status: 1, stderr: "Failed to enable unit: Unit file is masked.\n" };
    const r = await schedule(["nightly", "--every", "daily"], { systemctl: () => answer });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^qbackup: error: systemctl --user daemon-reload failed: Failed to enable unit/m);
  });

  it("--print prints the units and writes nothing", async () => {
    const r = await schedule(["nightly", "--every", "daily", "--print"]);
    expect(r.status).toBe(0);
    expect(fs.existsSync(unitDir)).toBe(false);
    expect(r.calls).toEqual([]);
    expect(r.stdout).toContain(`# ${path.join(unitDir, "qbackup-nightly.service")}\n`);
    expect(r.stdout).toContain("[Service]\nType=oneshot\n");
    expect(r.stdout).toContain("[Timer]\nOnCalendar=daily\n");
  });
});

describe("qbackup schedule refuses", () => {
  const usage = expect.objectContaining({ code: "ERR_USAGE" });

  it("a profile without a passphrase source", async () => {
    const file = path.join(root, "interactive.yaml");
    fs.writeFileSync(file, "destination: /mnt/backup\nsources: [work=/dev/vg/work]\n");
    await expect(schedule([file, "--every", "daily", "--no-enable"])).rejects.toThrow(usage);
    await expect(schedule([file, "--every", "daily", "--cron"])).rejects.toThrow(/passphrase_command/);
    expect(fs.existsSync(unitDir)).toBe(false);
  });

  it("a missing profile, naming the file it looked for", async () => {
    const looked = path.join(env["XDG_CONFIG_HOME"]!, "qbackup", "profiles", "nope.yaml");
    await expect(schedule(["nope", "--every", "daily"])).rejects.toThrow(
      expect.objectContaining({ code: "ERR_USAGE", message: `profile nope not found (looked for ${looked})` }),
    );
  });

  it("a profile that is not YAML or not a mapping", async () => {
    const file = path.join(root, "broken.yaml");
    for (const text of ["a: [unclosed\n", "- just\n- a list\n"]) {
      fs.writeFileSync(file, text);
      await expect(schedule([file, "--every", "daily"])).rejects.toThrow(
        expect.objectContaining({ code: "ERR_PROFILE" }),
      );
    }
  });

  it("bad --every and --random-delay", async () => {
    await expect(schedule(["nightly", "--every", "daily\nx", "--no-enable"])).rejects.toThrow(usage);
    await expect(schedule(["nightly", "--every", "Mon 10:00", "--cron"])).rejects.toThrow(usage);
    await expect(schedule(["nightly", "--every", "daily", "--random-delay", "1d"])).rejects.toThrow(usage);
    await expect(schedule(["nightly", "--every", "Mon 10:00"], { systemdPresent: () => false })).rejects.toThrow(
      /systemd is not running here/,
    );
    expect(fs.existsSync(unitDir)).toBe(false);
  });
});

describe("qbackup schedule with cron", () => {
  it("prints a crontab line whose command really runs, with the exact profile path", async () => {
    const r = await schedule([awkwardProfile, "--every", "daily", "--random-delay", "24h", "--prune", "--cron"], {
      program: fakeProgram,
    });
    expect(r.status).toBe(0);
    expect(fs.existsSync(unitDir)).toBe(false);
    expect(r.stderr).toContain("crontab -e");
    const m = /^(\d+) (\d+) \* \* \* (.+)\n$/.exec(r.stdout);
    expect(m).not.toBeNull();
    expect([m![1], m![2]]).toEqual(["0", "12"]); // random() = 0.5 of a day
    const command = cronCommand(m![3]!);
    const ran = spawnSync("/bin/sh", ["-c", command], { encoding: "utf8" });
    expect(ran.stderr).toBe("");
    expect(ran.status).toBe(0);
    expect(loggedArgv()).toEqual([
      ["create", "--profile", awkwardProfile, "-y", "-q"],
      ["prune", "--profile", awkwardProfile],
    ]);

    // prune runs only after a successful create
    fs.rmSync(fakeLog);
    fs.writeFileSync(fakeFailFlag, "");
    expect(spawnSync("/bin/sh", ["-c", command]).status).toBe(3);
    expect(loggedArgv()).toEqual([["create", "--profile", awkwardProfile, "-y", "-q"]]);
  });

  it("is the fallback when systemd is not running", async () => {
    const r = await schedule(["nightly", "--every", "hourly"], { systemdPresent: () => false });
    expect(r.status).toBe(0);
    expect(r.calls).toEqual([]);
    expect(fs.existsSync(unitDir)).toBe(false);
    expect(r.stderr).toMatch(/^qbackup: systemd is not running here/m);
    const tail = `${process.execPath} ${QBACKUP_BIN} create --profile '${namedProfile}' -y -q`;
    expect(r.stdout).toBe(`5 * * * * ${tail}\n`);
  });

  it("--help shows the options and examples", async () => {
    let help = "";
    const cmd = scheduleCommand().exitOverride();
    cmd.configureOutput({ writeOut: (t) => (help += t) });
    await expect(cmd.parseAsync(["--help"], { from: "user" })).rejects.toMatchObject({
      code: "commander.helpDisplayed",
    });
    for (const text of ["--every <when>", "--random-delay <duration>", "--cron", "--no-enable", "Examples:"]) {
      expect(help).toContain(text);
    }
    expect(help).toContain("qbackup schedule laptop --every daily");
  });
});
