/**
 * The agent client against the real agent CLI run locally (bin/qbackup.js over dist/: run
 * `npm run build` first) and against scripted fake agents that misbehave on purpose.
 */
import { createHash, randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { agentDelete, agentList, agentPrune, agentSink, agentSource } from "./client.js";

const QBACKUP = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../bin/qbackup.js");
const STALL_MS = 10_000;
const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

async function readAll(source: ReturnType<typeof agentSource>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (;;) {
    const piece = await source.read(300_000);
    if (piece.length === 0) break;
    parts.push(Buffer.from(piece));
  }
  return Buffer.concat(parts);
}

/** A fake agent: writes `wire` at once, exits once the client's request arrived (or its input ended). */
function fakeAgent(wire: Buffer): string[] {
  const script =
    `process.stdout.write(Buffer.from("${wire.toString("base64")}", "base64")); ` +
    `process.stdin.once("data", () => process.exit(0)); process.stdin.once("end", () => process.exit(0));`;
  return [process.execPath, "-e", script];
}

const frame = (b: Buffer) => {
  const h = Buffer.alloc(4);
  h.writeUInt32BE(b.length);
  return Buffer.concat([h, b]);
};

describe("agent client", () => {
  let dir: string;
  let agent: (appendOnly?: boolean) => string[];
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "qb-client-"));
    agent = (appendOnly = true) => [
      process.execPath,
      QBACKUP,
      "agent",
      "--root",
      dir,
      ...(appendOnly ? ["--append-only"] : []),
    ];
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("puts and gets the same bytes, and lists them", async () => {
    const data = randomBytes(2 * 1024 * 1024 + 5);
    const sink = agentSink(agent(), "b1", STALL_MS);
    await sink.write(data.subarray(0, 10));
    await sink.write(data.subarray(10));
    await sink.commit();
    expect(fs.readFileSync(path.join(dir, "b1")).equals(data)).toBe(true);

    const source = agentSource(agent(), "b1", STALL_MS);
    expect(source.seekable).toBe(false);
    const back = await readAll(source);
    await source.close();
    expect(back.equals(data)).toBe(true);
    expect(source.bytesRead).toBe(data.length);

    const list = await agentList(agent(), STALL_MS);
    expect(list.map((e) => [e.name, e.size])).toEqual([["b1", data.length]]);
  });

  it("an existing name is refused at the first write, as ERR_DEST_EXISTS", async () => {
    fs.writeFileSync(path.join(dir, "taken"), "original");
    const sink = agentSink(agent(), "taken", STALL_MS);
    await expect(sink.write(Buffer.from("x"))).rejects.toMatchObject({
      code: "ERR_DEST_EXISTS",
      message: "storage agent refused put taken: taken already exists; backups are never replaced (ERR_EXISTS)",
    });
    await sink.abort();
    expect(fs.readFileSync(path.join(dir, "taken"), "utf8")).toBe("original");
  });

  it("abort in the middle leaves nothing behind", async () => {
    const sink = agentSink(agent(), "aborted", STALL_MS);
    await sink.write(randomBytes(3 * 1024 * 1024));
    await sink.abort();
    await sink.abort();
    expect(fs.readdirSync(dir).filter((f) => f.includes("aborted"))).toEqual([]);
  });

  it("delete and prune are refused by an append-only agent and work otherwise", async () => {
    fs.writeFileSync(path.join(dir, "old"), "x");
    await expect(agentDelete(agent(), "old", STALL_MS)).rejects.toMatchObject({
      code: "ERR_DEST",
      message: /append-only: delete is not allowed \(ERR_APPEND_ONLY\)/,
    });
    await expect(agentPrune(agent(), { keepLast: 100 }, STALL_MS)).rejects.toMatchObject({ code: "ERR_DEST" });
    await agentDelete(agent(false), "old", STALL_MS);
    expect(fs.existsSync(path.join(dir, "old"))).toBe(false);
    expect(await agentPrune(agent(false), { keepWithinMs: 3_600_000 }, STALL_MS)).toEqual([]);
  });

  it("a missing backup is ERR_SOURCE; a bad name never reaches the agent", async () => {
    const source = agentSource(agent(), "missing", STALL_MS);
    await expect(source.read(1)).rejects.toMatchObject({ code: "ERR_SOURCE", message: /no backup named missing/ });
    await source.close(true);
    expect(() => agentSource(agent(), "../x", STALL_MS)).toThrow(expect.objectContaining({ code: "ERR_SOURCE" }));
    expect(() => agentSink(agent(), "a/b", STALL_MS)).toThrow(expect.objectContaining({ code: "ERR_DEST" }));
  });

  it("a stream cut before the trailer is an error, never a short read", async () => {
    const wire = Buffer.concat([Buffer.from("qbackup-agent 1\nok 10\n"), frame(Buffer.from("01234"))]);
    const source = agentSource(fakeAgent(wire), "b", STALL_MS);
    await expect(readAll(source)).rejects.toMatchObject({ code: "ERR_SOURCE", message: /stream ended/ });
    await source.close(true);
  });

  it("data that does not match the trailer is an error before its last byte is handed out", async () => {
    const data = Buffer.from("0123456789");
    const wire = Buffer.concat([
      Buffer.from("qbackup-agent 1\nok 10\n"),
      frame(data),
      Buffer.alloc(4),
      Buffer.from(`end 10 ${sha256(Buffer.from("9876543210"))}\n`),
    ]);
    const source = agentSource(fakeAgent(wire), "b", STALL_MS);
    await expect(source.read(10)).rejects.toMatchObject({
      code: "ERR_SOURCE",
      message: "storage agent: b arrived incomplete or altered (10 of 10 bytes)",
    });
    await source.close(true);
  });

  it("something that is not an agent, a dead command and a silent one are one-line errors", async () => {
    const notAgent = agentSink(["/bin/echo", "Welcome to the shell"], "b", STALL_MS);
    await expect(notAgent.write(Buffer.from("x"))).rejects.toMatchObject({
      code: "ERR_DEST",
      message: "storage agent: not a qbackup agent (it said 'Welcome to the shell')",
    });
    await notAgent.abort();

    const denied = agentSink(["/bin/sh", "-c", "echo 'Permission denied (publickey).' >&2; exit 255"], "b", STALL_MS);
    await expect(denied.write(Buffer.from("x"))).rejects.toMatchObject({
      code: "ERR_DEST",
      message: "storage agent exited with status 255: Permission denied (publickey).",
    });
    await denied.abort();

    const missing = agentSource(["/nonexistent/ssh"], "b", STALL_MS);
    await expect(missing.read(1)).rejects.toMatchObject({ code: "ERR_SOURCE", message: /^cannot run storage agent/ });
    await missing.close(true);

    const started = Date.now();
    const silent = agentSource(["sleep", "30"], "b", 400);
    await expect(silent.read(1)).rejects.toMatchObject({
      code: "ERR_SOURCE",
      message: "storage agent stalled: it did not respond for 1 s",
    });
    expect(Date.now() - started).toBeLessThan(3000);
    await silent.close(true);
  });
});
