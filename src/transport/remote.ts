/**
 * Remote destinations and sources, named like URLs:
 *   ssh://[user@]host[:port]/path        plain ssh: `cat` on the remote side (path `/~/x` = `x` in the home)
 *   ssh+agent://[user@]host[:port]/NAME  ssh to a host whose forced command is `qbackup agent`
 *   rclone:REMOTE:PATH                   any rclone remote (`rcat`, `cat`, `lsf`, `moveto`, `deletefile`)
 * A path ending in `/` (or an empty agent NAME) gets the dated name qvm-backup would give.
 *
 * Every program is run from an argv array, never through a local shell. The system `ssh` is used
 * with `-o BatchMode=yes` (it never prompts; ~/.ssh/config applies). For plain ssh the remote
 * side needs a shell; every path is single-quoted for it. Uploads go to a hidden temporary name
 * and are published only on commit, with `ln` (ssh, never replaces) or `rclone moveto` after a
 * check that the name is free (rclone has no no-replace move), so a cut upload never looks complete.
 */
import { randomBytes } from "node:crypto";
import * as path from "node:path";
import { agentSink, agentSource } from "../agent/client.js";
import { isValidName } from "../agent/protocol.js";
import { QbackupError } from "../errors.js";
import { ChildPipe, spawnSink } from "./command-sink.js";
import type { ExitStatus } from "./command-sink.js";
import { defaultBackupFileName } from "./local.js";
import type { BackupSink } from "./sink.js";
import { spawnSource } from "./source.js";
import type { ByteSource } from "./source.js";

export interface SshTarget {
  user?: string;
  host: string;
  port?: number;
}

export type RemoteSpec =
  | { kind: "ssh"; target: SshTarget; path: string }
  | { kind: "agent"; target: SshTarget; name: string }
  | { kind: "rclone"; remote: string; path: string };

export interface RemoteOptions {
  /** The ssh program and options before the destination (default `ssh`); tests pass keys here. */
  ssh?: readonly string[];
  /** The rclone program (default `rclone`). */
  rclone?: readonly string[];
}

/** What the client asks ssh to run for `ssh+agent://`; a forced command replaces it anyway. */
export const AGENT_REMOTE_COMMAND = "qbackup agent";
/** Exit status the remote scripts use for "the destination name is taken". */
export const REMOTE_EXISTS_STATUS = 17;
/** rclone's exit status for "directory not found" (and, for lsf on a file path, "no such file"). */
const RCLONE_NOT_FOUND_STATUS = 3;
/** What one-shot helper commands (publish, existence checks) may print at most. */
const MAX_HELPER_OUTPUT = 64 * 1024;
/** Cleanup after an abort must not hold up the exit for long. */
const CLEANUP_TIMEOUT_MS = 10_000;
const TEMP_RANDOM_BYTES = 6;

const SSH_URL = /^(ssh|ssh\+agent):\/\/(?:([^@/]*)@)?(\[[0-9A-Fa-f:.]+\]|[^/:[\]@]*)(?::([0-9]{1,5}))?(\/.*)?$/;
const USER_PATTERN = /^[A-Za-z0-9._][A-Za-z0-9._-]{0,63}$/;
const HOST_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,252}$/;
const RCLONE_REMOTE_PATTERN = /^[A-Za-z0-9_.+@][A-Za-z0-9_.+@ -]{0,63}$/;
/** Anything outside printable ASCII is shown as `?` in messages; control characters are refused. */
const NOT_PRINTABLE = /[^\x20-\x7e]/g;
const hasControlChars = (text: string) => [...text].some((c) => c.charCodeAt(0) < 0x20 || c === "\x7f");

export function isRemoteSpec(text: string): boolean {
  return text.startsWith("ssh://") || text.startsWith("ssh+agent://") || text.startsWith("rclone:");
}

function usage(text: string, why: string): QbackupError {
  return new QbackupError("ERR_USAGE", `'${text.replace(NOT_PRINTABLE, "?")}' is not a valid remote: ${why}`, {
    hint: "use ssh://[user@]host[:port]/path, ssh+agent://[user@]host[:port]/NAME or rclone:REMOTE:PATH",
  });
}

/** Parse a remote name (see the header). Throws ERR_USAGE for anything malformed. */
export function parseRemote(text: string): RemoteSpec {
  if (hasControlChars(text)) throw usage(text, "control characters");
  if (text.startsWith("rclone:")) {
    const rest = text.slice("rclone:".length);
    const colon = rest.indexOf(":");
    if (colon < 0) throw usage(text, "expected rclone:REMOTE:PATH");
    const remote = rest.slice(0, colon);
    if (!RCLONE_REMOTE_PATTERN.test(remote)) throw usage(text, `bad rclone remote name '${remote}'`);
    return { kind: "rclone", remote, path: rest.slice(colon + 1) };
  }
  const m = SSH_URL.exec(text);
  if (!m) throw usage(text, "expected ssh://[user@]host[:port]/path");
  const [, scheme, user, rawHost, port, rawPath] = m;
  const target: SshTarget = { host: rawHost!.replace(/^\[(.*)\]$/, "$1") };
  if (!rawHost!.startsWith("[") && !HOST_PATTERN.test(target.host)) throw usage(text, "bad host name");
  if (user !== undefined) {
    if (!USER_PATTERN.test(user)) throw usage(text, "bad user name");
    target.user = user;
  }
  if (port !== undefined) {
    const n = Number(port);
    if (n < 1 || n > 65535) throw usage(text, "port out of range");
    target.port = n;
  }
  if (rawPath === undefined || rawPath === "") throw usage(text, "no path");
  if (scheme === "ssh+agent") {
    const name = rawPath.slice(1);
    if (name !== "" && !isValidName(name)) throw usage(text, `'${name}' is not a backup name for the agent`);
    return { kind: "agent", target, name };
  }
  // `/~/x` means x in the remote home directory, like git's ssh URLs
  const remotePath = rawPath.startsWith("/~/") ? rawPath.slice(3) : rawPath;
  return { kind: "ssh", target, path: remotePath };
}

/** Fill in the dated default name where the spec names a directory (trailing `/`) or no agent NAME. */
export function withDefaultName(spec: RemoteSpec, now: Date = new Date()): RemoteSpec {
  const name = defaultBackupFileName(now);
  if (spec.kind === "agent") return spec.name === "" ? { ...spec, name } : spec;
  return spec.path === "" || spec.path.endsWith("/") ? { ...spec, path: spec.path + name } : spec;
}

export function describeRemote(spec: RemoteSpec): string {
  if (spec.kind === "rclone") return `rclone:${spec.remote}:${spec.path}`;
  const host = spec.target.host.includes(":") ? `[${spec.target.host}]` : spec.target.host;
  const authority = `${spec.target.user ? `${spec.target.user}@` : ""}${host}${spec.target.port ? `:${spec.target.port}` : ""}`;
  return spec.kind === "agent"
    ? `ssh+agent://${authority}/${spec.name}`
    : `ssh://${authority}${spec.path.startsWith("/") ? spec.path : `/~/${spec.path}`}`;
}

/** POSIX single-quoting for the remote shell: `it's` → `'it'\''s'`. */
export function shellQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

/** `ssh -o BatchMode=yes [-p PORT] -- [user@]host COMMAND`; `--` so no host can be taken for an option. */
export function sshArgv(target: SshTarget, remoteCommand: string, ssh: readonly string[] = ["ssh"]): string[] {
  const dest = `${target.user ? `${target.user}@` : ""}${target.host}`;
  return [
    ...ssh,
    "-o",
    "BatchMode=yes",
    ...(target.port ? ["-p", String(target.port)] : []),
    "--",
    dest,
    remoteCommand,
  ];
}

/** A remote command run by `sh -c`, whatever the login shell of the remote user is. */
export function remoteSh(script: string): string {
  return `sh -c ${shellQuote(script)}`;
}

/** The hidden name an upload to `file` is written under: `.NAME.partial-RANDOM` beside it. */
export function tempPathFor(file: string, random: string = randomBytes(TEMP_RANDOM_BYTES).toString("hex")): string {
  const dir = path.posix.dirname(file);
  const temp = `.${path.posix.basename(file)}.partial-${random}`;
  return dir === "." && !file.startsWith("./") ? temp : path.posix.join(dir, temp);
}

/** Shell test that fails with REMOTE_EXISTS_STATUS if anything (even a dangling symlink) is at `file`. */
function refuseExisting(file: string, before = ""): string {
  const f = shellQuote(file);
  return (
    `if [ -e ${f} ] || [ -h ${f} ]; then ${before}` +
    `printf '%s already exists\\n' ${f} >&2; exit ${REMOTE_EXISTS_STATUS}; fi`
  );
}

/** Remote script: refuse an existing destination, then write stdin to the new temp file (0600). */
export function sshUploadScript(file: string, temp: string): string {
  return `umask 077 && ${refuseExisting(file)} && set -C && exec cat > ${shellQuote(temp)}`;
}

/** Remote script: make the temp file durable and link it to its final name (ln never replaces). */
export function sshPublishScript(temp: string, file: string): string {
  const t = shellQuote(temp);
  const dir = shellQuote(path.posix.dirname(file));
  return (
    `${refuseExisting(file, `rm -f -- ${t}; `)}; ` +
    `sync -- ${t} 2>/dev/null; ln -- ${t} ${shellQuote(file)} || { rm -f -- ${t}; exit 1; }; ` +
    `rm -f -- ${t}; sync -- ${dir} 2>/dev/null; exit 0`
  );
}

export function sshRemoveScript(temp: string): string {
  return `rm -f -- ${shellQuote(temp)}`;
}

export function sshCatScript(file: string): string {
  return `exec cat -- ${shellQuote(file)}`;
}

/** `rclone VERB REMOTE:PATH…`; REMOTE never starts with `-`, so no argument is taken for a flag. */
export function rcloneArgv(
  verb: string,
  remote: string,
  paths: readonly string[],
  rclone: readonly string[] = ["rclone"],
): string[] {
  return [...rclone, verb, ...paths.map((p) => `${remote}:${p}`)];
}

/** Run a helper command to its end; its status and (bounded) stdout. */
async function runHelper(
  argv: readonly string[],
  what: string,
  timeoutMs: number,
): Promise<{ status: ExitStatus; stdout: string; pipe: ChildPipe }> {
  const pipe = new ChildPipe(argv, { what, errorCode: "ERR_DEST", stallMs: timeoutMs, stdin: false });
  let stdout = "";
  for (;;) {
    const chunk = await pipe.next();
    if (chunk === null) break;
    if (stdout.length < MAX_HELPER_OUTPUT) stdout += chunk.toString("utf8");
  }
  const status = await pipe.waitExit(timeoutMs);
  if (status.spawnError) throw await pipe.exitFailure();
  return { status, stdout, pipe };
}

async function requireHelper(argv: readonly string[], what: string, timeoutMs: number, file: string): Promise<void> {
  const { status, pipe } = await runHelper(argv, what, timeoutMs);
  if (status.code === REMOTE_EXISTS_STATUS) throw existsError(file);
  if (status.code !== 0) throw await pipe.exitFailure();
}

function existsError(where: string): QbackupError {
  return new QbackupError("ERR_DEST_EXISTS", `destination ${where} already exists; refusing to overwrite it`, {
    hint: "choose a new name, or a directory (ending in /) to create a dated backup in",
  });
}

/** A sink whose upload and publication are separate commands (ssh, rclone). */
function stagedSink(
  upload: BackupSink,
  publish: () => Promise<void>,
  cleanup: () => Promise<void>,
  location: string,
): BackupSink {
  let state: "open" | "committed" | "aborted" = "open";
  const abort = async () => {
    if (state !== "open") return;
    state = "aborted";
    await upload.abort();
    await cleanup().catch(() => undefined);
  };
  return {
    location,
    write: (data) => upload.write(data),
    async commit() {
      if (state !== "open") throw new QbackupError("ERR_INTERNAL", `commit of a sink that is ${state}`);
      try {
        await upload.commit();
        await publish();
        state = "committed";
      } catch (err) {
        await abort();
        throw err;
      }
    },
    abort,
  };
}

/** The sink for a remote destination; for rclone the name is checked first. */
export async function openRemoteSink(spec: RemoteSpec, stallMs: number, opts: RemoteOptions = {}): Promise<BackupSink> {
  const full = withDefaultName(spec);
  const location = describeRemote(full);
  if (full.kind === "agent") {
    return agentSink(sshArgv(full.target, AGENT_REMOTE_COMMAND, opts.ssh), full.name, stallMs, location);
  }
  const cleanupMs = Math.min(stallMs, CLEANUP_TIMEOUT_MS);
  const temp = tempPathFor(full.path);
  if (full.kind === "ssh") {
    const ssh = (script: string) => sshArgv(full.target, remoteSh(script), opts.ssh);
    const upload = spawnSink(ssh(sshUploadScript(full.path, temp)), stallMs, {
      location,
      what: "ssh",
      exitError: (status) => (status.code === REMOTE_EXISTS_STATUS ? existsError(location) : undefined),
    });
    return stagedSink(
      upload,
      () => requireHelper(ssh(sshPublishScript(temp, full.path)), "ssh", stallMs, location),
      () => runHelper(ssh(sshRemoveScript(temp)), "ssh", cleanupMs).then(() => undefined),
      location,
    );
  }
  const rclone = (verb: string, ...paths: string[]) => rcloneArgv(verb, full.remote, paths, opts.rclone);
  const refuseIfTaken = async () => {
    const { status, stdout, pipe } = await runHelper(rclone("lsf", full.path), "rclone", stallMs);
    if (status.code === RCLONE_NOT_FOUND_STATUS) return;
    if (status.code !== 0) throw await pipe.exitFailure();
    if (stdout.length > 0) throw existsError(location);
  };
  await refuseIfTaken();
  const upload = spawnSink(rclone("rcat", temp), stallMs, { location, what: "rclone" });
  return stagedSink(
    upload,
    async () => {
      await refuseIfTaken();
      await requireHelper(rclone("moveto", temp, full.path), "rclone", stallMs, location);
    },
    () => runHelper(rclone("deletefile", temp), "rclone", cleanupMs).then(() => undefined),
    location,
  );
}

/** The source for a remote backup. */
export function openRemoteSource(spec: RemoteSpec, stallMs: number, opts: RemoteOptions = {}): ByteSource {
  const description = describeRemote(spec);
  if (spec.kind === "agent") {
    if (spec.name === "") throw new QbackupError("ERR_USAGE", `${description}: which backup? give its NAME`);
    return agentSource(sshArgv(spec.target, AGENT_REMOTE_COMMAND, opts.ssh), spec.name, stallMs, description);
  }
  if (spec.path === "" || spec.path.endsWith("/")) {
    throw new QbackupError("ERR_USAGE", `${description} names a directory; give the backup file`);
  }
  if (spec.kind === "ssh") {
    return spawnSource(sshArgv(spec.target, remoteSh(sshCatScript(spec.path)), opts.ssh), description, "ssh", stallMs);
  }
  return spawnSource(rcloneArgv("cat", spec.remote, [spec.path], opts.rclone), description, "rclone", stallMs);
}
