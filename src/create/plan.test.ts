import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseSourceSpec, planBackup } from "./plan.js";

describe("parseSourceSpec", () => {
  it("reads NAME=PATH and NAME:VOLUME=PATH, splitting at the first '='", () => {
    expect(parseSourceSpec("work=/a/b.img")).toEqual({ qube: "work", path: "/a/b.img" });
    expect(parseSourceSpec("win:root=/dev/vg/x=y")).toEqual({ qube: "win", volume: "root", path: "/dev/vg/x=y" });
    expect(parseSourceSpec("dom0=/home/user")).toEqual({ qube: "dom0", path: "/home/user" });
  });
  it.each(["work", "=x", "work=", "bad name=/x", "work:=/x", "work:../x=/y", "work:a/b=/y"])("rejects %j", (arg) => {
    expect(() => parseSourceSpec(arg)).toThrow(expect.objectContaining({ code: "ERR_USAGE" }));
  });
});

describe("planBackup", () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "qb-plan-"));
    fs.writeFileSync(path.join(dir, "a.img"), "a");
    fs.writeFileSync(path.join(dir, "b.img"), "b");
    fs.mkdirSync(path.join(dir, "user"));
    fs.mkdirSync(path.join(dir, "Docs"));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true }));
  const p = (name: string) => path.join(dir, name);

  it("gives qubes qids in order, vmN/ paths, volumes as <volume>.img, dom0 home last", async () => {
    const plan = await planBackup(
      [
        `dom0=${p("user")}`,
        `work=${p("a.img")}`,
        `mail=${p("b.img")}`,
        `work:root=${p("b.img")}`,
        `work=${p("Docs")}`,
      ].map(parseSourceSpec),
    );
    expect(plan.qubes.map((q) => [q.name, q.qid, q.backupPath])).toEqual([
      ["work", 1, "vm1/"],
      ["mail", 2, "vm2/"],
    ]);
    expect(plan.qubes[0]!.files.map((f) => [f.kind, f.fileBase])).toEqual([
      ["volume", "vm1/private.img"],
      ["volume", "vm1/root.img"],
      ["tree", "vm1/Docs"],
    ]);
    expect(plan.dom0).toMatchObject({
      user: "user",
      backupPath: "dom0-home/user",
      files: [{ kind: "tree", fileBase: "dom0-home/user" }],
    });
  });

  it.each([
    [["work=a.img", "work=b.img"], "ERR_USAGE", /already has private\.img/],
    [["dom0=a.img"], "ERR_USAGE", /home directory/],
    [["dom0=user", "dom0:x=Docs"], "ERR_USAGE", /only one dom0/],
    [["dom0=Docs"], "ERR_USAGE", /dom0 user name 'Docs'/],
    [["work=missing.img"], "ERR_INPUT", /does not exist/],
    [[], "ERR_USAGE", /nothing to back up/],
  ])("rejects %j", async (args, code, message) => {
    const specs = args.map((a) => {
      const [left, right] = a.split("=");
      return parseSourceSpec(`${left}=${p(right!)}`);
    });
    await expect(planBackup(specs)).rejects.toMatchObject({ code, message: expect.stringMatching(message) });
  });

  it("asks the filesystem for the holes of sparse files only; fully allocated ones are read for zero blocks", async () => {
    fs.writeFileSync(p("sparse.img"), "");
    fs.truncateSync(p("sparse.img"), 64 * 1024 * 1024);
    fs.writeFileSync(p("full.img"), Buffer.alloc(64 * 1024, 1));
    const plan = await planBackup([`a=${p("sparse.img")}`, `b=${p("full.img")}`].map(parseSourceSpec));
    expect(plan.qubes.map((q) => q.files[0])).toMatchObject([
      { kind: "volume", holeSearch: "filesystem", realSize: 64 * 1024 * 1024, estimate: 0 },
      { kind: "volume", holeSearch: "read", realSize: 64 * 1024 },
    ]);
  });

  it("rejects sources that are not files, block devices or directories", async () => {
    await expect(planBackup([parseSourceSpec("work=/dev/null")])).rejects.toMatchObject({ code: "ERR_INPUT" });
  });
});
