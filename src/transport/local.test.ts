import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defaultBackupFileName, openFileSink, resolveLocalDestination } from "./local.js";

describe("local destinations", () => {
  let dir: string;
  beforeAll(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), "qb-local-"))));
  afterAll(() => fs.rmSync(dir, { recursive: true }));

  it("names a backup in a directory like qvm-backup", async () => {
    const now = new Date(2026, 10, 22, 9, 5, 7);
    expect(defaultBackupFileName(now)).toBe("qubes-backup-2026-11-22T090507");
    expect(await resolveLocalDestination(dir, now)).toBe(path.join(dir, "qubes-backup-2026-11-22T090507"));
  });

  it("refuses existing files and dangling symlinks", async () => {
    fs.writeFileSync(path.join(dir, "exists"), "x");
    fs.symlinkSync("/nonexistent", path.join(dir, "dangling"));
    await expect(resolveLocalDestination(path.join(dir, "exists"))).rejects.toMatchObject({ code: "ERR_DEST_EXISTS" });
    await expect(resolveLocalDestination(path.join(dir, "dangling"))).rejects.toMatchObject({
      code: "ERR_DEST_EXISTS",
    });
  });

  it("writes under a hidden temporary name and publishes only on commit", async () => {
    const final = path.join(dir, "b1.bin");
    const sink = await openFileSink(final);
    await sink.write(Buffer.from("hello "));
    await sink.write(Buffer.from("world"));
    expect(fs.existsSync(final)).toBe(false);
    expect(fs.readdirSync(dir).some((f) => f.startsWith(".b1.bin.partial-"))).toBe(true);
    await sink.commit();
    expect(fs.readFileSync(final, "utf8")).toBe("hello world");
    expect(fs.statSync(final).mode & 0o777).toBe(0o600);
    expect(fs.readdirSync(dir).some((f) => f.includes(".partial-"))).toBe(false);
  });

  it("abort removes the partial file", async () => {
    const final = path.join(dir, "b2.bin");
    const sink = await openFileSink(final);
    await sink.write(Buffer.from("partial"));
    await sink.abort();
    await sink.abort();
    expect(fs.readdirSync(dir).filter((f) => f.includes("b2.bin"))).toEqual([]);
  });

  it("never replaces a file that appeared while writing", async () => {
    const final = path.join(dir, "b3.bin");
    const sink = await openFileSink(final);
    await sink.write(Buffer.from("new"));
    fs.writeFileSync(final, "someone else's");
    await expect(sink.commit()).rejects.toMatchObject({ code: "ERR_DEST_EXISTS" });
    expect(fs.readFileSync(final, "utf8")).toBe("someone else's");
    expect(fs.readdirSync(dir).filter((f) => f.includes("b3.bin"))).toEqual(["b3.bin"]);
  });
});
