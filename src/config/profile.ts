/**
 * Profiles: one YAML file per backup job standing for the options of `qbackup create` (and the prune
 * rules for its agent), in snake_case keys. parseProfile checks every key and reports the first
 * problem as `FILE:LINE: KEY: what is wrong`; renderProfile writes one. Pure: profile-file.ts reads
 * and writes the files. YAML is parsed by the `yaml` package and values are checked with `zod`.
 */
import * as os from "node:os";
import * as path from "node:path";
import { Document, LineCounter, Parser, isAlias, isCollection, isMap, isScalar, isSeq, parseDocument } from "yaml";
import type { Node as YamlNode, Pair } from "yaml";
import { z } from "zod";
import { parseDuration } from "../agent/protocol.js";
import { parseSize } from "../runtime/units.js";
import { qubeNameProblem } from "../codec/qubes-xml/index.js";
import { parseSourceSpec } from "../create/index.js";
import type { SourceSpec } from "../create/index.js";
import type { QbackupError } from "../errors.js";
import { MAX_CHUNK_SIZE, MIN_CHUNK_SIZE } from "../format/names.js";
import { validatePassphrase } from "../format/passphrase.js";
import { ALLOWED_FILTER_PROGRAMS } from "../runtime/filters.js";
import { isRemoteSpec, parseRemote } from "../transport/remote.js";
import { MAX_PROFILE_BYTES, oneLine, profileError } from "./profile-errors.js";

export { MAX_PROFILE_BYTES, oneLine, profileError } from "./profile-errors.js";

/** A valid profile nests three levels (mapping, sources list, source mapping); deep nesting only costs stack. */
export const MAX_PROFILE_NESTING = 16;
/** Unknown keys within this edit distance of a known one get a "did you mean" hint. */
const SUGGESTION_DISTANCE = 2;

// The same bounds as the `qbackup create` / `prune` options (src/cli/create.ts, remote-options.ts,
// agent/protocol.ts); repeated here because src/cli imports this module.
const MIN_JOBS = 1;
const MAX_JOBS = 64;
const MIN_GZIP_LEVEL = 1;
const MAX_GZIP_LEVEL = 9;
export const MIN_PROFILE_SCRYPT_LOGN = 10;
export const MAX_PROFILE_SCRYPT_LOGN = 20;
const MIN_STALL_TIMEOUT_S = 1;
const MAX_STALL_TIMEOUT_S = 86_400;
const MIN_KEEP_LAST = 1;
/** The agent protocol carries a count of at most nine digits. */
const MAX_KEEP_LAST = 999_999_999;

/** How much of a bad value an error message quotes. */
const MAX_QUOTED_VALUE = 60;

/** `compression`: no compression, or a filter program the reference reader allows (gzip included). */
export type ProfileCompression = "none" | (typeof ALLOWED_FILTER_PROGRAMS)[number];

/** A parsed profile; every field but the sources is optional (absent = the command's default). */
export interface Profile {
  destination?: string;
  destCommand?: string;
  sources: SourceSpec[];
  /** The sources as `NAME[:VOLUME]=PATH` arguments, in file order. */
  sourceArgs: string[];
  exclude?: string[];
  compression?: ProfileCompression;
  compressLevel?: number;
  jobs?: number;
  /** Bytes. */
  chunkSize?: number;
  scryptLogn?: number;
  passphraseCommand?: string;
  /** With a leading `~/` already expanded. */
  passphraseFile?: string;
  passphrase?: string;
  sshCommand?: string;
  /** Seconds. */
  stallTimeout?: number;
  /** A duration as `qbackup prune --keep-within` takes it (`30d`, `12h`, `2w`). */
  keepWithin?: string;
  keepLast?: number;
  pruneSshCommand?: string;
  onSuccess?: string;
  onFailure?: string;
}

export interface LoadedProfile {
  name: string;
  file: string;
  profile: Profile;
}

export interface ParseProfileOptions {
  /** What `~/` in passphrase_file stands for (default: the user's home directory). */
  home?: string;
}

/** The keys of a profile file in documentation (and rendering) order. */
export const PROFILE_KEYS = [
  "destination",
  "dest_command",
  "sources",
  "exclude",
  "compression",
  "compress_level",
  "jobs",
  "chunk_size",
  "scrypt_logn",
  "passphrase_command",
  "passphrase_file",
  "passphrase",
  "ssh_command",
  "stall_timeout",
  "keep_within",
  "keep_last",
  "prune_ssh_command",
  "on_success",
  "on_failure",
] as const;
export type ProfileKey = (typeof PROFILE_KEYS)[number];
const SOURCE_KEYS = ["qube", "volume", "path"] as const;
const PASSPHRASE_KEYS = ["passphrase_command", "passphrase_file", "passphrase"] as const;
const COMPRESSIONS: readonly ProfileCompression[] = ["none", ...ALLOWED_FILTER_PROGRAMS];

// ---------------------------------------------------------------------------------------------
// messages

function describeValue(value: unknown): string {
  if (value === undefined || value === null) return "nothing";
  if (typeof value === "string") {
    if (value === "") return "an empty string";
    const cut = value.length > MAX_QUOTED_VALUE ? `${value.slice(0, MAX_QUOTED_VALUE)}…` : value;
    return `'${oneLine(cut)}'`;
  }
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return value instanceof Uint8Array ? "binary data" : "a mapping";
  return String(value);
}

/** A zod error function: `RULE, got VALUE`, or `missing`; `secret` values are never quoted. */
function rule(text: string, secret = false, missing = "missing"): (issue: { input?: unknown }) => string {
  return (issue) => {
    if (issue.input === undefined) return missing;
    if (secret) return typeof issue.input === "string" ? text : `${text} (put it in quotes)`;
    return `${text}, got ${describeValue(issue.input)}`;
  };
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + cost);
    }
    previous = current;
  }
  return previous[b.length]!;
}

function unknownKeyMessage(key: string, known: readonly string[]): string {
  let best: string | undefined;
  let bestDistance = SUGGESTION_DISTANCE + 1;
  for (const candidate of known) {
    const d = editDistance(key, candidate);
    if (d < bestDistance) [best, bestDistance] = [candidate, d];
  }
  return best === undefined ? "unknown key" : `unknown key (did you mean ${best}?)`;
}

// ---------------------------------------------------------------------------------------------
// schema

const nonEmptyText = (what = "must be a non-empty string") =>
  z.string({ error: rule(what) }).refine((s) => s.trim() !== "", { error: rule(what) });

const integerIn = (min: number, max: number) => {
  const error = rule(`must be an integer from ${min} to ${max}`);
  return z.int({ error }).min(min, { error }).max(max, { error });
};

function expandHome(file: string, home: string): string {
  return file.startsWith("~/") ? path.join(home, file.slice(2)) : file;
}

function formatSize(bytes: number): string {
  for (const [suffix, unit] of [
    ["G", 1024 ** 3],
    ["M", 1024 ** 2],
    ["K", 1024],
  ] as const) {
    if (bytes >= unit && bytes % unit === 0) return `${bytes / unit}${suffix}`;
  }
  return String(bytes);
}

const CHUNK_RULE = `must be a size from ${formatSize(MIN_CHUNK_SIZE)} to ${formatSize(MAX_CHUNK_SIZE)} (bytes, or a number with K, M or G)`;

const chunkSize = z.union([z.int(), z.string()], { error: rule(CHUNK_RULE) }).transform((value, ctx) => {
  let bytes: number | undefined;
  try {
    bytes = typeof value === "number" ? value : parseSize(value, "chunk_size");
  } catch {
    bytes = undefined;
  }
  if (bytes === undefined || bytes < MIN_CHUNK_SIZE || bytes > MAX_CHUNK_SIZE) {
    ctx.issues.push({ code: "custom", input: value, message: rule(CHUNK_RULE)({ input: value }) });
    return z.NEVER;
  }
  return bytes;
});

const destination = nonEmptyText().superRefine((dest, ctx) => {
  if (!isRemoteSpec(dest)) return;
  try {
    parseRemote(dest);
  } catch (err) {
    ctx.issues.push({ code: "custom", input: dest, message: err instanceof Error ? err.message : String(err) });
  }
});

const QUBE_NAME_RULE = "must be a qube name";
const qubeName = z.string({ error: rule(QUBE_NAME_RULE) }).superRefine((name, ctx) => {
  const problem = name === "dom0" ? undefined : qubeNameProblem(name);
  if (problem !== undefined) {
    ctx.issues.push({ code: "custom", input: name, message: `invalid qube name ${describeValue(name)}: ${problem}` });
  }
});

const SOURCE_PATH_RULE = "must be the path of a file, block device or directory";
const sourceMapping = z.object({
  qube: z.string({ error: rule("must be a qube name (or dom0)", false, "missing: give the qube name (or dom0)") }),
  volume: nonEmptyText("must be a volume name (or, for a directory, the name to archive it as)").optional(),
  path: z
    .string({ error: rule(SOURCE_PATH_RULE, false, "missing: give the file, block device or directory to back up") })
    .refine((p) => p !== "", { error: rule(SOURCE_PATH_RULE) }),
});

interface ParsedSource {
  spec: SourceSpec;
  arg: string;
}

const SOURCE_RULE = "must be NAME=PATH, NAME:VOLUME=PATH or a mapping {qube: NAME, volume: VOLUME, path: PATH}";

function sourceArgOf(spec: SourceSpec): string {
  return `${spec.qube}${spec.volume === undefined ? "" : `:${spec.volume}`}=${spec.path}`;
}

const sourceItem = z.unknown().transform((value, ctx): ParsedSource => {
  const fail = (message: string, at: PropertyKey[] = []): ParsedSource => {
    ctx.issues.push({ code: "custom", input: value, message, path: at });
    return z.NEVER;
  };
  if (typeof value === "string") {
    try {
      return { spec: parseSourceSpec(value), arg: value };
    } catch (err) {
      return fail(err instanceof Error ? err.message : String(err));
    }
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return fail(rule(SOURCE_RULE)({ input: value }));
  }
  const parsed = sourceMapping.safeParse(value);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) fail(issue.message, issue.path);
    return z.NEVER;
  }
  const { qube, volume, path: sourcePath } = parsed.data;
  // the same checks as the command line: qube first (alone), then the volume with it
  if (/[:=]/.test(qube)) {
    return fail(`invalid qube name ${describeValue(qube)}: ${qubeNameProblem(qube) ?? "no ':' or '='"}`, ["qube"]);
  }
  let spec: SourceSpec;
  try {
    spec = parseSourceSpec(`${qube}=${sourcePath}`);
  } catch (err) {
    return fail(err instanceof Error ? err.message : String(err), ["qube"]);
  }
  if (volume !== undefined) {
    const badVolume = `volume name ${describeValue(volume)} may contain only letters, digits, '_', '.' and '-'`;
    if (volume.includes("=")) return fail(badVolume, ["volume"]);
    try {
      spec = parseSourceSpec(`${qube}:${volume}=${sourcePath}`);
    } catch (err) {
      return fail(err instanceof Error ? err.message : String(err), ["volume"]);
    }
    if (spec.volume !== volume || spec.path !== sourcePath) return fail(badVolume, ["volume"]);
  }
  return { spec, arg: sourceArgOf(spec) };
});

const passphrase = z.string({ error: rule("must be a string", true) }).superRefine((secret, ctx) => {
  try {
    validatePassphrase(secret);
  } catch (err) {
    const why = err instanceof Error ? err.message.replace(/^passphrase rejected: /, "") : String(err);
    // `input` is left out on purpose: nothing may ever print the passphrase
    ctx.issues.push({ code: "custom", input: undefined, message: `cannot be used: ${why}` });
  }
});

function profileSchema(home: string) {
  return z.object({
    destination: destination.optional(),
    dest_command: nonEmptyText().optional(),
    sources: z
      .array(sourceItem, { error: rule(`must be a list; each source ${SOURCE_RULE}`) })
      .min(1, { error: "must list at least one source" })
      .optional(),
    exclude: z.array(qubeName, { error: rule("must be a list of qube names") }).optional(),
    compression: z.enum(COMPRESSIONS, { error: rule(`must be one of ${COMPRESSIONS.join(", ")}`) }).optional(),
    compress_level: integerIn(MIN_GZIP_LEVEL, MAX_GZIP_LEVEL).optional(),
    jobs: integerIn(MIN_JOBS, MAX_JOBS).optional(),
    chunk_size: chunkSize.optional(),
    scrypt_logn: integerIn(MIN_PROFILE_SCRYPT_LOGN, MAX_PROFILE_SCRYPT_LOGN).optional(),
    passphrase_command: nonEmptyText().optional(),
    passphrase_file: nonEmptyText()
      .transform((file) => expandHome(file, home))
      .optional(),
    passphrase: passphrase.optional(),
    ssh_command: nonEmptyText().optional(),
    stall_timeout: integerIn(MIN_STALL_TIMEOUT_S, MAX_STALL_TIMEOUT_S).optional(),
    keep_within: z
      .string({ error: rule("must be a duration like 30d, 12h or 2w") })
      .refine((d) => parseDuration(d) !== undefined, {
        error: rule("must be a duration like 30d, 12h or 2w (a number, then s, m, h, d or w)"),
      })
      .optional(),
    keep_last: integerIn(MIN_KEEP_LAST, MAX_KEEP_LAST).optional(),
    prune_ssh_command: nonEmptyText().optional(),
    on_success: nonEmptyText().optional(),
    on_failure: nonEmptyText().optional(),
  });
}

// ---------------------------------------------------------------------------------------------
// YAML structure

interface Located {
  line: number;
  key: string;
  message: string;
  /** A missing key is reported after the problems found at a line (often a misspelling of it). */
  missing?: boolean;
}

class ProfileText {
  readonly lines = new LineCounter();
  constructor(readonly file: string) {}

  lineOf(node: YamlNode | null | undefined): number {
    const offset = node?.range?.[0];
    return offset === undefined ? 1 : this.lines.linePos(offset).line;
  }

  error(line: number, key: string, message: string): QbackupError {
    return profileError(`${this.file}:${line}: ${key}: ${message}`);
  }
}

function labelOf(at: readonly PropertyKey[]): string {
  let label = "";
  for (const part of at) label += typeof part === "number" ? `[${part}]` : `${label === "" ? "" : "."}${String(part)}`;
  return label === "" ? "profile" : label;
}

function keyText(pair: Pair): string | undefined {
  return isScalar(pair.key) && pair.key.value !== null && typeof pair.key.value !== "object"
    ? String(pair.key.value)
    : undefined;
}

/** The line where a nesting deeper than MAX_PROFILE_NESTING starts, if any; iterative (no stack to blow). */
function tooDeepAt(text: string): number | undefined {
  const COLLECTIONS = new Set(["block-map", "block-seq", "flow-collection"]);
  const stack: Array<[unknown, number]> = [...new Parser().parse(text)].map((token) => [token, 0]);
  while (stack.length > 0) {
    const [value, outer] = stack.pop()!;
    if (typeof value !== "object" || value === null) continue;
    const record = value as Record<string, unknown>;
    const type = Array.isArray(value) ? undefined : record["type"];
    const depth = typeof type === "string" && COLLECTIONS.has(type) ? outer + 1 : outer;
    if (depth > MAX_PROFILE_NESTING) {
      const offset = typeof record["offset"] === "number" ? record["offset"] : 0;
      return text.slice(0, offset).split("\n").length;
    }
    for (const child of Array.isArray(value) ? value : Object.values(record)) stack.push([child, depth]);
  }
  return undefined;
}

/** Anchors, aliases, duplicate or non-scalar keys, anywhere: the first found in file order. */
function checkStructure(node: unknown, at: PropertyKey[], src: ProfileText): void {
  if (isAlias(node) || (isCollection(node) || isScalar(node) ? node.anchor !== undefined : false)) {
    throw src.error(src.lineOf(node as YamlNode), labelOf(at), "anchors and aliases are not allowed in a profile");
  }
  if (isMap(node)) {
    const seen = new Map<string, number>();
    for (const pair of node.items) {
      const key = keyText(pair);
      const keyLine = src.lineOf(pair.key as YamlNode);
      if (isScalar(pair.key) && pair.key.anchor !== undefined) {
        throw src.error(keyLine, labelOf(at), "anchors and aliases are not allowed in a profile");
      }
      if (key === undefined) throw src.error(keyLine, labelOf(at), "keys must be plain words");
      const first = seen.get(key);
      if (first !== undefined)
        throw src.error(keyLine, labelOf([...at, key]), `duplicate key (first given on line ${first})`);
      seen.set(key, keyLine);
      checkStructure(pair.value, [...at, key], src);
    }
  } else if (isSeq(node)) {
    node.items.forEach((item, i) => checkStructure(item, [...at, i], src));
  }
}

function unknownKeys(root: YamlNode, src: ProfileText): Located[] {
  const found: Located[] = [];
  const check = (node: unknown, known: readonly string[], at: PropertyKey[]) => {
    if (!isMap(node)) return;
    for (const pair of node.items) {
      const key = keyText(pair)!;
      if (!known.includes(key)) {
        found.push({
          line: src.lineOf(pair.key as YamlNode),
          key: labelOf([...at, key]),
          message: unknownKeyMessage(key, known),
        });
      }
    }
  };
  check(root, PROFILE_KEYS, []);
  const sources = isMap(root) ? root.get("sources", true) : undefined;
  if (isSeq(sources)) sources.items.forEach((item, i) => check(item, SOURCE_KEYS, ["sources", i]));
  return found;
}

/** The YAML node an issue path leads to, or the deepest one that exists on the way (`found` false). */
function nodeAt(root: YamlNode, at: readonly PropertyKey[]): { node: YamlNode; found: boolean } {
  let node: YamlNode = root;
  for (const part of at) {
    let next: unknown;
    if (isMap(node)) next = node.items.find((pair) => keyText(pair) === String(part))?.value;
    else if (isSeq(node) && typeof part === "number") next = node.items[part];
    if (next === undefined || next === null || typeof next !== "object") return { node, found: false };
    node = next as YamlNode;
  }
  return { node, found: true };
}

// ---------------------------------------------------------------------------------------------
// parse

type ParsedFields = z.output<ReturnType<typeof profileSchema>>;

/** Pure: parse and validate YAML text; `file` is only for messages. */
export function parseProfile(text: string, file: string, options: ParseProfileOptions = {}): Profile {
  const bytes = Buffer.byteLength(text, "utf8");
  if (bytes > MAX_PROFILE_BYTES) throw profileError(`${file}: profile larger than ${MAX_PROFILE_BYTES} bytes`);
  const src = new ProfileText(file);

  const deep = tooDeepAt(text);
  if (deep !== undefined) throw src.error(deep, "yaml", `nested deeper than ${MAX_PROFILE_NESTING} levels`);
  const doc = parseDocument(text, { lineCounter: src.lines, uniqueKeys: false, prettyErrors: false });
  const yamlProblem = doc.errors[0] ?? doc.warnings[0];
  if (yamlProblem !== undefined) {
    const first = (yamlProblem.message.split("\n")[0] ?? "").replace(/:$/, "");
    const message = first.charAt(0).toLowerCase() + first.slice(1);
    throw src.error(src.lines.linePos(yamlProblem.pos[0]).line, "yaml", message);
  }

  const root = doc.contents;
  if (root === null || (isScalar(root) && root.value === null)) {
    throw profileError(`${file}:1: profile is empty: give destination and sources`);
  }
  if (!isMap(root)) {
    throw profileError(
      `${file}:${src.lineOf(root)}: profile must be a mapping of keys to values (destination: ..., sources: ...), got ${describeValue(doc.toJS())}`,
    );
  }
  checkStructure(root, [], src);

  const problems = unknownKeys(root, src);
  const result = profileSchema(options.home ?? os.homedir()).safeParse(doc.toJS());
  if (!result.success) {
    for (const issue of result.error.issues) {
      const { node, found } = nodeAt(root, issue.path);
      problems.push({ line: src.lineOf(node), key: labelOf(issue.path), message: issue.message, missing: !found });
    }
  }
  if (problems.length > 0) {
    const rank = (p: Located) => [p.missing === true ? 1 : 0, p.line] as const;
    const first = problems.reduce((a, b) => {
      const [ra, rb] = [rank(a), rank(b)];
      return rb[0] < ra[0] || (rb[0] === ra[0] && rb[1] < ra[1]) ? b : a;
    });
    throw src.error(first.line, first.key, first.message);
  }
  const fields = result.data!;
  checkCombinations(fields, root, src);
  return profileFrom(fields, options.home ?? os.homedir());
}

/** Rules between keys, reported at the line of the key that breaks them. */
function checkCombinations(fields: ParsedFields, root: YamlNode, src: ProfileText): void {
  if (!isMap(root)) return;
  const keyLine = (key: string) =>
    src.lineOf(root.items.find((pair) => keyText(pair) === key)?.key as YamlNode | undefined);
  const mapLine = src.lineOf(root);
  const given = (keys: readonly ProfileKey[]) =>
    keys.filter((key) => fields[key] !== undefined).sort((a, b) => keyLine(a) - keyLine(b));

  const destinations = given(["destination", "dest_command"]);
  if (destinations.length === 0) {
    throw src.error(
      mapLine,
      "destination",
      "missing: give destination (a directory, a file, -, ssh://, ssh+agent:// or rclone:) or dest_command",
    );
  }
  if (destinations.length > 1) {
    throw src.error(keyLine(destinations[1]!), destinations[1]!, "give either destination or dest_command, not both");
  }
  if (fields.sources === undefined) {
    throw src.error(mapLine, "sources", "missing: list what to back up as NAME=PATH or NAME:VOLUME=PATH");
  }
  const passphrases = given(PASSPHRASE_KEYS);
  if (passphrases.length > 1) {
    throw src.error(
      keyLine(passphrases[1]!),
      passphrases[1]!,
      `give only one of ${PASSPHRASE_KEYS.join(", ")} (or none, to be asked)`,
    );
  }
  if (fields.compress_level !== undefined && fields.compression !== undefined && fields.compression !== "gzip") {
    throw src.error(
      keyLine("compress_level"),
      "compress_level",
      `only applies to gzip compression, but compression is ${fields.compression}`,
    );
  }
}

/** The profile, with a leading `~/` in local paths (sources, destination) made the home directory. */
function profileFrom(fields: ParsedFields, home: string): Profile {
  const specs = (fields.sources ?? []).map((s) => ({ ...s.spec, path: expandHome(s.spec.path, home) }));
  const profile: Profile = { sources: specs, sourceArgs: specs.map(sourceArgOf) };
  const set = <K extends keyof Profile>(key: K, value: Profile[K] | undefined) => {
    if (value !== undefined) profile[key] = value;
  };
  const dest = fields.destination;
  set("destination", dest === undefined || isRemoteSpec(dest) ? dest : expandHome(dest, home));
  set("destCommand", fields.dest_command);
  set("exclude", fields.exclude);
  set("compression", fields.compression);
  set("compressLevel", fields.compress_level);
  set("jobs", fields.jobs);
  set("chunkSize", fields.chunk_size);
  set("scryptLogn", fields.scrypt_logn);
  set("passphraseCommand", fields.passphrase_command);
  set("passphraseFile", fields.passphrase_file);
  set("passphrase", fields.passphrase);
  set("sshCommand", fields.ssh_command);
  set("stallTimeout", fields.stall_timeout);
  set("keepWithin", fields.keep_within);
  set("keepLast", fields.keep_last);
  set("pruneSshCommand", fields.prune_ssh_command);
  set("onSuccess", fields.on_success);
  set("onFailure", fields.on_failure);
  return profile;
}

// ---------------------------------------------------------------------------------------------
// render

const HEADER = `# qbackup profile: the options of one \`qbackup create\` job (and the prune rules for its agent).
# Use it with \`qbackup create --profile NAME\`, NAME being this file's name without .yaml
# (profiles live in ~/.config/qbackup/profiles/). Keys are the long options in snake_case;
# leave a key out to get the command's default. Sources are NAME=PATH or NAME:VOLUME=PATH.
`;
const PASSPHRASE_WARNING = `# This file holds the passphrase in plain text: keep it readable by you alone (chmod 600).
`;

/** YAML text for a profile: a comment header saying what it is and how to use it, then the keys in table order. */
export function renderProfile(profile: Profile): string {
  const values: Record<ProfileKey, unknown> = {
    destination: profile.destination,
    dest_command: profile.destCommand,
    sources: profile.sources.map(sourceArgOf),
    exclude: profile.exclude === undefined ? undefined : [...profile.exclude],
    compression: profile.compression,
    compress_level: profile.compressLevel,
    jobs: profile.jobs,
    chunk_size: profile.chunkSize === undefined ? undefined : formatSize(profile.chunkSize),
    scrypt_logn: profile.scryptLogn,
    passphrase_command: profile.passphraseCommand,
    passphrase_file: profile.passphraseFile,
    passphrase: profile.passphrase,
    ssh_command: profile.sshCommand,
    stall_timeout: profile.stallTimeout,
    keep_within: profile.keepWithin,
    keep_last: profile.keepLast,
    prune_ssh_command: profile.pruneSshCommand,
    on_success: profile.onSuccess,
    on_failure: profile.onFailure,
  };
  const ordered: Record<string, unknown> = {};
  for (const key of PROFILE_KEYS) if (values[key] !== undefined) ordered[key] = values[key];
  const doc = new Document(ordered, { aliasDuplicateObjects: false });
  const body = doc.toString({ lineWidth: 0, minContentWidth: 0 });
  return HEADER + (profile.passphrase === undefined ? "" : PASSPHRASE_WARNING) + body;
}
