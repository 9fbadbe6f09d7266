/**
 * A real OpenSSH server for tests: a private sshd_config in a temp dir (127.0.0.1, a free port,
 * a throw-away ed25519 host key, its own authorized_keys file), run as root with
 * `sshd -D -e -f CONFIG`, plus client key pairs and a known_hosts file, so the tests exercise
 * exactly what a storage host does with a forced command.
 */
import { spawn, spawnSync } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { QBACKUP } from "./cli.js";

const SSHD_CANDIDATES = ["/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd"];
/** sshd needs this directory for privilege separation; Debian creates it only when the service starts. */
const PRIVSEP_DIR = "/run/sshd";
/** Who the tests log in as: the user running them (root in CI). */
export const SSH_USER = os.userInfo().username;
const START_TIMEOUT_MS = 10_000;
const POLL_MS = 50;
const START_ATTEMPTS = 3;

export interface ClientKey {
  /** The private key file. */
  privatePath: string;
  /** The public key line (`ssh-ed25519 AAAA… comment`). */
  publicKey: string;
}

export interface Sshd {
  port: number;
  dir: string;
  /** The first client key pair, made before sshd starts. */
  clientKey: ClientKey;
  /** ssh and its options, without port and destination (for ssh:// and ssh+agent:// specs). */
  sshBase(key?: ClientKey): string[];
  /** `ssh -F /dev/null -i KEY -o UserKnownHostsFile=… -p PORT USER@127.0.0.1`. */
  sshArgv(key?: ClientKey): string[];
  /** Another client key pair (its line still has to be put in authorized_keys). */
  newClientKey(name: string): ClientKey;
  /** Replace authorized_keys; sshd reads it at every login. */
  setAuthorizedKeys(lines: string[]): void;
  /** What sshd printed (with -e), for diagnosing a failed test. */
  log(): string;
  stop(): Promise<void>;
}

export interface SshdOptions {
  /** authorized_keys lines, or a function of the first client's public key giving them. */
  authorizedKeys: string[] | ((clientPublicKey: string) => string[]);
}

/** The forced command that runs this checkout's agent (bin/qbackup.js over dist/). */
export function agentForcedCommand(root: string, appendOnly = true): string {
  return `${process.execPath} ${QBACKUP} agent --root ${root}${appendOnly ? " --append-only" : ""}`;
}

/** `command="…",restrict KEY`. */
export function forcedCommandLine(command: string, publicKey: string): string {
  return `command="${command}",restrict ${publicKey}`;
}

function run(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { stdio: ["ignore", "ignore", "pipe"] });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed: ${r.stderr.toString().trim()}`);
}

function makeKey(dir: string, name: string): ClientKey {
  const privatePath = path.join(dir, name);
  run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", name, "-f", privatePath]);
  return { privatePath, publicKey: fs.readFileSync(`${privatePath}.pub`, "utf8").trim() };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Resolves once something answers on the port with an SSH banner. */
function banner(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once("data", (d: Buffer) => done(d.toString("latin1").startsWith("SSH-2.0-")));
    socket.once("error", () => done(false));
  });
}

export async function startSshd(opts: SshdOptions): Promise<Sshd> {
  const sshd = SSHD_CANDIDATES.find((p) => fs.existsSync(p));
  if (!sshd) throw new Error("sshd is not installed");
  // only a root sshd separates privileges; any other user's sshd logs in just that user
  if (process.getuid?.() === 0 && !fs.existsSync(PRIVSEP_DIR)) {
    fs.mkdirSync(PRIVSEP_DIR, { recursive: true, mode: 0o755 });
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "qb-sshd-"));
  const hostKey = path.join(dir, "host_ed25519");
  run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "qbackup-test-host", "-f", hostKey]);
  const clientKey = makeKey(dir, "client");
  const authorizedKeys = path.join(dir, "authorized_keys");
  const knownHosts = path.join(dir, "known_hosts");
  const config = path.join(dir, "sshd_config");
  const setAuthorizedKeys = (lines: string[]) => fs.writeFileSync(authorizedKeys, lines.map((l) => `${l}\n`).join(""));
  setAuthorizedKeys(
    typeof opts.authorizedKeys === "function" ? opts.authorizedKeys(clientKey.publicKey) : opts.authorizedKeys,
  );

  let lastError = "";
  for (let attempt = 0; attempt < START_ATTEMPTS; attempt++) {
    const port = await freePort();
    fs.writeFileSync(
      config,
      [
        `Port ${port}`,
        "ListenAddress 127.0.0.1",
        `HostKey ${hostKey}`,
        `PidFile ${path.join(dir, "sshd.pid")}`,
        `AuthorizedKeysFile ${authorizedKeys}`,
        "StrictModes no",
        "UsePAM no",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes",
        "PermitRootLogin prohibit-password",
        "AllowAgentForwarding no",
        "AllowTcpForwarding no",
        "X11Forwarding no",
        "PrintMotd no",
        "LogLevel VERBOSE",
        "",
      ].join("\n"),
    );
    fs.writeFileSync(knownHosts, `[127.0.0.1]:${port} ${fs.readFileSync(`${hostKey}.pub`, "utf8")}`);
    let log = "";
    const child: ChildProcess = spawn(sshd, ["-D", "-e", "-f", config], { stdio: ["ignore", "ignore", "pipe"] });
    child.stderr!.on("data", (d: Buffer) => (log = (log + d.toString()).slice(-64 * 1024)));
    let exited = false;
    child.once("exit", () => (exited = true));
    const deadline = Date.now() + START_TIMEOUT_MS;
    let up = false;
    while (!exited && Date.now() < deadline) {
      if (await banner(port)) {
        up = true;
        break;
      }
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
    if (!up) {
      child.kill("SIGKILL");
      lastError = log.trim().split("\n").pop() ?? "no output";
      continue;
    }
    const sshBase = (key: ClientKey = clientKey) => [
      "ssh",
      "-F",
      "/dev/null",
      "-i",
      key.privatePath,
      "-o",
      `UserKnownHostsFile=${knownHosts}`,
      "-o",
      "GlobalKnownHostsFile=/dev/null",
      "-o",
      "StrictHostKeyChecking=yes",
      "-o",
      "IdentitiesOnly=yes",
      "-o",
      "BatchMode=yes",
      "-o",
      "LogLevel=ERROR",
    ];
    return {
      port,
      dir,
      clientKey,
      sshBase,
      sshArgv: (key) => [...sshBase(key), "-p", String(port), `${SSH_USER}@127.0.0.1`],
      newClientKey: (name) => makeKey(dir, name),
      setAuthorizedKeys,
      log: () => log,
      async stop() {
        if (!exited) {
          const gone = new Promise((r) => child.once("exit", r));
          child.kill("SIGTERM");
          await gone;
        }
        fs.rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  fs.rmSync(dir, { recursive: true, force: true });
  throw new Error(`sshd did not start: ${lastError}`);
}
