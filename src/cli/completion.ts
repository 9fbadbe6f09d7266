/**
 * `qbackup completion bash|zsh|fish`: prints a shell completion script GENERATED from the commander
 * program tree (commands, options, their values and positional arguments), so that what is added to
 * the program later is completed without anyone keeping a list. Written by hand because commander has
 * no completion support and the scripts should stay short and readable, with no runtime dependency.
 */
import { Argument, Command } from "commander";
import type { Option } from "commander";
import * as path from "node:path";
import { profileDirectory } from "../config/profile-path.js";
import { ALLOWED_FILTER_PROGRAMS } from "../runtime/filters.js";
import { EXIT_OK } from "./exit.js";

export type Shell = "bash" | "zsh" | "fish";
export const SHELLS: readonly Shell[] = ["bash", "zsh", "fish"];

/** How the value of an option or a positional argument is completed. */
export type ValueKind =
  | { kind: "file"; name: string }
  | { kind: "dir"; name: string }
  | { kind: "profile"; name: string }
  | { kind: "words"; name: string; words: readonly string[] }
  /** free text: nothing to offer */
  | { kind: "text"; name: string };

export interface OptionModel {
  short?: string;
  long?: string;
  description: string;
  /** undefined for an option that takes no value */
  value?: ValueKind;
  repeatable: boolean;
}

export interface ArgumentModel {
  value: ValueKind;
  optional: boolean;
  variadic: boolean;
}

export interface CommandModel {
  /** the subcommand names from the program down to this command ([] for the program itself) */
  path: readonly string[];
  name: string;
  description: string;
  options: readonly OptionModel[];
  /** positional arguments; a command with subcommands takes the subcommand name first instead */
  args: readonly ArgumentModel[];
  subcommands: readonly CommandModel[];
}

/** Options whose value is the name of a compression program. */
const FILTER_OPTIONS: ReadonlySet<string> = new Set(["--compress-filter", "--compression-filter"]);
/** The option (and positional argument name) that takes a profile NAME or a profile file. */
const PROFILE_OPTION = "--profile";
const PROFILE_ARGUMENT = /^profile/;
/** Where profiles live under the XDG config directory, as profile-path.ts has it ("qbackup/profiles"). */
const XDG_PROBE = "/xdg";
const PROFILES_UNDER_CONFIG = path.posix.relative(XDG_PROBE, profileDirectory({ XDG_CONFIG_HOME: XDG_PROBE }));
const PROFILE_SUFFIX = ".yaml";
/** Value names (`<file>`, `<path>`…) and option-name endings that mean a file or a directory. */
const FILE_VALUE_NAMES: ReadonlySet<string> = new Set(["file", "files", "path", "paths"]);
const DIR_VALUE_NAMES: ReadonlySet<string> = new Set(["dir", "dirs", "directory", "directories"]);
const FILE_OPTION_SUFFIX = /-(file|path)$/;
const DIR_OPTION_SUFFIX = /-dir$/;
/** Words any of the three shells reads as themselves, unquoted. */
const PLAIN_WORD = /^[A-Za-z0-9_.,/+@%=-]+$/;
const OPTION_NAME = /^--?[A-Za-z0-9][A-Za-z0-9_-]*$/;

// ---------------------------------------------------------------------------------------------
// The model: what the program tree says, in the terms completion needs

function firstLine(text: string): string {
  return text.split("\n")[0]!.trim();
}

/** `-p, --passphrase-file <file>` → `file` */
function valueNameOf(flags: string): string {
  const match = /[<[]([^>\]]*)[>\]]/.exec(flags);
  const name = match?.[1]?.replace(/\.\.\.$/, "") ?? "";
  return name === "" ? "value" : name;
}

function optionValue(option: Option): ValueKind | undefined {
  if (!option.required && !option.optional) return undefined;
  const name = valueNameOf(option.flags);
  const long = option.long ?? "";
  if (option.argChoices !== undefined && option.argChoices.length > 0)
    return { kind: "words", name, words: option.argChoices };
  if (FILTER_OPTIONS.has(long)) return { kind: "words", name, words: ALLOWED_FILTER_PROGRAMS };
  if (long === PROFILE_OPTION) return { kind: "profile", name };
  if (DIR_VALUE_NAMES.has(name) || DIR_OPTION_SUFFIX.test(long)) return { kind: "dir", name };
  if (FILE_VALUE_NAMES.has(name) || FILE_OPTION_SUFFIX.test(long)) return { kind: "file", name };
  return { kind: "text", name };
}

function argumentValue(argument: Argument): ValueKind {
  const name = argument.name();
  if (argument.argChoices !== undefined && argument.argChoices.length > 0)
    return { kind: "words", name, words: argument.argChoices };
  if (PROFILE_ARGUMENT.test(name)) return { kind: "profile", name };
  return { kind: "file", name };
}

function commandModel(cmd: Command, path: readonly string[], siblings: readonly string[]): CommandModel {
  const help = cmd.createHelp();
  const children = help.visibleCommands(cmd);
  const childNames = children.map((c) => c.name());
  // commander's implicit `help [command]` is not in cmd.commands; its argument names a sibling
  const isImplicitHelp = (c: Command) => !cmd.commands.includes(c);
  const helpTopics = childNames.filter((n) => n !== "help");
  const options = help.visibleOptions(cmd).map((o): OptionModel => {
    const value = optionValue(o);
    return {
      ...(o.short === undefined ? {} : { short: o.short }),
      ...(o.long === undefined ? {} : { long: o.long }),
      description: firstLine(o.description),
      ...(value === undefined ? {} : { value }),
      // a variadic option, or one that collects its values into an array (like restore -x)
      repeatable: o.variadic || Array.isArray(o.defaultValue),
    };
  });
  const args = cmd.registeredArguments.map((a): ArgumentModel => ({
    value: siblings.length > 0 ? { kind: "words", name: "command", words: siblings } : argumentValue(a),
    optional: !a.required,
    variadic: a.variadic,
  }));
  return {
    path,
    name: cmd.name(),
    description: firstLine(cmd.summary() || cmd.description()),
    options,
    args,
    subcommands: children.map((c) => commandModel(c, [...path, c.name()], isImplicitHelp(c) ? helpTopics : [])),
  };
}

/** The completion model of `program`: every visible command, option and argument. */
export function completionModel(program: Command): CommandModel {
  return commandModel(program, [], []);
}

function allCommands(model: CommandModel): CommandModel[] {
  return [model, ...model.subcommands.flatMap(allCommands)];
}

function optionNames(o: OptionModel): string[] {
  return [o.short, o.long].filter((n): n is string => n !== undefined);
}

/** The positional arguments to complete: none where the first word is a subcommand; `rest` for the variadic last. */
function argumentSlots(cmd: CommandModel): { index: number; value: ValueKind; rest: boolean }[] {
  if (cmd.subcommands.length > 0) return [];
  return cmd.args.map((a, index) => ({ index, value: a.value, rest: a.variadic }));
}

/** The comment every script starts with (after zsh's #compdef line). */
function header(shell: Shell, program: Command): string[] {
  const name = program.name();
  const version = program.version() ?? "unknown";
  return [
    `# ${shell} completion for ${name}`,
    `# Generated by \`${name} completion ${shell}\` for ${name} version ${version}.`,
    `# Do not edit: run that command again after upgrading ${name} (\`${name} completion --help\` says how to install).`,
  ];
}

function identifier(text: string): string {
  return text.replace(/[^A-Za-z0-9_]/g, "_");
}

// ---------------------------------------------------------------------------------------------
// bash

/** Single-quoted for bash and zsh. */
function sq(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

/** A word for bash and zsh: as is when plain, else single-quoted. */
function shQuote(text: string): string {
  return PLAIN_WORD.test(text) ? text : sq(text);
}

/** The REPLY array a bash lookup function sets for a value kind: (file), (words gzip xz), … */
function bashValue(value: ValueKind): string {
  return value.kind === "words" ? `(words ${value.words.map(shQuote).join(" ")})` : `(${value.kind})`;
}

function bashScript(program: Command, model: CommandModel): string {
  const fn = `_${identifier(model.name)}`;
  const commands = allCommands(model);
  // case patterns: the command path ('' for the program), or the path and a word after a space
  const pathCase = (c: CommandModel) => (c.path.length === 0 ? "''" : shQuote(c.path.join(" ")));
  const wordCase = (c: CommandModel, word: string) => shQuote(`${c.path.join(" ")} ${word}`);
  const caseLines = (rows: string[]) => [...rows.map((r) => `    ${r}`), "    *) REPLY=() ;;", "  esac", "}"];
  const words = (list: readonly string[]) => list.map(shQuote).join(" ");

  const subcommandRows = commands
    .filter((c) => c.subcommands.length > 0)
    .map((c) => `${pathCase(c)}) REPLY=(${words(c.subcommands.map((s) => s.name))}) ;;`);
  const optionRows = commands.map((c) => `${pathCase(c)}) REPLY=(${words(c.options.flatMap(optionNames))}) ;;`);
  const valueRows = commands.flatMap((c) =>
    c.options.flatMap((o) => {
      if (o.value === undefined) return [];
      const patterns = optionNames(o).map((n) => wordCase(c, n));
      return [`${patterns.join(" | ")}) REPLY=${bashValue(o.value)} ;;`];
    }),
  );
  const argumentRows = commands.flatMap((c) =>
    argumentSlots(c).map((s) => {
      const pattern = s.rest ? `${shQuote(`${c.path.join(" ")} `)}[0-9]*` : wordCase(c, String(s.index));
      return `${pattern}) REPLY=${bashValue(s.value)} ;;`;
    }),
  );

  return [
    ...header("bash", program),
    "",
    `# ${fn}_subcommands PATH: the subcommands of command PATH ('' for ${model.name} itself), in REPLY`,
    `${fn}_subcommands() {`,
    "  case $1 in",
    ...caseLines(subcommandRows),
    "",
    `# ${fn}_options PATH: the options of command PATH, in REPLY`,
    `${fn}_options() {`,
    "  case $1 in",
    ...caseLines(optionRows),
    "",
    `# ${fn}_option_value PATH OPTION: what the value of OPTION is, in REPLY; empty if it takes none`,
    "# (file, dir, profile: a profile name or file, text: anything, words WORD...: one of the words)",
    `${fn}_option_value() {`,
    '  case "$1 $2" in',
    ...caseLines(valueRows),
    "",
    `# ${fn}_argument PATH N: what positional argument N (from 0) of command PATH is, in REPLY`,
    `${fn}_argument() {`,
    '  case "$1 $2" in',
    ...caseLines(argumentRows),
    "",
    `# ${fn}_profiles: the profile names (*${PROFILE_SUFFIX} in \${XDG_CONFIG_HOME:-~/.config}/${PROFILES_UNDER_CONFIG}/) starting with $cur`,
    `${fn}_profiles() {`,
    "  local dir=${XDG_CONFIG_HOME:-} file",
    "  [[ $dir == /* ]] || dir=$HOME/.config",
    `  for file in "$dir"/${PROFILES_UNDER_CONFIG}/*${PROFILE_SUFFIX}; do`,
    "    [[ -f $file ]] || continue",
    "    file=${file##*/}",
    `    file=\${file%${PROFILE_SUFFIX}}`,
    '    [[ $file == "$cur"* ]] && COMPREPLY+=("$prefix$file")',
    "  done",
    "}",
    "",
    `# ${fn}_add KIND [WORD...]: add the candidates of that kind that start with $cur to COMPREPLY`,
    `${fn}_add() {`,
    "  local kind=$1 word",
    "  shift",
    "  case $kind in",
    "    file | dir)",
    "      compopt -o filenames 2>/dev/null",
    '      while IFS= read -r word; do COMPREPLY+=("$prefix$word"); done < <(compgen "-${kind:0:1}" -- "$cur")',
    "      ;;",
    "    profile)",
    `      ${fn}_profiles`,
    `      ${fn}_add file`,
    "      ;;",
    '    words) for word; do [[ $word == "$cur"* ]] && COMPREPLY+=("$prefix$word"); done ;;',
    "  esac",
    "  return 0",
    "}",
    "",
    `${fn}() {`,
    '  local cur=${COMP_WORDS[COMP_CWORD]} prefix="" path="" word i nargs=0 dashdash=0',
    "  local -a REPLY=() want=()",
    "  COMPREPLY=()",
    "  # walk the words before the cursor: the subcommand path, the positional arguments, a pending option value",
    "  for ((i = 1; i < COMP_CWORD; i++)); do",
    "    word=${COMP_WORDS[i]}",
    "    if ((${#want[@]})); then",
    '      [[ $word == = ]] || want=() # "--option=value" comes as three words: keep waiting after "="',
    "    elif ((!dashdash)) && [[ $word == -- ]]; then",
    "      dashdash=1",
    "    elif ((!dashdash)) && [[ $word == -?* ]]; then",
    `      [[ $word == *=* ]] || { ${fn}_option_value "$path" "$word" && want=("\${REPLY[@]}"); }`,
    `    elif ((nargs == 0)) && ${fn}_subcommands "$path" && [[ " \${REPLY[*]} " == *" $word "* ]]; then`,
    "      path=${path:+$path }$word",
    "    else",
    "      nargs=$((nargs + 1))",
    "    fi",
    "  done",
    "  if ((${#want[@]})); then # the value of the option before the cursor",
    '    [[ $cur == = ]] && cur=""',
    `    ${fn}_add "\${want[@]}"`,
    "  elif ((!dashdash)) && [[ $cur == --*=* ]]; then # --option=value as one word",
    `    ${fn}_option_value "$path" "\${cur%%=*}"`,
    "    prefix=${cur%%=*}= cur=${cur#*=}",
    `    ((\${#REPLY[@]})) && ${fn}_add "\${REPLY[@]}"`,
    "  elif ((!dashdash)) && [[ $cur == -* ]]; then",
    `    ${fn}_options "$path"`,
    `    ${fn}_add words "\${REPLY[@]}"`,
    "  else",
    `    ${fn}_subcommands "$path"`,
    `    if ((\${#REPLY[@]})); then`,
    `      ((nargs == 0)) && ${fn}_add words "\${REPLY[@]}"`,
    "    else",
    `      ${fn}_argument "$path" "$nargs"`,
    `      ((\${#REPLY[@]})) && ${fn}_add "\${REPLY[@]}"`,
    "    fi",
    "  fi",
    "  return 0",
    "}",
    "",
    `complete -F ${fn} ${shQuote(model.name)}`,
    "",
  ].join("\n");
}

// ---------------------------------------------------------------------------------------------
// zsh

/** Text inside an _arguments `[description]` or a `:message:`. */
function zshSpecText(text: string): string {
  return text.replace(/([\\[\]:])/g, "\\$1");
}

function zshAction(value: ValueKind, profileFn: string): string {
  switch (value.kind) {
    case "file":
      return "_files";
    case "dir":
      return "_files -/";
    case "profile":
      return profileFn;
    case "words":
      return `(${value.words.map((w) => w.replace(/([^A-Za-z0-9_.,/+@%=-])/g, "\\$1")).join(" ")})`;
    case "text":
      return " ";
  }
}

function zshOptionSpecs(o: OptionModel, profileFn: string): string[] {
  const names = optionNames(o);
  const value = o.value === undefined ? "" : `:${zshSpecText(o.value.name)}:${zshAction(o.value, profileFn)}`;
  const tail = `[${zshSpecText(o.description)}]${value}`;
  // -p+ and --passphrase-file= take the value in the same word or the next one
  const spelled = names.map((n) => (o.value === undefined ? n : n.startsWith("--") ? `${n}=` : `${n}+`));
  const exclusion = o.repeatable ? "*" : names.length > 1 ? `(${names.join(" ")})` : "";
  if (spelled.length > 1 && names.every((n) => OPTION_NAME.test(n))) {
    return [`${sq(exclusion)}{${spelled.join(",")}}${sq(tail)}`];
  }
  return spelled.map((n) => sq(`${exclusion}${n}${tail}`));
}

/**
 * Positional specs. commander gives word N to argument N whether or not it is optional, but _arguments
 * also applies the spec AFTER an optional `N::` one at position N (so `[dest] [source...]` would offer
 * dest's and source's candidates both at word 1): only the last argument is marked optional.
 */
function zshArgumentSpecs(cmd: CommandModel, profileFn: string): string[] {
  const slots = argumentSlots(cmd);
  return slots.map((s) => {
    const arg = cmd.args[s.index]!;
    const position = s.rest ? "*" : `${s.index + 1}`;
    const optional = arg.optional && !s.rest && s.index === slots.length - 1 ? ":" : "";
    return sq(`${position}${optional}:${zshSpecText(s.value.name)}:${zshAction(s.value, profileFn)}`);
  });
}

function zshFunctionName(model: CommandModel, cmd: CommandModel): string {
  return [`_${identifier(model.name)}`, ...cmd.path.map(identifier)].join("__");
}

function zshCommandFunction(model: CommandModel, cmd: CommandModel, profileFn: string): string[] {
  const fn = zshFunctionName(model, cmd);
  const specs = [...cmd.options.flatMap((o) => zshOptionSpecs(o, profileFn)), ...zshArgumentSpecs(cmd, profileFn)];
  const title = [model.name, ...cmd.path].join(" ");
  if (cmd.subcommands.length === 0) {
    return [
      `# ${title}`,
      `${fn}() {`,
      "  _arguments -s -S \\",
      ...specs.map((s) => `    ${s} \\`),
      "    && return 0",
      "  return 1",
      "}",
      "",
    ];
  }
  const context = [model.name, ...cmd.path].join("-");
  return [
    `# ${title}`,
    `${fn}() {`,
    "  local curcontext=$curcontext state state_descr line ret=1",
    "  typeset -A opt_args",
    "  local -a commands=(",
    ...cmd.subcommands.map(
      (s) => `    ${sq(`${s.name.replace(/([\\:])/g, "\\$1")}:${s.description.replace(/\\/g, "\\\\")}`)}`,
    ),
    "  )",
    "  _arguments -C -s -S \\",
    ...specs.map((s) => `    ${s} \\`),
    "    ': :->command' \\",
    "    '*:: :->subcommand' && ret=0",
    "  case $state in",
    `    command) _describe -t commands ${shQuote(`${title} command`)} commands && ret=0 ;;`,
    "    subcommand)",
    `      curcontext=\${curcontext%:*:*}:${context}-$words[1]:`,
    "      case $words[1] in",
    ...cmd.subcommands.map((s) => `        ${shQuote(s.name)}) ${zshFunctionName(model, s)} && ret=0 ;;`),
    "      esac",
    "      ;;",
    "  esac",
    "  return ret",
    "}",
    "",
  ];
}

function zshScript(program: Command, model: CommandModel): string {
  const fn = `_${identifier(model.name)}`;
  const profileFn = `${fn}_profile`;
  const commands = allCommands(model);
  return [
    `#compdef ${model.name}`,
    ...header("zsh", program),
    "",
    `# profile names: the *${PROFILE_SUFFIX} files in \${XDG_CONFIG_HOME:-~/.config}/${PROFILES_UNDER_CONFIG}/`,
    `${fn}_profile_names() {`,
    "  local dir=${XDG_CONFIG_HOME:-} expl",
    "  [[ $dir == /* ]] || dir=$HOME/.config",
    `  local -a names=( $dir/${PROFILES_UNDER_CONFIG}/*${PROFILE_SUFFIX}(N-.:t:r) )`,
    "  _wanted profiles expl 'profile name' compadd -a names",
    "}",
    "",
    "# a profile: its name, or the path of its file",
    `${profileFn}() {`,
    `  _alternative 'profiles:profile name:${fn}_profile_names' 'files:profile file:_files'`,
    "}",
    "",
    ...commands.flatMap((c) => zshCommandFunction(model, c, profileFn)),
    `# autoloaded from $fpath this file is the body of ${fn}; sourced, it registers ${fn}`,
    `if [[ $funcstack[1] == ${fn} ]]; then`,
    `  ${fn} "$@"`,
    "else",
    `  compdef ${fn} ${shQuote(model.name)}`,
    "fi",
    "",
  ].join("\n");
}

// ---------------------------------------------------------------------------------------------
// fish

/** Single-quoted for fish (where \\ and \' are the escapes inside single quotes). */
function fq(text: string): string {
  return `'${text.replace(/[\\']/g, "\\$&")}'`;
}

function fishQuote(text: string): string {
  return PLAIN_WORD.test(text) ? text : fq(text);
}

function fishValueFlags(value: ValueKind, fn: string): string {
  switch (value.kind) {
    case "file":
      return "-r -F";
    case "dir":
      return "-x -a '(__fish_complete_directories)'";
    case "profile":
      return `-r -F -a '(${fn}_profiles)'`;
    case "words":
      return `-x -a ${fishQuote(value.words.map(fishQuote).join(" "))}`;
    case "text":
      return "-x";
  }
}

function fishScript(program: Command, model: CommandModel): string {
  const fn = `__${identifier(model.name)}`;
  const c = `complete -c ${fishQuote(model.name)}`;
  const commands = allCommands(model);
  const pathWord = (cmd: CommandModel) => (cmd.path.length === 0 ? '""' : fishQuote(cmd.path.join(" ")));
  const condition = (text: string) => `-n ${fq(text)}`;

  const lines: string[] = [
    ...header("fish", program),
    "",
    `# the subcommands of command PATH ('' for ${model.name} itself)`,
    `function ${fn}_subcommands --argument-names path`,
    '    switch "$path"',
    ...commands
      .filter((cmd) => cmd.subcommands.length > 0)
      .flatMap((cmd) => [
        `        case ${pathWord(cmd)}`,
        `            printf '%s\\n' ${cmd.subcommands.map((s) => fishQuote(s.name)).join(" ")}`,
      ]),
    "    end",
    "end",
    "",
    "# succeeds if OPTION of command PATH takes a value",
    `function ${fn}_takes_value --argument-names path option`,
    '    switch "$path $option"',
  ];
  const valued = commands.flatMap((cmd) =>
    cmd.options
      .filter((o) => o.value !== undefined)
      .map((o) =>
        optionNames(o)
          .map((n) => fq(`${cmd.path.join(" ")} ${n}`))
          .join(" "),
      ),
  );
  if (valued.length > 0) {
    lines.push("        case \\", ...valued.map((v) => `            ${v} \\`), "            return 0");
  }
  lines.push(
    "    end",
    "    return 1",
    "end",
    "",
    "# from the words before the cursor: the number of positional arguments, 1 if the next word is the",
    "# value of an option (else 0), and the subcommand path",
    `function ${fn}_state`,
    "    set -l path ''",
    "    set -l nargs 0",
    "    set -l want 0",
    "    set -l dashdash 0",
    "    set -l words (commandline -opc)",
    "    set -e words[1]",
    "    for word in $words",
    "        if test $want = 1",
    "            set want 0",
    '        else if test $dashdash = 0; and test "$word" = --',
    "            set dashdash 1",
    "        else if test $dashdash = 0; and string match -qr -- '^-.' $word",
    `            if not string match -q -- '*=*' $word; and ${fn}_takes_value "$path" $word`,
    "                set want 1",
    "            end",
    `        else if test $nargs = 0; and contains -- $word (${fn}_subcommands "$path")`,
    '            set path (string trim -- "$path $word")',
    "        else",
    "            set nargs (math $nargs + 1)",
    "        end",
    "    end",
    `    printf '%s\\n' $nargs $want "$path"`,
    "end",
    "",
    "# succeeds if the word under the cursor belongs to command PATH",
    `function ${fn}_at --argument-names path`,
    `    set -l state (${fn}_state)`,
    '    test "$state[3]" = "$path"',
    "end",
    "",
    "# succeeds if the word under the cursor is positional argument N (from 0) of command PATH; N+: N or later",
    `function ${fn}_arg --argument-names path n`,
    `    set -l state (${fn}_state)`,
    '    test "$state[3]" = "$path"; and test $state[2] = 0; or return 1',
    "    if string match -q -- '*+' $n",
    "        test $state[1] -ge (string trim -r -c + -- $n)",
    "    else",
    "        test $state[1] = $n",
    "    end",
    "end",
    "",
    `# profile names: the *${PROFILE_SUFFIX} files in \${XDG_CONFIG_HOME:-~/.config}/${PROFILES_UNDER_CONFIG}/`,
    `function ${fn}_profiles`,
    "    set -l dir $XDG_CONFIG_HOME",
    "    string match -q -- '/*' \"$dir\"; or set dir $HOME/.config",
    `    for file in $dir/${PROFILES_UNDER_CONFIG}/*${PROFILE_SUFFIX}`,
    `        test -f $file; and string replace -r -- '^.*/(.*)\\${PROFILE_SUFFIX}$' '$1' $file`,
    "    end",
    "end",
    "",
    "# no file names unless a rule below asks for them",
    `${c} -f`,
  );
  for (const cmd of commands) {
    const at = condition(`${fn}_at ${pathWord(cmd)}`);
    lines.push("", `# ${[model.name, ...cmd.path].join(" ")}`);
    for (const s of cmd.subcommands) {
      lines.push(
        `${c} ${condition(`${fn}_arg ${pathWord(cmd)} 0`)} -a ${fishQuote(s.name)} -d ${fishQuote(s.description)}`,
      );
    }
    for (const o of cmd.options) {
      const names = [
        ...(o.short === undefined ? [] : [`-s ${fishQuote(o.short.slice(1))}`]),
        ...(o.long === undefined ? [] : [`-l ${fishQuote(o.long.slice(2))}`]),
      ];
      const value = o.value === undefined ? "" : ` ${fishValueFlags(o.value, fn)}`;
      lines.push(`${c} ${at} ${names.join(" ")}${value} -d ${fishQuote(o.description)}`);
    }
    for (const s of argumentSlots(cmd)) {
      const slot = condition(`${fn}_arg ${pathWord(cmd)} ${s.index}${s.rest ? "+" : ""}`);
      // a positional argument is no option: keep what to offer, drop "requires a value" (-r / -x)
      const flags = fishValueFlags(s.value, fn).replace(/^-[rx] ?/, "");
      if (flags !== "") lines.push(`${c} ${slot} ${flags}`);
    }
  }
  lines.push("");
  return lines.join("\n");
}

// ---------------------------------------------------------------------------------------------
// the command

/** The completion script for `shell`, generated from the commands and options of `program`. */
export function completionScript(program: Command, shell: Shell): string {
  const model = completionModel(program);
  switch (shell) {
    case "bash":
      return bashScript(program, model);
    case "zsh":
      return zshScript(program, model);
    case "fish":
      return fishScript(program, model);
  }
}

const INSTALL_HELP = `
Install (then start a new shell):
  bash  add this line to ~/.bashrc:
          eval "$(qbackup completion bash)"
        or, with the bash-completion package, save the script where it is loaded on demand:
          qbackup completion bash > ~/.local/share/bash-completion/completions/qbackup
  zsh   save it as a file named _qbackup in a directory on $fpath, before compinit runs in ~/.zshrc:
          mkdir -p ~/.zfunc && qbackup completion zsh > ~/.zfunc/_qbackup
          # in ~/.zshrc, above compinit:  fpath=(~/.zfunc $fpath)
  fish  qbackup completion fish > ~/.config/fish/completions/qbackup.fish

Run the command again after upgrading qbackup: the script lists the commands and options of this version.

Examples:
  qbackup completion bash > ~/.local/share/bash-completion/completions/qbackup
  qbackup completion zsh > ~/.zfunc/_qbackup
  qbackup completion fish > ~/.config/fish/completions/qbackup.fish
  source <(qbackup completion zsh)     # try it in the current zsh (after compinit)`;

/** `qbackup completion bash|zsh|fish` — prints the script; `program` is called lazily to get the tree. */
export function completionCommand(program: () => Command): Command {
  return new Command("completion")
    .description("print the shell completion script for bash, zsh or fish")
    .addArgument(new Argument("<shell>", "the shell to complete for").choices(SHELLS))
    .addHelpText("after", INSTALL_HELP)
    .action((shell: Shell) => {
      process.stdout.write(completionScript(program(), shell));
      process.exitCode = EXIT_OK;
    });
}
