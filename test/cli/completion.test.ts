/**
 * `qbackup completion`: the generated scripts are loaded into the REAL bash, zsh and fish and asked
 * for completions, in a sandbox (HOME and XDG_CONFIG_HOME point into a temp dir). zsh has no
 * non-interactive completion entry point, so a driver runs an interactive zsh on a pseudo-terminal
 * (zsh/zpty), types each line plus TAB, and records what compadd was given.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Command, Option } from "commander";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { SHELLS, completionCommand, completionScript } from "../../src/cli/completion.js";
import type { Shell } from "../../src/cli/completion.js";
import { buildProgram } from "../../src/cli/main.js";
import { ALLOWED_FILTER_PROGRAMS } from "../../src/runtime/filters.js";

const SHELL_TIMEOUT_MS = 60_000;
const PROFILES = ["daily", "offsite"];
const EVERY_CHOICES = ["hourly", "daily", "weekly"];

/** buildProgram(), with the completion command (if the lead has not registered it yet) and a probe
 *  command that has what the real tree may not have yet: choices, --profile, a profile argument, a hidden option. */
function testProgram(): Command {
  const program = buildProgram();
  if (!program.commands.some((c) => c.name() === "completion")) program.addCommand(completionCommand(() => program));
  program.addCommand(
    new Command("probe")
      .description("test only")
      .argument("<profile>", "a profile name or file")
      .addOption(new Option("--every <when>", "how often").choices(EVERY_CHOICES))
      .option("--profile <name>", "a profile name or file")
      .addOption(new Option("--secret-knob", "never offered").hideHelp()),
  );
  return program;
}

interface Node {
  path: string[];
  cmd: Command;
}

/** Every command of the tree with its path, as commander shows them in --help (help command included). */
function walk(cmd: Command, at: string[] = []): Node[] {
  const help = cmd.createHelp();
  return [{ path: at, cmd }, ...help.visibleCommands(cmd).flatMap((c) => walk(c, [...at, c.name()]))];
}

function flagsOf(cmd: Command): string[] {
  return cmd
    .createHelp()
    .visibleOptions(cmd)
    .flatMap((o) => [o.short, o.long].filter((n): n is string => n !== undefined));
}

let tmp: string;
let work: string;
let env: NodeJS.ProcessEnv;
let program: Command;
const scripts = {} as Record<Shell, string>;
let zfunc: string;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "qb-"));
  const home = path.join(tmp, "home");
  const xdg = path.join(tmp, "xdg");
  work = path.join(tmp, "work");
  const profiles = path.join(xdg, "qbackup", "profiles");
  fs.mkdirSync(home);
  fs.mkdirSync(profiles, { recursive: true });
  for (const p of PROFILES) fs.writeFileSync(path.join(profiles, `${p}.yaml`), "destination: /mnt\n");
  fs.writeFileSync(path.join(profiles, "notes.txt"), "not a profile\n");
  fs.mkdirSync(path.join(work, "alpha-dir"), { recursive: true });
  fs.writeFileSync(path.join(work, "alpha.img"), "");
  fs.writeFileSync(path.join(work, "beta.img"), "");
  env = { PATH: process.env["PATH"], HOME: home, XDG_CONFIG_HOME: xdg, LANG: "C.UTF-8", TERM: "xterm" };

  program = testProgram();
  zfunc = path.join(tmp, "zfunc");
  fs.mkdirSync(zfunc);
  for (const shell of SHELLS) {
    scripts[shell] = path.join(
      shell === "zsh" ? zfunc : tmp,
      { bash: "qbackup.bash", zsh: "_qbackup", fish: "qbackup.fish" }[shell],
    );
    fs.writeFileSync(scripts[shell], completionScript(program, shell));
  }
});

afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

function run(cmd: string, args: string[], extraEnv: NodeJS.ProcessEnv = {}): string {
  const r = spawnSync(cmd, args, {
    cwd: work,
    env: { ...env, ...extraEnv },
    encoding: "utf8",
    timeout: SHELL_TIMEOUT_MS,
  });
  expect(r.error).toBeUndefined();
  expect(r.stderr).toBe("");
  expect(r.status).toBe(0);
  return r.stdout;
}

// ---------------------------------------------------------------------------------------------
// bash: call the completion function as readline would, with COMP_WORDS / COMP_CWORD set

const BASH_PROBE = `source "$1"; shift
COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=\${#COMP_LINE}
_qbackup
printf '%s\\n' "\${COMPREPLY[@]}"`;

/** Candidates for the words (the last one is the word under the cursor, possibly ""). */
function bash(words: string[], extraEnv: NodeJS.ProcessEnv = {}): string[] {
  const out = run("bash", ["--norc", "--noprofile", "-c", BASH_PROBE, "bash", scripts.bash, ...words], extraEnv);
  return out.split("\n").filter((l) => l !== "");
}

// ---------------------------------------------------------------------------------------------
// fish: `complete -C LINE` prints "candidate<TAB>description" lines

/** The candidates printed for each of `count` lines, each block ended by `<done>`; `clean` turns a line into one. */
function candidateBlocks(out: string, count: number, clean: (line: string) => string): string[][] {
  return out
    .split("<done>\n")
    .slice(0, count)
    .map((block) =>
      block
        .split("\n")
        .filter((l) => l !== "")
        .map(clean),
    );
}

function fishMany(lines: string[]): string[][] {
  const out = run("fish", [
    "--no-config",
    "-c",
    "source $argv[1]; for line in $argv[2..-1]; complete -C $line; echo '<done>'; end",
    scripts.fish,
    ...lines,
  ]);
  return candidateBlocks(out, lines.length, (l) => l.split("\t")[0]!);
}

const fish = (line: string): string[] => fishMany([line])[0]!;

// ---------------------------------------------------------------------------------------------
// zsh: an interactive zsh on a pseudo-terminal, compinit with our _qbackup on $fpath; TAB runs a widget
// that completes, then marks the end of the candidates compadd received and clears the line.
// No automatic listing: a list taller than the pty would make zsh ask "do you wish to see all N
// possibilities?", and that question would eat the first letter of the next line typed.

const ZSH_DRIVER = `# zsh -f driver.zsh FPATH_DIR OUT_FILE LINE...
zmodload zsh/zpty || exit 3
dir=$1 out=$2
shift 2
zpty z zsh -f -i || exit 4
zpty -w z "PS1='%% '; fpath=(\${(q)dir} \\$fpath); autoload -Uz compinit; compinit -u -D; unsetopt auto_list; __out=\${(q)out}"
zpty -w z 'compadd() { if (( \${@[(I)-[OAD]*]} )); then builtin compadd "$@"; return; fi; local -a __m; builtin compadd -O __m "$@"; (( $#__m )) && print -rl -- $__m >> $__out; builtin compadd "$@"; }'
zpty -w z '__probe() { zle complete-word; print -r -- "<done>" >> $__out; BUFFER=; CURSOR=0; }; zle -N __probe; bindkey "^I" __probe'
n=0
for line in "$@"; do
  n=$((n + 1))
  zpty -w -n z "$line"$'\\t'
  for i in {1..600}; do
    while zpty -r -t z chunk; do :; done
    [[ -f $out ]] && (( $(grep -c '^<done>$' $out) >= n )) && break
    sleep 0.05
  done
done
zpty -d z
(( $(grep -c '^<done>$' $out) == n )) || exit 5
`;

let zshRuns = 0;

function zshMany(lines: string[]): string[][] {
  const driver = path.join(tmp, "driver.zsh");
  fs.writeFileSync(driver, ZSH_DRIVER);
  const out = path.join(tmp, `zsh-out-${zshRuns++}`);
  run("zsh", ["-f", driver, zfunc, out, ...lines]);
  return candidateBlocks(fs.readFileSync(out, "utf8"), lines.length, (l) => l.replace(/\\(.)/g, "$1"));
}

// ---------------------------------------------------------------------------------------------

describe("the generated scripts", () => {
  it.each(SHELLS)("%s: says what generated it and for which version", (shell) => {
    const text = completionScript(program, shell);
    expect(text).toContain(`Generated by \`qbackup completion ${shell}\` for qbackup version ${program.version()}.`);
    if (shell === "zsh") expect(text.split("\n")[0]).toBe("#compdef qbackup");
  });

  it("pass each shell's syntax check", () => {
    run("bash", ["-n", scripts.bash]);
    run("zsh", ["-n", scripts.zsh]);
    run("fish", ["--no-config", "-n", scripts.fish]);
  });

  it.each(SHELLS)("%s: name every visible option of every command, and no hidden one", (shell) => {
    const text = completionScript(program, shell);
    for (const { cmd } of walk(program)) {
      for (const flag of flagsOf(cmd)) {
        const spelled =
          shell === "fish" ? (flag.startsWith("--") ? `-l ${flag.slice(2)}` : `-s ${flag.slice(1)}`) : flag;
        expect(text, `${cmd.name()} ${flag}`).toContain(spelled);
      }
    }
    expect(text).not.toContain("secret-knob");
  });

  it("read the compression filter names from src/runtime/filters.ts", () => {
    for (const shell of SHELLS) expect(completionScript(program, shell)).toContain(ALLOWED_FILTER_PROGRAMS.join(" "));
  });
});

describe("bash", () => {
  it("completes the subcommands, then --help and --version", () => {
    expect(bash(["qbackup", "cr"])).toEqual(["create"]);
    const all = bash(["qbackup", ""]);
    expect(all).toEqual(
      program
        .createHelp()
        .visibleCommands(program)
        .map((c) => c.name()),
    );
    expect(bash(["qbackup", "--"]).sort()).toEqual(["--help", "--version"]);
  });

  it("completes exactly the options of each command", () => {
    for (const { path: at, cmd } of walk(program)) {
      const offered = bash(["qbackup", ...at, "-"]);
      expect(offered.sort(), at.join(" ")).toEqual(flagsOf(cmd).sort());
    }
    expect(bash(["qbackup", "restore", "--verify-"])).toEqual(["--verify-only"]);
    expect(bash(["qbackup", "agent", "setup-key", "--r"])).toEqual(["--root-base"]);
  });

  it("completes filter names after -Z, --compress-filter and --compression-filter (all spellings)", () => {
    expect(bash(["qbackup", "create", "-Z", ""])).toEqual([...ALLOWED_FILTER_PROGRAMS]);
    expect(bash(["qbackup", "create", "--compress-filter", "z"])).toEqual(["zstd", "zstdmt"]);
    // readline splits "--opt=value" at "=" (COMP_WORDBREAKS): the words are --opt, =, value
    expect(bash(["qbackup", "list", "--compression-filter", "=", ""])).toEqual([...ALLOWED_FILTER_PROGRAMS]);
    expect(bash(["qbackup", "list", "--compression-filter", "="])).toEqual([...ALLOWED_FILTER_PROGRAMS]);
    expect(bash(["qbackup", "restore", "--compression-filter", "=", "x"])).toEqual(["xz"]);
    // and without "=" in COMP_WORDBREAKS it is one word
    expect(bash(["qbackup", "verify", "--compression-filter=b"])).toEqual(["--compression-filter=bzip2"]);
  });

  it("completes choices, and profile names from $XDG_CONFIG_HOME (else ~/.config) at completion time", () => {
    expect(bash(["qbackup", "probe", "--every", ""])).toEqual(EVERY_CHOICES);
    for (const { path: at, cmd } of walk(program).filter((n) => flagsOf(n.cmd).includes("--profile"))) {
      const offered = bash(["qbackup", ...at, "--profile", ""]);
      expect(offered, cmd.name()).toEqual(expect.arrayContaining([...PROFILES, "alpha-dir", "alpha.img"]));
      expect(offered).not.toContain("notes");
    }
    expect(bash(["qbackup", "probe", "--profile", "off"])).toEqual(["offsite"]);
    expect(bash(["qbackup", "probe", "d"])).toEqual(["daily"]);
    // a profile added now is offered now: nothing is baked into the script
    const home = path.join(tmp, "home2");
    fs.mkdirSync(path.join(home, ".config", "qbackup", "profiles"), { recursive: true });
    fs.writeFileSync(path.join(home, ".config", "qbackup", "profiles", "laptop.yaml"), "");
    expect(bash(["qbackup", "probe", "--profile", "l"], { HOME: home, XDG_CONFIG_HOME: "" })).toEqual(["laptop"]);
  });

  it("completes files for positional arguments and file options, nothing for free text", () => {
    expect(bash(["qbackup", "create", "al"]).sort()).toEqual(["alpha-dir", "alpha.img"]);
    expect(bash(["qbackup", "restore", "b.bin", "/tmp/x", "be"])).toEqual(["beta.img"]);
    expect(bash(["qbackup", "create", "-p", "al"]).sort()).toEqual(["alpha-dir", "alpha.img"]);
    expect(bash(["qbackup", "agent", "--root", "a"])).toEqual(["alpha-dir"]);
    expect(bash(["qbackup", "create", "--chunk-size", ""])).toEqual([]);
    // the value of --dest-command is not a positional: the next word is still DEST
    expect(bash(["qbackup", "create", "--dest-command", "cat", "al"]).sort()).toEqual(["alpha-dir", "alpha.img"]);
    expect(bash(["qbackup", "create", "--", "-"])).toEqual([]);
  });

  it("completes the shells for `completion` and the commands for `help`", () => {
    expect(bash(["qbackup", "completion", ""])).toEqual(["bash", "zsh", "fish"]);
    expect(bash(["qbackup", "help", "re"])).toEqual(["restore", "recovery-sheet"]);
    expect(bash(["qbackup", "agent", ""])).toEqual(["setup-key"]);
  });
});

describe("fish", () => {
  it("completes the subcommands with their descriptions, then --help and --version", () => {
    const out = run("fish", ["--no-config", "-c", "source $argv[1]; complete -C 'qbackup cr'", scripts.fish]);
    const create = program.commands.find((c) => c.name() === "create")!;
    expect(out).toBe(`create\t${create.description()}\n`);
    expect(fish("qbackup ").sort()).toEqual(
      program
        .createHelp()
        .visibleCommands(program)
        .map((c) => c.name())
        .sort(),
    );
    expect(fish("qbackup --").sort()).toEqual(["--help", "--version"]);
  });

  it("completes every option of each command", () => {
    // (for a command without options fish falls back to fuzzy matches of "-", e.g. recovery-sheet after help)
    const nodes = walk(program).filter((n) => flagsOf(n.cmd).length > 0);
    const offered = fishMany(nodes.map((n) => `qbackup ${[...n.path, "-"].join(" ")}`));
    nodes.forEach((n, i) => expect(offered[i]!.sort(), n.path.join(" ")).toEqual(flagsOf(n.cmd).sort()));
    expect(fish("qbackup restore --verify-")).toEqual(["--verify-only"]);
  });

  it("completes filter names, choices and profile names", () => {
    expect(fish("qbackup create -Z ").sort()).toEqual([...ALLOWED_FILTER_PROGRAMS].sort());
    expect(fish("qbackup list --compression-filter=zs")).toEqual([
      "--compression-filter=zstd",
      "--compression-filter=zstdmt",
    ]);
    expect(fish("qbackup probe --every ").sort()).toEqual([...EVERY_CHOICES].sort());
    for (const { path: at } of walk(program).filter((n) => flagsOf(n.cmd).includes("--profile"))) {
      const offered = fish(`qbackup ${at.join(" ")} --profile `);
      expect(offered).toEqual(expect.arrayContaining([...PROFILES, "alpha-dir/", "alpha.img"]));
      expect(offered).not.toContain("notes");
    }
    expect(fish("qbackup probe o")).toEqual(["offsite"]);
  });

  it("completes files for positional arguments and file options, nothing for free text", () => {
    expect(fish("qbackup create al").sort()).toEqual(["alpha-dir/", "alpha.img"]);
    expect(fish("qbackup restore b.bin /tmp/x be")).toEqual(["beta.img"]);
    expect(fish("qbackup create -p al").sort()).toEqual(["alpha-dir/", "alpha.img"]);
    expect(fish("qbackup create --chunk-size ")).toEqual([]);
    expect(fish("qbackup create --dest-command cat al").sort()).toEqual(["alpha-dir/", "alpha.img"]);
    expect(fish("qbackup completion ").sort()).toEqual(["bash", "fish", "zsh"]);
    expect(fish("qbackup help re").sort()).toEqual(["recovery-sheet", "restore"]);
    expect(fish("qbackup agent ")).toEqual(["setup-key"]);
  });
});

describe("zsh (interactive, on a pseudo-terminal)", () => {
  it("completes qbackup cr<TAB> to create, and the subcommands", () => {
    const [cr, all] = zshMany(["qbackup cr", "qbackup "]);
    expect(cr).toEqual(["create"]);
    expect(all!.sort()).toEqual(
      program
        .createHelp()
        .visibleCommands(program)
        .map((c) => c.name())
        .sort(),
    );
  });

  it("completes every option of each command", () => {
    const nodes = walk(program).filter((n) => flagsOf(n.cmd).length > 0);
    const offered = zshMany(nodes.map((n) => `qbackup ${[...n.path, "-"].join(" ")}`));
    nodes.forEach((n, i) => expect(offered[i]!.sort(), n.path.join(" ")).toEqual(flagsOf(n.cmd).sort()));
  });

  it("completes option values, choices, profile names and files", () => {
    const lines = [
      "qbackup restore --verify-",
      "qbackup create -Z ",
      "qbackup list --compression-filter=zs",
      "qbackup probe --every ",
      "qbackup probe --profile ",
      "qbackup probe o",
      "qbackup create al",
      "qbackup create /mnt al",
      "qbackup create /mnt alpha.img be",
      "qbackup list al",
      "qbackup create -p al",
      "qbackup completion ",
      "qbackup help re",
      "qbackup agent ",
    ];
    const got = Object.fromEntries(zshMany(lines).map((c, i) => [lines[i]!, c.sort()]));
    expect(got).toEqual({
      "qbackup restore --verify-": ["--verify-only"],
      "qbackup create -Z ": [...ALLOWED_FILTER_PROGRAMS].sort(),
      "qbackup list --compression-filter=zs": ["zstd", "zstdmt"],
      "qbackup probe --every ": [...EVERY_CHOICES].sort(),
      "qbackup probe --profile ": ["alpha-dir", "alpha.img", "beta.img", ...PROFILES].sort(),
      "qbackup probe o": ["offsite"],
      // [dest] [source...]: each word is offered its files once, not once per spec that could apply
      "qbackup create al": ["alpha-dir", "alpha.img"],
      "qbackup create /mnt al": ["alpha-dir", "alpha.img"],
      "qbackup create /mnt alpha.img be": ["beta.img"],
      "qbackup list al": ["alpha-dir", "alpha.img"],
      "qbackup create -p al": ["alpha-dir", "alpha.img"],
      "qbackup completion ": ["bash", "fish", "zsh"],
      "qbackup help re": ["recovery-sheet", "restore"],
      "qbackup agent ": ["setup-key"],
    });
  });
});

describe("qbackup completion", () => {
  it("prints the script for the shell named, from the program it is given", async () => {
    let printed = "";
    const write = vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
      printed += String(chunk);
      return true;
    });
    const before = process.exitCode;
    try {
      await completionCommand(() => program).parseAsync(["fish"], { from: "user" });
    } finally {
      write.mockRestore();
      process.exitCode = before;
    }
    expect(printed).toBe(completionScript(program, "fish"));
  });

  it("refuses another shell, and explains how to install in --help", () => {
    let out = "";
    let err = "";
    const make = () =>
      completionCommand(() => program)
        .exitOverride()
        .configureOutput({ writeOut: (s) => (out += s), writeErr: (s) => (err += s) });
    expect(() => make().parse(["tcsh"], { from: "user" })).toThrow(
      expect.objectContaining({ code: "commander.invalidArgument" }),
    );
    expect(err).toContain("bash, zsh, fish");
    expect(() => make().parse(["--help"], { from: "user" })).toThrow(
      expect.objectContaining({ code: "commander.helpDisplayed" }),
    );
    expect(out).toContain('eval "$(qbackup completion bash)"');
    expect(out).toContain("~/.local/share/bash-completion/completions/qbackup");
    expect(out).toContain("_qbackup");
    expect(out).toContain("$fpath");
    expect(out).toContain("~/.config/fish/completions/qbackup.fish");
    expect(out).toContain("Examples:");
  });
});
