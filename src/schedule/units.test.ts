/** The schedule texts: exact units, systemd and sh quoting read back by their own rules, crontab lines. */
import { spawnSync } from "node:child_process";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  MAX_EVERY_LENGTH,
  cronEscape,
  crontabLine,
  defaultDelaySec,
  formatDelay,
  parseDelay,
  parseEvery,
  shQuote,
  systemdQuote,
  systemdUnits,
} from "./units.js";
import type { ScheduleSpec } from "./units.js";

const SPEC: ScheduleSpec = {
  profileName: "home",
  profileFile: "/home/user/.config/qbackup/profiles/home.yaml",
  every: "daily",
  randomDelaySec: 3600,
  prune: false,
  program: ["/usr/bin/node", "/opt/qbackup/bin/qbackup.js"],
};

const C_ESCAPES: Record<string, string> = { n: "\n", t: "\t", r: "\r", a: "\x07", b: "\b", f: "\f", v: "\v", s: " " };

/**
 * An ExecStart= value split the way systemd does: words separated by blanks, double or single
 * quotes, C escapes; then per word specifiers (`%%` only) and variables (`$$` only).
 */
function systemdUnquote(line: string): string[] {
  const words: string[] = [];
  let i = 0;
  while (i < line.length) {
    while (line[i] === " " || line[i] === "\t") i++;
    if (i >= line.length) break;
    let word = "";
    let quote: string | undefined;
    for (; i < line.length; i++) {
      const ch = line[i]!;
      if (quote === undefined && (ch === " " || ch === "\t")) break;
      if (ch === quote) quote = undefined;
      else if (quote === undefined && (ch === '"' || ch === "'")) quote = ch;
      else if (ch === "\\") {
        const next = line[++i];
        if (next === undefined) throw new Error("trailing backslash");
        if (next === "x") {
          word += String.fromCharCode(parseInt(line.slice(i + 1, i + 3), 16));
          i += 2;
        } else word += C_ESCAPES[next] ?? next;
      } else word += ch;
    }
    if (quote !== undefined) throw new Error("unterminated quote");
    words.push(expand(expand(word, "%"), "$"));
  }
  return words;
}

function expand(word: string, sigil: string): string {
  let out = "";
  for (let i = 0; i < word.length; i++) {
    if (word[i] !== sigil) out += word[i];
    else if (word[i + 1] === sigil) out += word[++i];
    else throw new Error(`unescaped ${sigil} in ${JSON.stringify(word)}`);
  }
  return out;
}

/** What vixie cron / cronie make of a command field: `\%` is `%`, a bare `%` ends the command. */
function cronCommand(field: string): string {
  let out = "";
  for (let i = 0; i < field.length; i++) {
    const ch = field[i]!;
    if (ch === "%") break;
    if (ch === "\\" && i + 1 < field.length) {
      const next = field[++i]!;
      out += next === "%" ? "%" : ch + next;
    } else out += ch;
  }
  return out;
}

/** The words /bin/sh makes of TEXT. */
function shWords(text: string): string[] {
  const r = spawnSync("/bin/sh", ["-c", `printf '%s\\0' ${text}`], { encoding: "utf8" });
  expect(r.status).toBe(0);
  return r.stdout.split("\0").slice(0, -1);
}

function execLines(service: string): string[][] {
  return service
    .split("\n")
    .filter((l) => l.startsWith("ExecStart="))
    .map((l) => systemdUnquote(l.slice("ExecStart=".length)));
}

const AWKWARD = [
  "/tmp/with space/p.yaml",
  "/tmp/100%/p.yaml",
  "/tmp/%h%%/p.yaml",
  "/tmp/$HOME/${USER}/$$/p.yaml",
  `/tmp/it's "quoted"/p.yaml`,
  "/tmp/back\\slash\\/\\%/p.yaml",
  "/tmp/tab\there/p.yaml",
  "/tmp/ünïcödé/p.yaml",
  "/tmp/semi;colon/;",
  "-leading-dash",
  "",
];

/** Strings rich in the characters quoting is about, plus anything at all. */
const awkwardString = fc.oneof(
  fc.string({ unit: fc.constantFrom("\\", "%", "$", "'", '"', " ", "\t", ";", "a", "{", "-"), maxLength: 12 }),
  fc.string({ unit: "binary", maxLength: 12 }),
);

describe("systemdUnits", () => {
  it("writes exactly this service and timer", () => {
    const u = systemdUnits(SPEC);
    expect(u.serviceName).toBe("qbackup-home.service");
    expect(u.timerName).toBe("qbackup-home.timer");
    expect(u.service).toBe(
      [
        "# Written by `qbackup schedule home`; run it again to change this schedule.",
        "# Stop it with: systemctl --user disable --now qbackup-home.timer",
        "",
        "[Unit]",
        "Description=qbackup: back up profile home",
        "",
        "[Service]",
        "Type=oneshot",
        "ExecStart=/usr/bin/node /opt/qbackup/bin/qbackup.js create --profile /home/user/.config/qbackup/profiles/home.yaml -y -q",
        "Nice=10",
        "IOSchedulingClass=idle",
        "",
      ].join("\n"),
    );
    expect(u.timer).toBe(
      [
        "# Written by `qbackup schedule home`; run it again to change this schedule.",
        "# Stop it with: systemctl --user disable --now qbackup-home.timer",
        "",
        "[Unit]",
        "Description=qbackup: schedule for profile home",
        "",
        "[Timer]",
        "OnCalendar=daily",
        "RandomizedDelaySec=1h",
        "Persistent=true",
        "",
        "[Install]",
        "WantedBy=timers.target",
        "",
      ].join("\n"),
    );
    expect(u.service + u.timer).not.toMatch(/passphrase/i);
  });

  it("with prune, a second ExecStart runs prune on the same profile", () => {
    const lines = execLines(systemdUnits({ ...SPEC, prune: true }).service);
    expect(lines).toEqual([
      [...SPEC.program, "create", "--profile", SPEC.profileFile, "-y", "-q"],
      [...SPEC.program, "prune", "--profile", SPEC.profileFile],
    ]);
  });

  it("quotes awkward paths so that systemd reads back the exact argv", () => {
    for (const file of AWKWARD) {
      const program = ["/opt/my node %i/node", `/opt/q "b" \\ 50%/bin/qbackup.js`];
      const spec = { ...SPEC, profileFile: file, program, prune: true };
      const lines = execLines(systemdUnits(spec).service);
      expect(lines[0]).toEqual([...program, "create", "--profile", file, "-y", "-q"]);
      expect(lines[1]).toEqual([...program, "prune", "--profile", file]);
    }
  });

  it("writes the timer's OnCalendar, delay and % escaping", () => {
    const t = systemdUnits({ ...SPEC, every: "Mon..Fri *-*-* 12:30", randomDelaySec: 90 }).timer;
    expect(t).toContain("\nOnCalendar=Mon..Fri *-*-* 12:30\nRandomizedDelaySec=90s\n");
    expect(systemdUnits({ ...SPEC, every: "x%y" }).timer).toContain("\nOnCalendar=x%%y\n");
    expect(systemdUnits({ ...SPEC, randomDelaySec: 0 }).timer).toContain("\nRandomizedDelaySec=0s\n");
  });

  it("refuses a profile name that cannot name a unit, and a node path systemd cannot run", () => {
    for (const profileName of ["my backup", "a%b", "", "-x", "é"]) {
      expect(() => systemdUnits({ ...SPEC, profileName })).toThrow(expect.objectContaining({ code: "ERR_USAGE" }));
    }
    for (const node of ["/opt/$x/node", "/opt/it's/node", '/opt/"q"/node', "/opt/a\\b/node", "/opt/a\tb/node"]) {
      expect(() => systemdUnits({ ...SPEC, program: [node, "q.js"] })).toThrow(
        expect.objectContaining({ code: "ERR_USAGE" }),
      );
    }
    expect(() => systemdUnits({ ...SPEC, program: ["node", "q.js"] })).toThrow(
      expect.objectContaining({ code: "ERR_INTERNAL" }),
    );
  });
});

describe("systemdQuote", () => {
  it("leaves plain words alone and escapes the rest", () => {
    expect(systemdQuote("/usr/bin/node")).toBe("/usr/bin/node");
    expect(systemdQuote("--profile")).toBe("--profile");
    expect(systemdQuote("a b")).toBe('"a b"');
    expect(systemdQuote("100%")).toBe('"100%%"');
    expect(systemdQuote("$HOME")).toBe('"$$HOME"');
    expect(systemdQuote('say "hi"')).toBe('"say \\"hi\\""');
    expect(systemdQuote("a\\b")).toBe('"a\\\\b"');
    expect(systemdQuote("it's")).toBe(`"it's"`);
    expect(systemdQuote("a\nb")).toBe('"a\\x0ab"');
    expect(systemdQuote("")).toBe('""');
  });

  it("round-trips any string through systemd's unquoting", () => {
    fc.assert(
      fc.property(fc.array(awkwardString, { minLength: 1, maxLength: 4 }), (args) => {
        const clean = args.map((a) => a.replace(/\0/g, ""));
        expect(systemdUnquote(clean.map(systemdQuote).join(" "))).toEqual(clean);
      }),
    );
  });
});

describe("shQuote and cronEscape", () => {
  it("sh reads back every awkward word exactly", () => {
    expect(shWords(AWKWARD.map(shQuote).join(" "))).toEqual(AWKWARD);
    expect(shQuote("it's")).toBe(`'it'\\''s'`);
    expect(shQuote("/plain/path.yaml")).toBe("/plain/path.yaml");
  });

  it("sh reads back random words, also after cron's % handling", () => {
    fc.assert(
      fc.property(fc.array(awkwardString, { minLength: 1, maxLength: 3 }), (args) => {
        const clean = args.map((a) => a.replace(/[\0\n]/g, ""));
        const text = clean.map(shQuote).join(" ");
        expect(shWords(text)).toEqual(clean);
        expect(shWords(cronCommand(cronEscape(text)))).toEqual(clean);
      }),
      { numRuns: 60 },
    );
  });

  it("never leaves a % cron would take as the end of the command", () => {
    for (const word of ["a%b", "a\\%b", "a\\\\%b", "%%", "\\%\\%", "x'%'\\"]) {
      expect(shWords(cronCommand(cronEscape(shQuote(word))))).toEqual([word]);
    }
    expect(cronEscape("'x\\%'")).toBe("'x\\''\\%'");
  });
});

describe("crontabLine", () => {
  const seeded = (value: number) => () => value;

  it("fixes the minute (and hour) from the random number within the delay", () => {
    const cmd =
      "/usr/bin/node /opt/qbackup/bin/qbackup.js create --profile /home/user/.config/qbackup/profiles/home.yaml -y -q";
    expect(crontabLine(SPEC, seeded(0))).toBe(`0 0 * * * ${cmd}`);
    expect(crontabLine(SPEC, seeded(0.999999))).toBe(`59 0 * * * ${cmd}`);
    expect(crontabLine({ ...SPEC, randomDelaySec: 24 * 3600 }, seeded(0.5))).toBe(`0 12 * * * ${cmd}`);
    expect(crontabLine({ ...SPEC, randomDelaySec: 7 * 24 * 3600 }, seeded(0.75))).toBe(`0 18 * * * ${cmd}`);
    expect(crontabLine({ ...SPEC, every: "hourly", randomDelaySec: 600 }, seeded(0.55))).toBe(`5 * * * * ${cmd}`);
    expect(crontabLine({ ...SPEC, every: "hourly", randomDelaySec: 7200 }, seeded(0.5))).toBe(`30 * * * * ${cmd}`);
    expect(crontabLine({ ...SPEC, every: "weekly", randomDelaySec: 7200 }, seeded(0.5))).toBe(`0 1 * * 1 ${cmd}`);
    expect(crontabLine({ ...SPEC, every: "monthly", randomDelaySec: 0 }, seeded(0.9))).toBe(`0 0 1 * * ${cmd}`);
  });

  it("runs prune only after create succeeded, and escapes % for cron", () => {
    const spec = { ...SPEC, profileFile: "/tmp/50% off/p.yaml", prune: true };
    const line = crontabLine(spec, seeded(0));
    expect(line).toBe(
      "0 0 * * * /usr/bin/node /opt/qbackup/bin/qbackup.js create --profile '/tmp/50\\% off/p.yaml' -y -q && " +
        "/usr/bin/node /opt/qbackup/bin/qbackup.js prune --profile '/tmp/50\\% off/p.yaml'",
    );
  });

  it("refuses calendar expressions and control characters", () => {
    expect(() => crontabLine({ ...SPEC, every: "Mon 10:00" }, Math.random)).toThrow(
      expect.objectContaining({ code: "ERR_USAGE" }),
    );
    expect(() => crontabLine({ ...SPEC, profileFile: "/tmp/a\nb.yaml" }, Math.random)).toThrow(
      expect.objectContaining({ code: "ERR_USAGE" }),
    );
  });
});

describe("parseEvery and parseDelay", () => {
  it("accepts the four words always and OnCalendar expressions without cron", () => {
    for (const word of ["hourly", "daily", "weekly", "monthly"]) {
      expect(parseEvery(word, true)).toBe(word);
      expect(parseEvery(` ${word} `, false)).toBe(word);
    }
    expect(parseEvery("*-*-* 02:30:00", false)).toBe("*-*-* 02:30:00");
    expect(parseEvery("Mon..Fri 12:00", false)).toBe("Mon..Fri 12:00");
  });

  it("rejects bad --every", () => {
    const bad = ["", "   ", "daily\nExecStart=/bin/sh", "x".repeat(MAX_EVERY_LENGTH + 1), "tägl", "daily\\", "a\tb"];
    for (const text of bad) {
      expect(() => parseEvery(text, false)).toThrow(expect.objectContaining({ code: "ERR_USAGE" }));
    }
    for (const text of ["Daily", "*-*-* 02:30", "yearly", "minutely"]) {
      expect(() => parseEvery(text, true)).toThrow(expect.objectContaining({ code: "ERR_USAGE" }));
    }
    expect(parseEvery("x".repeat(MAX_EVERY_LENGTH), false)).toHaveLength(MAX_EVERY_LENGTH);
  });

  it("reads durations in s, m, h", () => {
    expect(parseDelay("30m")).toBe(1800);
    expect(parseDelay("2h")).toBe(7200);
    expect(parseDelay("90s")).toBe(90);
    expect(parseDelay("45")).toBe(45);
    expect(parseDelay("0")).toBe(0);
    expect(parseDelay("168h")).toBe(604800);
    for (const text of ["", "1d", "-5m", "1.5h", "abc", "10 m", "169h", "m", "99999999s"]) {
      expect(() => parseDelay(text)).toThrow(expect.objectContaining({ code: "ERR_USAGE" }));
    }
  });

  it("defaults to 1h, 10m when hourly, and writes delays back in whole units", () => {
    expect(defaultDelaySec("hourly")).toBe(600);
    expect(defaultDelaySec("daily")).toBe(3600);
    expect(defaultDelaySec("*-*-* 03:00")).toBe(3600);
    expect([3600, 600, 90, 0, 7200, 5400].map(formatDelay)).toEqual(["1h", "10m", "90s", "0s", "2h", "90m"]);
  });
});
