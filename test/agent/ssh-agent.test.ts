/**
 * The storage agent behind a real sshd, as a forced command per client key — exactly how a
 * storage host runs it. Needs `npm run build` (the forced command runs bin/qbackup.js over dist/).
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { agentDelete, agentList, agentPrune, agentSink, agentSource } from "../../src/agent/client.js";
import { ProtocolReader, frameHeader, pullerFrom } from "../../src/agent/protocol.js";
import { openRemoteSink, openRemoteSource, parseRemote } from "../../src/transport/remote.js";
import { readAll } from "../support/byte-source.js";
import { QBACKUP, runQbackup } from "../support/cli.js";
import { SSH_USER, agentForcedCommand, forcedCommandLine, startSshd } from "../support/sshd.js";
import type { ClientKey, Sshd } from "../support/sshd.js";

const STALL_MS = 15_000;

/** ssh by hand, speaking the protocol directly (what a hostile client could send). */
function rawSession(argv: string[]) {
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ["pipe", "pipe", "pipe"] });
  child.stdin.on("error", () => undefined);
  const reader = new ProtocolReader(pullerFrom(child.stdout), "ERR_SOURCE", "raw ssh");
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return {
    child,
    reader,
    exited,
    send: (data: string | Buffer) => child.stdin.write(data),
    async request(line: string) {
      child.stdin.write(`${line}\n`);
      return reader.readLine();
    },
  };
}

async function waitFor(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("storage agent over a real sshd", () => {
  let base: string;
  let sshd: Sshd;
  let rootA: string;
  let rootB: string;
  let keyB: ClientKey;
  let keyAdmin: ClientKey;
  let keyShell: ClientKey;
  let keyLaptop: ClientKey;
  const lines: string[] = [];

  beforeAll(async () => {
    base = fs.mkdtempSync(path.join(os.tmpdir(), "qb-ssh-"));
    rootA = path.join(base, "a");
    rootB = path.join(base, "b");
    fs.mkdirSync(rootA);
    fs.mkdirSync(rootB);
    sshd = await startSshd({ authorizedKeys: (pub) => [forcedCommandLine(agentForcedCommand(rootA), pub)] });
    keyB = sshd.newClientKey("client-b");
    keyAdmin = sshd.newClientKey("admin");
    keyShell = sshd.newClientKey("shell");
    keyLaptop = sshd.newClientKey("laptop");
    lines.push(
      forcedCommandLine(agentForcedCommand(rootA), sshd.clientKey.publicKey),
      forcedCommandLine(agentForcedCommand(rootB), keyB.publicKey),
      forcedCommandLine(agentForcedCommand(rootA, false), keyAdmin.publicKey),
      `restrict ${keyShell.publicKey}`,
    );
    sshd.setAuthorizedKeys(lines);
  });

  afterAll(async () => {
    await sshd?.stop();
    fs.rmSync(base, { recursive: true, force: true });
  });

  it("put then get returns the same bytes", async () => {
    const data = randomBytes(3 * 1024 * 1024 + 11);
    const sink = agentSink(sshd.sshArgv(), "b1", STALL_MS);
    for (let off = 0; off < data.length; off += 700_000) await sink.write(data.subarray(off, off + 700_000));
    await sink.commit();
    expect(fs.readFileSync(path.join(rootA, "b1")).equals(data)).toBe(true);
    expect((await readAll(agentSource(sshd.sshArgv(), "b1", STALL_MS))).equals(data)).toBe(true);
    const list = await agentList(sshd.sshArgv(), STALL_MS);
    expect(list.map((e) => [e.name, e.size])).toEqual([["b1", data.length]]);
  });

  it("works through ssh+agent:// names in remote.ts", async () => {
    const spec = parseRemote(`ssh+agent://${SSH_USER}@127.0.0.1:${sshd.port}/b2`);
    const data = randomBytes(100_000);
    const sink = await openRemoteSink(spec, STALL_MS, { ssh: sshd.sshBase() });
    await sink.write(data);
    await sink.commit();
    expect((await readAll(openRemoteSource(spec, STALL_MS, { ssh: sshd.sshBase() }))).equals(data)).toBe(true);
  });

  it("an append-only key cannot delete, prune or overwrite", async () => {
    fs.writeFileSync(path.join(rootA, "keep"), "original");
    await expect(agentDelete(sshd.sshArgv(), "keep", STALL_MS)).rejects.toMatchObject({
      code: "ERR_DEST",
      message: "storage agent refused delete keep: append-only: delete is not allowed (ERR_APPEND_ONLY)",
    });
    await expect(agentPrune(sshd.sshArgv(), { keepLast: 0 }, STALL_MS)).rejects.toMatchObject({
      code: "ERR_DEST",
      message: /append-only: prune is not allowed/,
    });
    const sink = agentSink(sshd.sshArgv(), "keep", STALL_MS);
    await expect(sink.write(Buffer.from("replacement"))).rejects.toMatchObject({ code: "ERR_DEST_EXISTS" });
    await sink.abort();
    expect(fs.readFileSync(path.join(rootA, "keep"), "utf8")).toBe("original");
    // the same root through a key without --append-only can delete
    await agentDelete(sshd.sshArgv(keyAdmin), "keep", STALL_MS);
    expect(fs.existsSync(path.join(rootA, "keep"))).toBe(false);
  });

  it("a key cannot read another client's root, escape with ../, or run anything but the agent", async () => {
    fs.writeFileSync(path.join(rootB, "secret"), "b's backup");
    fs.symlinkSync(path.join(rootB, "secret"), path.join(rootA, "link-to-b"));
    const source = agentSource(sshd.sshArgv(), "secret", STALL_MS);
    await expect(source.read(1)).rejects.toMatchObject({ code: "ERR_SOURCE", message: /no backup named secret/ });
    await source.close(true);

    // a hand-made client asking for the command it likes; the forced command answers regardless
    const raw = rawSession([...sshd.sshArgv(), "cat", path.join(rootB, "secret")]);
    expect(await raw.reader.readLine()).toBe("qbackup-agent 1");
    expect(await raw.request("get ../b/secret")).toMatch(/^error ERR_NAME name '\.\.\/b\/secret' contains '\.\.'/);
    expect(await raw.request(`get ${path.join(rootB, "secret")}`)).toMatch(/^error ERR_NAME /);
    expect(await raw.request("get link-to-b")).toBe("error ERR_NOT_REGULAR link-to-b is not a regular file");
    expect(await raw.request("put ../b/planted")).toMatch(/^error ERR_NAME /);
    raw.child.stdin.end();
    expect(await raw.exited).toBe(0);
    expect(fs.readdirSync(rootB)).toEqual(["secret"]);
    fs.unlinkSync(path.join(rootA, "link-to-b"));
  });

  it("killing the client mid-stream leaves no complete-looking file on the server", async () => {
    const raw = rawSession(sshd.sshArgv());
    expect(await raw.reader.readLine()).toBe("qbackup-agent 1");
    expect(await raw.request("put killed")).toBe("ok ready");
    const piece = randomBytes(1024 * 1024);
    for (let i = 0; i < 3; i++) raw.send(Buffer.concat([frameHeader(piece.length), piece]));
    const entries = () => fs.readdirSync(rootA).filter((f) => f.includes("killed"));
    await waitFor(() => entries().length > 0);
    expect(entries()[0]).toMatch(/^\.killed\.partial-/);
    raw.child.kill("SIGKILL");
    await waitFor(() => entries().length === 0);
    expect(fs.existsSync(path.join(rootA, "killed"))).toBe(false);

    // the same through the client: abort kills ssh, the agent drops its temp file
    const sink = agentSink(sshd.sshArgv(), "aborted", STALL_MS);
    await sink.write(randomBytes(2 * 1024 * 1024));
    await sink.abort();
    await waitFor(() => !fs.readdirSync(rootA).some((f) => f.includes("aborted")));
  });

  it("the setup-key line works as a real authorized_keys entry", async () => {
    const keysBase = path.join(base, "clients");
    fs.mkdirSync(path.join(keysBase, "laptop"), { recursive: true });
    const r = await runQbackup([
      "agent",
      "setup-key",
      "laptop",
      keyLaptop.publicKey,
      "--root-base",
      keysBase,
      "--program",
      `${process.execPath} ${QBACKUP}`,
    ]);
    expect(r.status).toBe(0);
    const line = r.stdout.toString().trim();
    expect(line).toBe(
      `command="${process.execPath} ${QBACKUP} agent --root ${keysBase}/laptop --append-only",restrict ${keyLaptop.publicKey}`,
    );
    sshd.setAuthorizedKeys([...lines, line]);
    const data = randomBytes(50_000);
    const sink = agentSink(sshd.sshArgv(keyLaptop), "from-laptop", STALL_MS);
    await sink.write(data);
    await sink.commit();
    expect(fs.readFileSync(path.join(keysBase, "laptop", "from-laptop")).equals(data)).toBe(true);
    await expect(agentDelete(sshd.sshArgv(keyLaptop), "from-laptop", STALL_MS)).rejects.toMatchObject({
      message: /append-only/,
    });

    const bad = await runQbackup(["agent", "setup-key", "laptop", 'ssh-ed25519 AAAA" evil']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/^qbackup: error: setup-key: not a usable public key/);
  });

  it("plain ssh:// uploads to a temp name, publishes without replacing, and reads back", async () => {
    const dir = path.join(base, "plain");
    fs.mkdirSync(dir);
    const spec = parseRemote(`ssh://${SSH_USER}@127.0.0.1:${sshd.port}${dir}/it's.bin`);
    const opts = { ssh: sshd.sshBase(keyShell) };
    const data = randomBytes(1024 * 1024 + 3);
    const sink = await openRemoteSink(spec, STALL_MS, opts);
    await sink.write(data);
    expect(fs.existsSync(path.join(dir, "it's.bin"))).toBe(false);
    await sink.commit();
    expect(fs.readdirSync(dir)).toEqual(["it's.bin"]);
    expect((await readAll(openRemoteSource(spec, STALL_MS, opts))).equals(data)).toBe(true);

    const again = await openRemoteSink(spec, STALL_MS, opts);
    let error: unknown;
    try {
      await again.write(Buffer.alloc(1024 * 1024));
      await again.commit();
    } catch (err) {
      error = err;
    }
    expect(error).toMatchObject({ code: "ERR_DEST_EXISTS" });
    await again.abort();

    const aborted = await openRemoteSink(
      parseRemote(`ssh://${SSH_USER}@127.0.0.1:${sshd.port}${dir}/`),
      STALL_MS,
      opts,
    );
    await aborted.write(randomBytes(100_000));
    await aborted.abort();
    expect(fs.readdirSync(dir)).toEqual(["it's.bin"]);

    const missing = openRemoteSource(
      parseRemote(`ssh://${SSH_USER}@127.0.0.1:${sshd.port}${dir}/nope`),
      STALL_MS,
      opts,
    );
    await expect(missing.read(1)).rejects.toMatchObject({
      code: "ERR_SOURCE",
      message: /ssh exited with status 1: cat: /,
    });
  });
});
