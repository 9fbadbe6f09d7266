/**
 * rclone: names through remote.ts, bytes through the real `rclone rcat`/`cat`/`lsf`/`moveto`
 * against a local remote defined in a throw-away config (RCLONE_CONFIG).
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openRemoteSink, openRemoteSource, parseRemote } from "../../src/transport/remote.js";
import { readAll } from "../support/byte-source.js";

const STALL_MS = 15_000;

describe("rclone remotes", () => {
  let dir: string;
  const saved: Record<string, string | undefined> = {};
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "qb-rclone-"));
    fs.writeFileSync(path.join(dir, "rclone.conf"), "[loc]\ntype = local\n");
    fs.mkdirSync(path.join(dir, "store"));
    // the child gets process.env as is: set the config here, and drop a CA bundle rclone may trip over
    for (const k of ["RCLONE_CONFIG", "AWS_CA_BUNDLE"]) saved[k] = process.env[k];
    process.env["RCLONE_CONFIG"] = path.join(dir, "rclone.conf");
    delete process.env["AWS_CA_BUNDLE"];
  });
  afterAll(() => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const store = () => path.join(dir, "store");

  it("round-trips bytes with rcat and cat, publishing only on commit", async () => {
    const spec = parseRemote(`rclone:loc:${store()}/sub/b1.bin`);
    const data = randomBytes(2 * 1024 * 1024 + 9);
    const sink = await openRemoteSink(spec, STALL_MS);
    await sink.write(data.subarray(0, 1_000_000));
    await sink.write(data.subarray(1_000_000));
    expect(fs.existsSync(path.join(store(), "sub", "b1.bin"))).toBe(false);
    await sink.commit();
    expect(fs.readdirSync(path.join(store(), "sub"))).toEqual(["b1.bin"]);
    expect(fs.readFileSync(path.join(store(), "sub", "b1.bin")).equals(data)).toBe(true);
    expect((await readAll(openRemoteSource(spec, STALL_MS))).equals(data)).toBe(true);
  });

  it("refuses an existing name before uploading anything", async () => {
    fs.writeFileSync(path.join(store(), "taken"), "original");
    await expect(openRemoteSink(parseRemote(`rclone:loc:${store()}/taken`), STALL_MS)).rejects.toMatchObject({
      code: "ERR_DEST_EXISTS",
    });
    expect(fs.readFileSync(path.join(store(), "taken"), "utf8")).toBe("original");
  });

  it("abort leaves nothing; a directory gets the dated name", async () => {
    const sink = await openRemoteSink(parseRemote(`rclone:loc:${store()}/aborted.bin`), STALL_MS);
    await sink.write(randomBytes(500_000));
    await sink.abort();
    expect(fs.readdirSync(store()).filter((f) => f.includes("aborted"))).toEqual([]);

    const dated = await openRemoteSink(parseRemote(`rclone:loc:${store()}/dated/`), STALL_MS);
    await dated.write(Buffer.from("x"));
    await dated.commit();
    expect(fs.readdirSync(path.join(store(), "dated"))).toEqual([expect.stringMatching(/^qubes-backup-\d{4}-/)]);
  });

  it("a missing file or remote is ERR_SOURCE with rclone's own words", async () => {
    const missing = openRemoteSource(parseRemote(`rclone:loc:${store()}/nope`), STALL_MS);
    await expect(missing.read(1)).rejects.toMatchObject({ code: "ERR_SOURCE", message: /^rclone exited with status/ });
    const unknown = openRemoteSource(parseRemote("rclone:nosuchremote:x"), STALL_MS);
    await expect(unknown.read(1)).rejects.toMatchObject({ code: "ERR_SOURCE", message: /nosuchremote/ });
  });
});
