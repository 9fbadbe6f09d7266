import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { encodeTreeEntryHeader, endOfArchive, entryPadding, paxHeaderNameFor } from "./tree.js";
import type { TreeEntry } from "./tree.js";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "qb-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function tar(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync("tar", args, { env: { ...process.env, LC_ALL: "C", TZ: "UTC" }, encoding: "utf8" });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Test-only walker: entries for `root` and everything below it, parents first, names sorted. */
function walk(root: string, archiveRoot: string): TreeEntry[] {
  const out: TreeEntry[] = [];
  const visit = (abs: string, rel: string): void => {
    const st = fs.lstatSync(abs);
    const common = {
      path: rel,
      mode: st.mode & 0o7777,
      mtime: Math.floor(st.mtimeMs / 1000),
      uid: st.uid,
      gid: st.gid,
      uname: "root",
      gname: "root",
    };
    if (st.isSymbolicLink()) {
      out.push({ ...common, type: "symlink", size: 0, linkname: fs.readlinkSync(abs) });
    } else if (st.isDirectory()) {
      out.push({ ...common, type: "directory", size: 0 });
      for (const name of fs.readdirSync(abs).sort()) visit(path.join(abs, name), `${rel}/${name}`);
    } else {
      out.push({ ...common, type: "file", size: st.size });
    }
  };
  visit(root, archiveRoot);
  return out;
}

/** What a restore must reproduce: type, mode, mtime, content or link target, per relative path. */
function snapshot(root: string): Map<string, string> {
  const m = new Map<string, string>();
  const visit = (abs: string, rel: string): void => {
    const st = fs.lstatSync(abs);
    const mtime = Math.floor(st.mtimeMs / 1000);
    if (st.isSymbolicLink()) {
      m.set(rel, `link -> ${fs.readlinkSync(abs)}`);
    } else if (st.isDirectory()) {
      m.set(rel, `dir ${(st.mode & 0o7777).toString(8)} ${mtime}`);
      for (const name of fs.readdirSync(abs)) visit(path.join(abs, name), `${rel}/${name}`);
    } else {
      const digest = fs.readFileSync(abs).toString("base64");
      m.set(rel, `file ${(st.mode & 0o7777).toString(8)} ${mtime} ${digest}`);
    }
  };
  visit(root, ".");
  return m;
}

function writeArchive(entries: readonly TreeEntry[], sourceRoot: string, archiveRoot: string): string {
  const parts: Buffer[] = [];
  for (const e of entries) {
    parts.push(encodeTreeEntryHeader(e));
    if (e.type === "file") {
      const data = fs.readFileSync(path.join(sourceRoot, path.relative(archiveRoot, e.path)));
      expect(data.length).toBe(e.size);
      parts.push(data, Buffer.alloc(entryPadding(e.size)));
    }
  }
  parts.push(endOfArchive());
  const file = path.join(tmp, `tree-${parts.length}.tar`);
  fs.writeFileSync(file, Buffer.concat(parts));
  return file;
}

const LONG_NAME = `${"n".repeat(116)}.txt`; // 120 characters: needs a pax path record
const UTF8_NAME = "Übersicht – naïve €.txt";
const DEEP = "deep/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb/cccccccccccccccccccccccccc";

function buildSource(): string {
  const src = path.join(tmp, "src", "user");
  const mk = (rel: string, mode: number): void => {
    fs.mkdirSync(path.join(src, rel), { recursive: true });
    fs.chmodSync(path.join(src, rel), mode);
  };
  const put = (rel: string, data: Buffer | string, mode: number): void => {
    fs.writeFileSync(path.join(src, rel), data);
    fs.chmodSync(path.join(src, rel), mode);
  };
  mk("", 0o755);
  mk("Documents", 0o700);
  mk("Documents/nested/deeper", 0o755);
  mk("empty", 0o755);
  mk(DEEP, 0o750);
  put("Documents/a.txt", "hello\n", 0o600);
  put("Documents/nested/deeper/b.bin", randomBytes(70000), 0o644);
  put("run.sh", "#!/bin/sh\necho hi\n", 0o755);
  put("zero-length", "", 0o644);
  put("exact-block", randomBytes(1024), 0o640);
  put(LONG_NAME, "long name\n", 0o644);
  put(UTF8_NAME, "unicode name\n", 0o600);
  put(`${DEEP}/file-in-prefix-path.txt`, "prefix\n", 0o644);
  fs.symlinkSync("Documents/a.txt", path.join(src, "link"));
  fs.symlinkSync("user-data", path.join(src, "x")); // REF-W's --xform would rewrite this target
  fs.symlinkSync("../outside/../target", path.join(src, "Documents/up"));
  fs.symlinkSync(`${"t/".repeat(70)}target`, path.join(src, "long-target"));
  fs.symlinkSync("ziel-€", path.join(src, "utf8-target"));
  // distinct mtimes, deepest first so parents keep theirs
  let t = 1600000000;
  const all = walk(src, ".").reverse();
  for (const e of all) {
    t += 3601;
    if (e.type === "symlink") fs.lutimesSync(path.join(src, e.path), t, t);
    else fs.utimesSync(path.join(src, e.path), t, t);
  }
  return src;
}

describe("directory tree entries", () => {
  it("GNU tar extracts the encoded tree with identical content, modes, mtimes and link targets", () => {
    const src = buildSource();
    const entries = walk(src, "dom0-home/user");
    const archive = writeArchive(entries, src, "dom0-home/user");
    const withPax = entries.filter((e) => encodeTreeEntryHeader(e).length > 512).map((e) => path.basename(e.path));
    expect(withPax.sort()).toEqual([LONG_NAME, UTF8_NAME, "long-target", "utf8-target"].sort());
    const deepFile = entries.find((e) => e.path.endsWith("file-in-prefix-path.txt"));
    expect(deepFile?.path.length).toBeGreaterThan(100); // held by the ustar prefix field, no pax
    expect(snapshot(src).size).toBe(entries.length);
    const dest = path.join(tmp, "dest");
    fs.mkdirSync(dest);
    const x = tar(["-xpf", archive, "-C", dest]);
    expect(x.stderr).toBe("");
    expect(x.status).toBe(0);
    expect(snapshot(path.join(dest, "dom0-home/user"))).toEqual(snapshot(src));
    expect(fs.readlinkSync(path.join(dest, "dom0-home/user/x"))).toBe("user-data");
    expect(fs.statSync(path.join(dest, "dom0-home/user", LONG_NAME)).size).toBe(10);

    const listed = tar(["--quoting-style=literal", "-tf", archive]).stdout.split("\n");
    expect(listed).toContain("dom0-home/user/empty/");
    expect(listed).toContain(`dom0-home/user/${UTF8_NAME}`);
  });

  it("uses a pax header only when ustar cannot hold a value", () => {
    const base: TreeEntry = {
      path: "dom0-home/user/a.txt",
      type: "file",
      size: 6,
      mode: 0o100644,
      mtime: 1700000000,
      uid: 1000,
      gid: 1000,
      uname: "user",
      gname: "user",
    };
    const plain = encodeTreeEntryHeader(base);
    expect(plain.length).toBe(512);
    expect(plain.subarray(100, 108).toString("latin1")).toBe("0000644\0");
    const dir = encodeTreeEntryHeader({ ...base, type: "directory", path: "dom0-home/user/d" });
    expect(dir.subarray(0, 18).toString("latin1")).toBe("dom0-home/user/d/\0");
    expect(dir.subarray(124, 136).toString("latin1")).toBe("00000000000\0"); // size ignored for directories
    const link = encodeTreeEntryHeader({ ...base, type: "symlink", path: "dom0-home/user/x", linkname: "user-data" });
    expect(link.subarray(157, 167).toString("latin1")).toBe("user-data\0");

    const recordsOf = (h: Buffer): string => h.subarray(512, 1024).toString("utf8").replace(/\0+$/u, "");
    const utf8 = encodeTreeEntryHeader({ ...base, path: "dom0-home/user/é" });
    expect(utf8.length).toBe(1536);
    expect(utf8.subarray(0, 30).toString("latin1")).toBe("dom0-home/user/PaxHeaders/_\0\0\0");
    expect(recordsOf(utf8)).toBe("26 path=dom0-home/user/é\n");
    expect(utf8.subarray(1024, 1042).toString("latin1")).toBe("dom0-home/user/_\0\0");
    const owners = encodeTreeEntryHeader({ ...base, uid: 3000000, uname: "ü".repeat(20), mtime: -86400 });
    expect(recordsOf(owners)).toBe(`15 uid=3000000\n16 mtime=-86400\n50 uname=${"ü".repeat(20)}\n`);
    expect(paxHeaderNameFor("dom0-home/user/d")).toBe("dom0-home/user/PaxHeaders/d");
    expect(paxHeaderNameFor("top")).toBe("./PaxHeaders/top");
  });

  it("GNU tar reads big uids, negative mtimes and long owner names from pax", () => {
    const e: TreeEntry = {
      path: "dom0-home/user/old.txt",
      type: "file",
      size: 3,
      mode: 0o644,
      mtime: -86400,
      uid: 3000000,
      gid: 4000000,
      uname: "a-very-long-user-name-over-32-bytes",
      gname: "grp",
    };
    const file = path.join(tmp, "owners.tar");
    fs.writeFileSync(
      file,
      Buffer.concat([encodeTreeEntryHeader(e), Buffer.from("abc"), Buffer.alloc(509), endOfArchive()]),
    );
    const numeric = tar(["--numeric-owner", "-tvf", file]);
    expect(numeric.stderr).toBe("");
    expect(numeric.stdout).toMatch(/^-rw-r--r-- 3000000\/4000000 +3 1969-12-31 00:00 dom0-home\/user\/old\.txt\n$/u);
    expect(tar(["-tvf", file]).stdout).toContain("a-very-long-user-name-over-32-bytes/grp");
  });

  it("rejects unsafe paths and bad values", () => {
    const base: TreeEntry = {
      path: "dom0-home/user/a",
      type: "file",
      size: 0,
      mode: 0o644,
      mtime: 0,
      uid: 0,
      gid: 0,
      uname: "",
      gname: "",
    };
    const unsafe = expect.objectContaining({ code: "ERR_UNSAFE_PATH" });
    const malformed = expect.objectContaining({ code: "ERR_TAR_MALFORMED" });
    for (const p of ["/etc/passwd", "a/../b", "a/./b", "a//b", "a/", "", "a\0b"]) {
      expect(() => encodeTreeEntryHeader({ ...base, path: p })).toThrow(unsafe);
    }
    expect(() => encodeTreeEntryHeader({ ...base, mtime: 1.25 })).toThrow(malformed);
    expect(() => encodeTreeEntryHeader({ ...base, size: -1 })).toThrow(malformed);
    expect(() => encodeTreeEntryHeader({ ...base, type: "symlink" })).toThrow(malformed);
    expect(() => encodeTreeEntryHeader({ ...base, type: "symlink", linkname: "a\0b" })).toThrow(malformed);
  });
});
