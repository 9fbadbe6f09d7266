import { createHash, randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { PassThrough } from "node:stream";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { END_FRAME, GREETING, ProtocolReader, formatTrailer, frameHeader, pullerFrom } from "./protocol.js";
import { serveAgent } from "./server.js";
import type { AgentServerOptions } from "./server.js";

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

/** An agent served in-process over two PassThrough streams, and the client's end of them. */
function connect(opts: AgentServerOptions) {
  const input = new PassThrough();
  const output = new PassThrough();
  const done = serveAgent(input, output, opts);
  done.catch(() => undefined);
  const reader = new ProtocolReader(pullerFrom(output), "ERR_SOURCE", "test client");
  return {
    done,
    reader,
    send: (data: string | Buffer) => input.write(data),
    end: () => input.end(),
    async request(line: string): Promise<string> {
      input.write(`${line}\n`);
      return (await reader.readLine())!;
    },
    async greeting() {
      expect(await reader.readLine()).toBe(GREETING);
    },
  };
}

/** Frames of at most `frame` bytes, the end frame and the right trailer. */
function framed(data: Buffer, frame = 64 * 1024, trailer = formatTrailer(data.length, sha256(data))): Buffer {
  const parts: Buffer[] = [];
  for (let off = 0; off < data.length; off += frame) {
    const piece = data.subarray(off, off + frame);
    parts.push(frameHeader(piece.length), piece);
  }
  return Buffer.concat([...parts, END_FRAME, Buffer.from(trailer)]);
}

async function readData(reader: ProtocolReader): Promise<{ data: Buffer; trailer: string }> {
  const parts: Buffer[] = [];
  for (;;) {
    const f = await reader.readFrame();
    if (f === null) break;
    parts.push(Buffer.from(f));
  }
  return { data: Buffer.concat(parts), trailer: (await reader.readLine())! };
}

describe("serveAgent", () => {
  let base: string;
  let root: string;
  beforeEach(() => {
    base = fs.mkdtempSync(path.join(os.tmpdir(), "qb-agent-"));
    root = path.join(base, "root");
    fs.mkdirSync(root);
  });
  afterEach(() => fs.rmSync(base, { recursive: true, force: true }));
  const files = () => fs.readdirSync(root).sort();

  it("stores with put, serves with get, lists, and ends cleanly at EOF", async () => {
    const c = connect({ root, appendOnly: true });
    await c.greeting();
    const data = randomBytes(3 * 1024 * 1024 + 17);
    expect(await c.request("put b1")).toBe("ok ready");
    c.send(framed(data, 1024 * 1024));
    expect(await c.reader.readLine()).toBe(`ok ${data.length} ${sha256(data)}`);
    expect(files()).toEqual(["b1"]);
    expect(fs.statSync(path.join(root, "b1")).mode & 0o777).toBe(0o600);

    expect(await c.request("get b1")).toBe(`ok ${data.length}`);
    const got = await readData(c.reader);
    expect(got.data.equals(data)).toBe(true);
    expect(got.trailer).toBe(`end ${data.length} ${sha256(data)}`);

    const mtime = fs.statSync(path.join(root, "b1")).mtime.toISOString();
    expect(await c.request("list")).toBe("ok 1");
    expect(await c.reader.readLine()).toBe(`b1 ${data.length} ${mtime}`);
    c.end();
    await expect(c.done).resolves.toBeUndefined();
  });

  it("stores an empty backup", async () => {
    const c = connect({ root, appendOnly: true });
    await c.greeting();
    expect(await c.request("put empty")).toBe("ok ready");
    c.send(framed(Buffer.alloc(0)));
    expect(await c.reader.readLine()).toBe(`ok 0 ${sha256(Buffer.alloc(0))}`);
    expect(await c.request("get empty")).toBe("ok 0");
    expect((await readData(c.reader)).data.length).toBe(0);
  });

  it("a stream cut in the middle of a frame leaves no file at all", async () => {
    const c = connect({ root, appendOnly: true });
    await c.greeting();
    expect(await c.request("put cut")).toBe("ok ready");
    const whole = framed(randomBytes(200_000));
    c.send(whole.subarray(0, 100_000));
    await new Promise((r) => setTimeout(r, 50));
    expect(files()).toHaveLength(1); // the hidden temp file, while receiving
    expect(files()[0]).toMatch(/^\.cut\.partial-[0-9a-f]{12}$/);
    c.end();
    await expect(c.done).rejects.toMatchObject({ code: "ERR_SOURCE" });
    expect(files()).toEqual([]);
  });

  it("a stream cut exactly after a whole frame, or before the trailer, publishes nothing", async () => {
    for (const cutAt of ["frame", "trailer"] as const) {
      const c = connect({ root, appendOnly: true });
      await c.greeting();
      expect(await c.request("put b")).toBe("ok ready");
      const data = Buffer.from("complete-looking data");
      c.send(Buffer.concat([frameHeader(data.length), data, ...(cutAt === "trailer" ? [END_FRAME] : [])]));
      c.end();
      await expect(c.done).rejects.toThrow(cutAt === "frame" ? /before the end frame/ : /before the trailer/);
      expect(await c.reader.readLine()).toMatch(/^error ERR_PROTOCOL /);
      expect(files()).toEqual([]);
    }
  });

  it("a trailer that does not match the data publishes nothing", async () => {
    const data = Buffer.from("payload");
    for (const trailer of [
      formatTrailer(data.length, sha256(Buffer.from("other!!"))),
      formatTrailer(6, sha256(data)),
    ]) {
      const c = connect({ root, appendOnly: true });
      await c.greeting();
      expect(await c.request("put p")).toBe("ok ready");
      c.send(framed(data, 3, trailer));
      expect(await c.reader.readLine()).toMatch(/^error ERR_INTEGRITY receiving p: trailer does not match/);
      await expect(c.done).rejects.toMatchObject({ code: "ERR_SOURCE" });
      expect(files()).toEqual([]);
    }
  });

  it("refuses a frame length over the limit and drops the temp file", async () => {
    const c = connect({ root, appendOnly: true });
    await c.greeting();
    expect(await c.request("put big")).toBe("ok ready");
    c.send(Buffer.from([0xff, 0xff, 0xff, 0xff]));
    expect(await c.reader.readLine()).toMatch(/^error ERR_PROTOCOL .*exceeds/);
    await expect(c.done).rejects.toMatchObject({ code: "ERR_SOURCE" });
    expect(files()).toEqual([]);
  });

  it("never replaces an existing backup, and the session goes on", async () => {
    fs.writeFileSync(path.join(root, "b1"), "original");
    const c = connect({ root, appendOnly: true });
    await c.greeting();
    expect(await c.request("put b1")).toBe("error ERR_EXISTS b1 already exists; backups are never replaced");
    expect(await c.request("list")).toMatch(/^ok 1$/);
    expect(fs.readFileSync(path.join(root, "b1"), "utf8")).toBe("original");
  });

  it("refuses names that are not one plain component, touching nothing", async () => {
    fs.writeFileSync(path.join(base, "x"), "outside");
    fs.writeFileSync(path.join(root, ".hidden"), "hidden");
    const c = connect({ root, appendOnly: false });
    await c.greeting();
    for (const req of ["put ../x", "get ../x", "delete ../x", "put a/b", "get a/b", "get .hidden", "delete .hidden"]) {
      expect(await c.request(req), req).toMatch(/^error ERR_NAME /);
    }
    expect(fs.readFileSync(path.join(base, "x"), "utf8")).toBe("outside");
    expect(files()).toEqual([".hidden"]);
    expect(await c.request("list")).toBe("ok 0");
  });

  it("never follows a symlink out of the root", async () => {
    const secret = path.join(base, "secret");
    fs.writeFileSync(secret, "outside data");
    fs.symlinkSync(secret, path.join(root, "leak"));
    fs.symlinkSync(path.join(base, "nowhere"), path.join(root, "dangling"));
    fs.mkdirSync(path.join(root, "dir"));
    const c = connect({ root, appendOnly: false });
    await c.greeting();
    expect(await c.request("get leak")).toBe("error ERR_NOT_REGULAR leak is not a regular file");
    expect(await c.request("get dir")).toBe("error ERR_NOT_REGULAR dir is not a regular file");
    expect(await c.request("put leak")).toMatch(/^error ERR_EXISTS /);
    expect(await c.request("put dangling")).toMatch(/^error ERR_EXISTS /);
    expect(await c.request("delete leak")).toBe("error ERR_NOT_REGULAR leak is not a regular file");
    expect(await c.request("list")).toBe("ok 0");
    expect(await c.request("get nothing")).toBe("error ERR_NOT_FOUND no backup named nothing");
    expect(fs.readFileSync(secret, "utf8")).toBe("outside data");
    expect(fs.existsSync(path.join(base, "nowhere"))).toBe(false);
  });

  it("append-only refuses delete and prune; without it they work", async () => {
    fs.writeFileSync(path.join(root, "b1"), "x");
    const ro = connect({ root, appendOnly: true });
    await ro.greeting();
    expect(await ro.request("delete b1")).toBe("error ERR_APPEND_ONLY append-only: delete is not allowed");
    expect(await ro.request("prune --keep-last 0")).toBe("error ERR_APPEND_ONLY append-only: prune is not allowed");
    expect(files()).toEqual(["b1"]);
    const rw = connect({ root, appendOnly: false });
    await rw.greeting();
    expect(await rw.request("delete b1")).toBe("ok");
    expect(await rw.request("delete b1")).toBe("error ERR_NOT_FOUND no backup named b1");
    expect(files()).toEqual([]);
  });

  it("prunes by the agent's own mtimes, leaving temp files and foreign names alone", async () => {
    const now = new Date("2026-11-22T12:00:00Z");
    const day = 86_400_000;
    for (const [name, ageDays] of [
      ["d01", 1],
      ["d10", 10],
      ["d40", 40],
      ["d50", 50],
      ["d60", 60],
    ] as const) {
      const p = path.join(root, name);
      fs.writeFileSync(p, name);
      const t = new Date(now.getTime() - ageDays * day);
      fs.utimesSync(p, t, t);
    }
    fs.writeFileSync(path.join(root, ".d99.partial-0123456789ab"), "in progress");
    fs.utimesSync(path.join(root, ".d99.partial-0123456789ab"), 0, 0);
    const c = connect({ root, appendOnly: false, now: () => now });
    await c.greeting();
    expect(await c.request("prune --keep-within 30d --keep-last 3")).toBe("ok 2");
    expect([await c.reader.readLine(), await c.reader.readLine()]).toEqual(["d50", "d60"]);
    expect(await c.request("prune --keep-within 30d")).toBe("ok 1");
    expect(await c.reader.readLine()).toBe("d40");
    expect(await c.request("prune")).toMatch(/^error ERR_PRUNE_SPEC .*refusing to delete everything/);
    expect(files()).toEqual([".d99.partial-0123456789ab", "d01", "d10"]);
  });

  it("restore instructions go with their backup and are not counted as backups", async () => {
    const now = new Date("2026-11-22T12:00:00Z");
    const day = 86_400_000;
    for (const [name, ageDays] of [
      ["b1", 1],
      ["b2", 2],
      ["b3", 3],
    ] as const) {
      for (const file of [name, `${name}.RESTORE-INSTRUCTIONS.txt`]) {
        fs.writeFileSync(path.join(root, file), file);
        const t = new Date(now.getTime() - ageDays * day + (file === name ? 0 : 1000));
        fs.utimesSync(path.join(root, file), t, t);
      }
    }
    const c = connect({ root, appendOnly: false, now: () => now });
    await c.greeting();
    // three sheets younger than b2 and b3 would push both out of --keep-last 2 if they counted
    expect(await c.request("prune --keep-last 2")).toBe("ok 1");
    expect(await c.reader.readLine()).toBe("b3");
    expect(await c.request("delete b2")).toBe("ok");
    expect(files()).toEqual(["b1", "b1.RESTORE-INSTRUCTIONS.txt"]);
  });

  it("an abort signal removes the temp file of a put in progress at once", async () => {
    const controller = new AbortController();
    const c = connect({ root, appendOnly: true, signal: controller.signal });
    await c.greeting();
    expect(await c.request("put b1")).toBe("ok ready");
    c.send(Buffer.concat([frameHeader(10), Buffer.from("0123456789")]));
    await new Promise((r) => setTimeout(r, 50));
    expect(files()).toHaveLength(1);
    controller.abort();
    expect(files()).toEqual([]);
  });

  it("ends the session on a malformed request or an overlong line", async () => {
    const c = connect({ root, appendOnly: true });
    await c.greeting();
    expect(await c.request("remove b1")).toBe("error ERR_PROTOCOL unknown request 'remove'");
    await expect(c.done).rejects.toMatchObject({ code: "ERR_SOURCE" });
    const d = connect({ root, appendOnly: true });
    await d.greeting();
    d.send("x".repeat(5000));
    expect(await d.reader.readLine()).toMatch(/^error ERR_PROTOCOL line longer than 1024 bytes/);
    await expect(d.done).rejects.toMatchObject({ code: "ERR_SOURCE" });
  });

  it("a client hanging up in the middle of a get ends the session with ERR_SOURCE", async () => {
    fs.writeFileSync(path.join(root, "big"), randomBytes(3 * 1024 * 1024));
    const input = new PassThrough();
    const output = new PassThrough({ highWaterMark: 1024 });
    const done = serveAgent(input, output, { root, appendOnly: true });
    input.write("get big\n");
    await new Promise((r) => setTimeout(r, 50));
    output.destroy();
    await expect(done).rejects.toMatchObject({
      code: "ERR_SOURCE",
      message: "agent: the client closed the connection",
    });
  });

  it("refuses to start without an existing root directory", async () => {
    const c = connect({ root: path.join(base, "missing"), appendOnly: true });
    await expect(c.done).rejects.toMatchObject({ code: "ERR_USAGE" });
    expect(await c.reader.readLine()).toBe("error ERR_IO the storage root is not available");
  });
});
