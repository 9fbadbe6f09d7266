import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DataPiece, InnerEntry } from "../codec/tar/index.js";
import { OutputDirectory, resolveInside } from "./place.js";

async function* pieces(...list: DataPiece[]): AsyncGenerator<DataPiece> {
  yield* list;
}
const base = { mode: 0o755, mtime: 1_700_000_000, uid: 0, gid: 0, uname: "", gname: "", sparse: false };
const dirEntry = (p: string): InnerEntry => ({ ...base, path: p, type: "directory", size: 0 });
const fileEntry = (p: string, size: number): InnerEntry => ({ ...base, path: p, type: "file", size, mode: 0o4755 });
const link = (p: string, target: string): InnerEntry => ({
  ...base,
  path: p,
  type: "symlink",
  size: 0,
  linkname: target,
});

describe("OutputDirectory", () => {
  let dir: string;
  beforeAll(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), "qb-place-"))));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("writes sparse files, drops set-uid bits, and publishes only on commit", async () => {
    const out = await OutputDirectory.create(dir, path.join(dir, "q1"), false);
    const data = Buffer.alloc(256 * 1024);
    data.write("start", 0);
    data.write("end", data.length - 3);
    await out.place("f.img", fileEntry("x/f.img", 10 * 1024 * 1024), pieces({ offset: 4096, bytes: data }));
    await out.finish();
    expect(fs.existsSync(path.join(dir, "q1"))).toBe(false);
    await out.commit();
    const st = fs.statSync(path.join(dir, "q1/f.img"));
    expect(st.size).toBe(10 * 1024 * 1024);
    expect(st.mode & 0o7777).toBe(0o755);
    expect(st.blocks * 512).toBeLessThan(200 * 1024); // the zero middle of the piece was not written
    const back = fs.readFileSync(path.join(dir, "q1/f.img"));
    expect(back.subarray(4096, 4096 + data.length).equals(data)).toBe(true);
  });

  it("accepts a directory entry that comes after its children", async () => {
    const out = await OutputDirectory.create(dir, path.join(dir, "q2"), false);
    await out.place("t/a/b.txt", fileEntry("t/a/b.txt", 1), pieces({ offset: 0, bytes: Buffer.from("x") }));
    await out.place("t/a", dirEntry("t/a"), pieces());
    await expect(out.place("t/a", dirEntry("t/a"), pieces())).rejects.toMatchObject({ code: "ERR_TAR_MALFORMED" });
    await out.abort();
    expect(fs.readdirSync(dir).filter((f) => f.includes("q2"))).toEqual([]);
  });

  it("never writes through a symlink or a file", async () => {
    const out = await OutputDirectory.create(dir, path.join(dir, "q3"), false);
    await out.place("t/l", link("t/l", "."), pieces());
    await expect(out.place("t/l/x", fileEntry("t/l/x", 0), pieces())).rejects.toMatchObject({
      code: "ERR_UNSAFE_PATH",
    });
    await out.place("t/f", fileEntry("t/f", 0), pieces());
    await expect(out.place("t/f/x", fileEntry("t/f/x", 0), pieces())).rejects.toMatchObject({
      code: "ERR_UNSAFE_PATH",
    });
    await expect(out.place("t/../x", fileEntry("t/../x", 0), pieces())).rejects.toMatchObject({
      code: "ERR_UNSAFE_PATH",
    });
    await out.abort();
  });
});

describe("OutputDirectory with many small files (written by a worker thread)", () => {
  let dir: string;
  beforeAll(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), "qb-place-many-"))));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const small = (p: string, text: string): [InnerEntry, AsyncGenerator<DataPiece>] => [
    { ...fileEntry(p, text.length), mode: 0o640 },
    pieces({ offset: 0, bytes: Buffer.from(text) }),
  ];

  it("publishes every file, and a hard link to one still on its way, complete", async () => {
    const out = await OutputDirectory.create(dir, path.join(dir, "home"), false);
    for (let i = 0; i < 3000; i++) await out.place(`d${i % 10}/f${i}`, ...small(`d${i % 10}/f${i}`, `file ${i}\n`));
    const hard: InnerEntry = { ...base, path: "d0/hard", type: "hardlink", size: 0, linkname: "d9/f2999" };
    await out.place("d0/hard", hard, pieces(), "d9/f2999");
    await out.finish();
    await out.commit();
    const home = path.join(dir, "home");
    expect(fs.readdirSync(home).flatMap((d) => fs.readdirSync(path.join(home, d)))).toHaveLength(3001);
    expect(fs.readFileSync(path.join(home, "d7/f1237"), "utf8")).toBe("file 1237\n");
    expect(fs.statSync(path.join(home, "d7/f1237")).mode & 0o777).toBe(0o640);
    expect(fs.readFileSync(path.join(home, "d0/hard"), "utf8")).toBe("file 2999\n");
  });

  it("leaves nothing behind when aborted while files are being written", async () => {
    const out = await OutputDirectory.create(dir, path.join(dir, "gone"), false);
    for (let i = 0; i < 2000; i++) await out.place(`f${i}`, ...small(`f${i}`, "x".repeat(2000)));
    await out.abort();
    expect(fs.readdirSync(dir).filter((f) => f.includes("gone"))).toEqual([]);
  });

  it("fails the restore of the directory when a file cannot be written, and removes it", async () => {
    const out = await OutputDirectory.create(dir, path.join(dir, "clash"), false);
    for (let i = 0; i < 100; i++) await out.place(`f${i}`, ...small(`f${i}`, "x"));
    fs.writeFileSync(path.join(out.root, "f100"), "appeared meanwhile"); // created behind the restore's back
    await out.place("f100", ...small("f100", "x"));
    await expect(out.finish()).rejects.toMatchObject({ code: "ERR_DEST_EXISTS" });
    await out.abort();
    expect(fs.readdirSync(dir).filter((f) => f.includes("clash"))).toEqual([]);
  });
});

describe("resolveInside", () => {
  const links = new Map([
    ["a", "."],
    ["deep", "x/y/z"],
    ["up", ".."],
  ]);
  it.each([
    [["t"], "../x", ["x"]],
    [[], "deep/../w", ["x", "y", "w"]],
    [[], "a/a/a/x", ["x"]],
  ])("from %j, %s stays inside", (from, target, expected) => {
    expect(resolveInside(links, from, target, 0)).toEqual(expected);
  });
  it.each([
    [[], "../x"],
    [[], "/etc/passwd"],
    [[], "a/../x"], // a is the root itself: .. from there leaves it
    [[], "up/x"],
    [["t"], "../../x"],
  ])("from %j, %s escapes", (from, target) => {
    expect(resolveInside(links, from, target, 0)).toBeNull();
  });
  it("a loop is refused, not followed forever", () => {
    expect(
      resolveInside(
        new Map([
          ["p", "q/x"],
          ["q", "p/x"],
        ]),
        [],
        "p/x/y",
        0,
      ),
    ).toBeNull();
  });
});
