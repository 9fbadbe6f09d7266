/**
 * `qbackup agent --root DIR [--append-only]`: the storage agent on stdin/stdout, meant to be an
 * ssh forced command; and `qbackup agent setup-key NAME PUBKEY`, which prints the
 * authorized_keys line that makes it one for a client's key.
 */
import { Command } from "commander";
import { isValidName } from "../agent/protocol.js";
import { serveAgent } from "../agent/server.js";
import { QbackupError } from "../errors.js";
import { EXIT_OK } from "./exit.js";
import { onInterrupt } from "./interrupt.js";

export const DEFAULT_ROOT_BASE = "/srv/backups";
export const DEFAULT_PROGRAM = "qbackup";
/** Exit status after SIGHUP (128 + 1), as a shell reports it. */
const EXIT_SIGHUP = 129;
/** Key types OpenSSH accepts in authorized_keys that qbackup vouches for. */
export const KNOWN_KEY_TYPES = [
  "ssh-ed25519",
  "ssh-rsa",
  "ecdsa-sha2-nistp256",
  "ecdsa-sha2-nistp384",
  "ecdsa-sha2-nistp521",
  "sk-ssh-ed25519@openssh.com",
  "sk-ecdsa-sha2-nistp256@openssh.com",
] as const;
const MAX_KEY_LINE = 16 * 1024;
/** Characters that are safe unquoted inside command="…" and in the shell that runs it. */
const SAFE_PATH = /^\/[A-Za-z0-9._/+@=:-]*$/;
const SAFE_PROGRAM = /^[A-Za-z0-9._/+@=: -]+$/;
const COMMENT = /^[\x20-\x7e]*$/;

interface ServeFlags {
  root?: string;
  appendOnly?: boolean;
}

export function agentCommand(): Command {
  const agent = new Command("agent")
    .description("serve a backup directory to one client over stdin/stdout (an ssh forced command)")
    .option("--root <dir>", "the directory this client's backups are stored in (must exist)")
    .option("--append-only", "refuse delete and prune: the client can only add and read backups")
    .addHelpText(
      "after",
      `
The agent receives and serves sealed bytes only; it never sees a passphrase or parses a backup.
Names are one path component; an existing backup is never replaced; uploads are published only
once complete and on disk. Install it per client key with the line from \`qbackup agent setup-key\`.

Examples:
  qbackup agent setup-key laptop "$(cat laptop.pub)" >> ~backup/.ssh/authorized_keys
  qbackup create -p pass ssh+agent://backup@storage/ work=/var/lib/qubes/appvms/work/private.img`,
    )
    .action(async (flags: ServeFlags) => {
      process.exitCode = await runAgent(flags);
    });
  agent.addCommand(setupKeyCommand());
  return agent;
}

async function runAgent(flags: ServeFlags): Promise<number> {
  if (flags.root === undefined) throw new QbackupError("ERR_USAGE", "agent: --root DIR is required");
  const controller = new AbortController();
  const forget = onInterrupt(async () => controller.abort());
  const onHangup = () => {
    controller.abort();
    process.exit(EXIT_SIGHUP);
  };
  process.once("SIGHUP", onHangup);
  try {
    await serveAgent(process.stdin, process.stdout, {
      root: flags.root,
      appendOnly: flags.appendOnly === true,
      signal: controller.signal,
    });
    return EXIT_OK;
  } finally {
    forget();
    process.off("SIGHUP", onHangup);
  }
}

function setupKeyCommand(): Command {
  const cmd = new Command("setup-key")
    .description("print the authorized_keys line that ties a client's ssh key to its own append-only agent")
    .argument("<name>", "the client's name; its backups go to ROOT-BASE/NAME")
    .argument("<pubkey>", "the client's public key line (TYPE BASE64 [COMMENT])")
    .option("--root-base <dir>", "the directory holding one backup directory per client", DEFAULT_ROOT_BASE)
    .option("--program <path>", "how sshd should run qbackup on this host", DEFAULT_PROGRAM)
    .action((name: string, pubkey: string, flags: { rootBase: string; program: string }) => {
      process.stdout.write(`${authorizedKeysLine(name, pubkey, flags)}\n`);
      process.stderr.write(`qbackup: create ${flags.rootBase.replace(/\/+$/, "")}/${name} for this client's backups\n`);
      process.exitCode = EXIT_OK;
    });
  // main.ts configures its direct subcommands only; this one sits one level deeper
  cmd.exitOverride();
  cmd.configureOutput({ outputError: (text, write) => write(`qbackup: error: ${text.replace(/^error: /, "")}`) });
  cmd.showHelpAfterError("(run with --help for usage)");
  return cmd;
}

/** `command="PROGRAM agent --root BASE/NAME --append-only",restrict KEY`, every part validated. */
export function authorizedKeysLine(name: string, pubkey: string, opts: { rootBase: string; program: string }): string {
  if (!isValidName(name)) {
    throw new QbackupError("ERR_USAGE", `setup-key: '${name}' is not a valid client name (letters, digits, . _ -)`);
  }
  const base = opts.rootBase.replace(/(.)\/+$/, "$1");
  if (!SAFE_PATH.test(base) || base.split("/").includes("..")) {
    throw new QbackupError("ERR_USAGE", "setup-key: --root-base must be an absolute path of plain characters");
  }
  if (!SAFE_PROGRAM.test(opts.program) || opts.program.startsWith(" ") || opts.program.startsWith("-")) {
    throw new QbackupError("ERR_USAGE", "setup-key: --program must be plain characters (no quotes or shell syntax)");
  }
  const key = checkPublicKey(pubkey);
  const root = base === "/" ? `/${name}` : `${base}/${name}`;
  return `command="${opts.program} agent --root ${root} --append-only",restrict ${key}`;
}

/** A single public key line `TYPE BASE64 [COMMENT]`, with the type inside the blob matching. */
export function checkPublicKey(text: string): string {
  const line = text.trim();
  const bad = (why: string) =>
    new QbackupError("ERR_USAGE", `setup-key: not a usable public key: ${why}`, {
      hint: 'give the contents of the client\'s .pub file, e.g. "$(cat id_ed25519.pub)"',
    });
  if (line.length === 0 || line.length > MAX_KEY_LINE) throw bad("empty or too long");
  if (/[\r\n]/.test(line)) throw bad("more than one line");
  if (/["'\\`]/.test(line) || !COMMENT.test(line)) throw bad("quotes, backslashes or control characters");
  const [type, blob, ...comment] = line.split(/ +/);
  if (!(KNOWN_KEY_TYPES as readonly string[]).includes(type!)) {
    throw bad(`unknown key type '${type}' (options before the key are not accepted)`);
  }
  if (blob === undefined || !/^[A-Za-z0-9+/]+={0,2}$/.test(blob)) throw bad("the key data is not base64");
  const raw = Buffer.from(blob, "base64");
  const innerLength = raw.length >= 4 ? raw.readUInt32BE(0) : -1;
  if (innerLength < 0 || 4 + innerLength > raw.length || raw.subarray(4, 4 + innerLength).toString("latin1") !== type) {
    throw bad(`the key data is not a ${type} key`);
  }
  return [type, blob, ...comment].join(" ");
}
