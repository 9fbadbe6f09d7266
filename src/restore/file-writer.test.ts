/**
 * The small-file writer: every file handed over exists after flush() with its bytes, mode and
 * time; a file it cannot create fails the next call with the destination error naming it, and the
 * files after it are not written.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SmallFileWriter } from "./file-writer.js";

describe("SmallFileWriter", () => {
  let dir: string;
  beforeAll(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), "qb-writer-"))));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("writes every file handed over, over several batches, with its content, mode and time", async () => {
    const out = fs.mkdtempSync(path.join(dir, "many-"));
    const writer = new SmallFileWriter();
    const content = (i: number) => Buffer.alloc(i % 7 === 0 ? 0 : 300 + (i % 5) * 1000, i % 251);
    for (let i = 0; i < 2000; i++) {
      await writer.write(path.join(out, `f${i}`), content(i), i % 2 === 0 ? 0o640 : 0o755, 1_600_000_000 + i);
    }
    await writer.flush();
    await writer.close();
    expect(fs.readdirSync(out)).toHaveLength(2000);
    for (const i of [0, 1, 7, 511, 512, 1999]) {
      const file = path.join(out, `f${i}`);
      expect(fs.readFileSync(file).equals(content(i))).toBe(true);
      const st = fs.statSync(file);
      expect(st.mode & 0o777).toBe(i % 2 === 0 ? 0o640 : 0o755);
      expect(Math.floor(st.mtimeMs / 1000)).toBe(1_600_000_000 + i);
    }
  });

  it("fails with the error of the first file it cannot create, and writes none after it", async () => {
    const out = fs.mkdtempSync(path.join(dir, "clash-"));
    fs.writeFileSync(path.join(out, "f3"), "already here");
    const writer = new SmallFileWriter();
    for (let i = 0; i < 6; i++) await writer.write(path.join(out, `f${i}`), Buffer.from(`file ${i}`), 0o644, 0);
    await expect(writer.flush()).rejects.toMatchObject({
      code: "ERR_DEST_EXISTS",
      message: expect.stringContaining(path.join(out, "f3")),
    });
    await expect(writer.write(path.join(out, "late"), Buffer.from("x"), 0o644, 0)).rejects.toMatchObject({
      code: "ERR_DEST_EXISTS",
    });
    await writer.close();
    expect(fs.readdirSync(out).sort()).toEqual(["f0", "f1", "f2", "f3"]);
    expect(fs.readFileSync(path.join(out, "f3"), "utf8")).toBe("already here");
  });

  it("does not follow a symlink where a file is to be created", async () => {
    const out = fs.mkdtempSync(path.join(dir, "link-"));
    fs.symlinkSync(path.join(dir, "outside"), path.join(out, "f"));
    const writer = new SmallFileWriter();
    await writer.write(path.join(out, "f"), Buffer.from("x"), 0o644, 0);
    await expect(writer.flush()).rejects.toMatchObject({ code: "ERR_DEST_EXISTS" });
    await writer.close();
    expect(fs.existsSync(path.join(dir, "outside"))).toBe(false);
  });
});
