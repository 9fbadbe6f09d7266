import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ChildPipe, commandSink, spawnSink } from "./command-sink.js";

describe("commandSink", () => {
  let dir: string;
  beforeAll(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), "qb-cmdsink-"))));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("pipes every byte into the command and succeeds on exit 0", async () => {
    const out = path.join(dir, "out.bin");
    const sink = commandSink(`cat > '${out}'`, 5000);
    const data = randomBytes(5 * 1024 * 1024 + 3);
    await sink.write(data.subarray(0, 1000));
    await sink.write(data.subarray(1000));
    await sink.commit();
    expect(fs.readFileSync(out).equals(data)).toBe(true);
    expect(sink.location).toBe(`destination command 'cat > '${out}''`);
  });

  it("a non-zero exit is ERR_DEST with the status and the last stderr line", async () => {
    const sink = commandSink("cat > /dev/null; echo 'first' >&2; echo 'remote: disk quota exceeded' >&2; exit 3", 5000);
    await sink.write(Buffer.from("data"));
    await expect(sink.commit()).rejects.toMatchObject({
      code: "ERR_DEST",
      message: "destination command exited with status 3: remote: disk quota exceeded",
    });
  });

  it("a command that dies while data is still coming fails the write", async () => {
    const sink = commandSink("echo 'cannot connect' >&2; exit 255", 5000);
    let error: unknown;
    try {
      for (let i = 0; i < 100; i++) await sink.write(Buffer.alloc(256 * 1024));
    } catch (err) {
      error = err;
    }
    expect(error).toMatchObject({
      code: "ERR_DEST",
      message: "destination command exited with status 255: cannot connect",
    });
    await sink.abort();
  });

  it("a command that stops taking data is killed within the stall time", async () => {
    const stallMs = 400;
    const sink = commandSink("exec sleep 30", stallMs);
    const started = Date.now();
    let error: unknown;
    try {
      for (;;) await sink.write(Buffer.alloc(256 * 1024));
    } catch (err) {
      error = err;
    }
    const elapsed = Date.now() - started;
    expect(error).toMatchObject({
      code: "ERR_DEST",
      message: "destination command stalled: it accepted no data for 1 s",
    });
    expect(elapsed).toBeGreaterThanOrEqual(stallMs);
    expect(elapsed).toBeLessThan(stallMs + 1500);
    await sink.abort();
  });

  it("a command that never exits after the end of its input is a stall at commit", async () => {
    const sink = commandSink("cat > /dev/null; exec sleep 30", 300);
    await sink.write(Buffer.from("x"));
    await expect(sink.commit()).rejects.toMatchObject({ code: "ERR_DEST", message: /stalled/ });
  });

  it("abort kills the command and can be called twice", async () => {
    const marker = path.join(dir, "finished");
    const sink = commandSink(`cat > /dev/null; touch '${marker}'`, 5000);
    await sink.write(Buffer.from("partial"));
    await sink.abort();
    await sink.abort();
    await new Promise((r) => setTimeout(r, 100));
    expect(fs.existsSync(marker)).toBe(false);
  });

  it("a program that cannot be started is named in the error", async () => {
    const sink = spawnSink(["/nonexistent/uploader"], 5000, { location: "x", what: "uploader" });
    await expect(sink.write(Buffer.from("x"))).rejects.toMatchObject({
      code: "ERR_DEST",
      message: /^cannot run uploader \(\/nonexistent\/uploader\): spawn \/nonexistent\/uploader ENOENT/,
    });
  });

  it("passes the environment through unchanged and uses no shell for an argv", async () => {
    process.env["QB_TEST_MARKER"] = "kept";
    try {
      const pipe = new ChildPipe(["/usr/bin/env"], { what: "env", errorCode: "ERR_DEST", stallMs: 5000, stdin: false });
      let out = "";
      for (let c = await pipe.next(); c !== null; c = await pipe.next()) out += c.toString();
      await pipe.requireSuccess();
      expect(out.split("\n")).toContain("QB_TEST_MARKER=kept");
    } finally {
      delete process.env["QB_TEST_MARKER"];
    }
    const out = path.join(dir, "literal");
    const sink = spawnSink(["tee", `${out};echo`], 5000, { location: out, what: "tee" });
    await sink.write(Buffer.from("no shell"));
    await sink.commit();
    expect(fs.readFileSync(`${out};echo`, "utf8")).toBe("no shell");
  });
});
