/**
 * `qbackup ls` and `qbackup extract` against real ext4 images made by `mke2fs -d` (e2fsprogs): a tree
 * with nested directories, a large sparse file, unicode names, symlinks and modes goes into a backup
 * with `qbackup create`; ls and extract give back the same names, bytes, modes and mtimes. Damaged
 * filesystems inside a valid backup fail clearly and in time, a template's root.img is found in its
 * partition table, and the temporary image never takes more disk than its allocated size and is
 * gone afterwards (also after Ctrl-C).
 */
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hasOpen, makeBackup, passphraseFile, runQbackup, tempDir } from "../support/cli.js";
import { allocatedBytes, makeSparseImage, makeTree, snapshotTree } from "../support/sources.js";

const MIB = 1024 * 1024;
/** What makeTree gives every entry (whole seconds: ext4 as mke2fs -d writes it keeps no fractions). */
const TREE_MTIME = new Date("2024-01-02T03:04:05Z");

let root: string;
let pass: string;

/**
 * A home directory for the image, under `src/home/user`: the shared test tree (nested
 * directories, modes, unicode and long names, links) plus a large sparse file and a link out.
 */
function buildHome(src: string): string {
  const home = path.join(src, "home", "user");
  fs.mkdirSync(home, { recursive: true });
  makeTree(home);
  makeSparseImage(path.join(home, "vm.qcow2"), 200 * MIB, [{ label: "vm", offset: 100 * MIB, length: 2 * MIB }]);
  fs.symlinkSync("/etc/passwd", path.join(home, "outside"));
  fs.utimesSync(path.join(home, "vm.qcow2"), TREE_MTIME, TREE_MTIME);
  for (const link of ["outside", "Documents/dangling-link"])
    fs.lutimesSync(path.join(home, link), TREE_MTIME, TREE_MTIME);
  fs.utimesSync(home, TREE_MTIME, TREE_MTIME);
  return home;
}

/** An ext4 image of `src` made by the real mke2fs; `sizeMiB` apparent, sparse. */
function mkfs(src: string, image: string, sizeMiB: number): void {
  fs.closeSync(fs.openSync(image, "w"));
  fs.truncateSync(image, sizeMiB * MIB);
  execFileSync("mke2fs", ["-q", "-F", "-t", "ext4", "-d", src, image]);
}

function jsonLines(out: Buffer): Array<Record<string, unknown>> {
  return out
    .toString()
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

let backup: string;
let home: string;

beforeAll(async () => {
  root = tempDir("qb-browse-");
  pass = passphraseFile(root);
  const src = path.join(root, "src");
  home = buildHome(src);
  const image = path.join(root, "private.img");
  mkfs(src, image, 512);
  backup = path.join(root, "backup.bin");
  await makeBackup(pass, backup, [`work=${image}`], ["--chunk-size", "1M"]);
}, 120_000);
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe("qbackup ls", () => {
  it("-R --json shows every name with its type, size, mode, mtime and link target", async () => {
    const r = await runQbackup(["ls", "-R", "--json", "-p", pass, backup, "work:/home/user"]);
    expect(r.status, r.stderr).toBe(0);
    const lines = jsonLines(r.stdout);
    const expected = snapshotTree(home);
    delete expected[""]; // the listed directory itself is not an entry
    expect(lines.at(-1)).toMatchObject({ type: "summary", command: "ls", entries: Object.keys(expected).length });
    const seen = new Map(
      lines.filter((l) => l["type"] === "entry").map((l) => [String(l["path"]).replace(/^home\/user\//, ""), l]),
    );
    expect([...seen.keys()].sort()).toEqual(Object.keys(expected).sort());
    const KIND = { file: "file", dir: "directory", symlink: "symlink" } as const;
    for (const [rel, want] of Object.entries(expected)) {
      const got = seen.get(rel)!;
      expect(got["kind"], rel).toBe(KIND[want.type]);
      expect(got["mtime"], rel).toBe(new Date(want.mtime * 1000).toISOString());
      if (want.type !== "symlink") expect(Number.parseInt(String(got["mode"]), 8), rel).toBe(want.mode);
      if (want.type === "file") expect(got["size"], rel).toBe(fs.statSync(path.join(home, rel)).size);
      if (want.type === "symlink") expect(got["target"], rel).toBe(want.target);
    }
  });

  it("without -R lists one directory as ls -l would; a file lists itself", async () => {
    const r = await runQbackup(["ls", "-p", pass, backup, "work:home/user/Documents"]);
    expect(r.status, r.stderr).toBe(0);
    // mke2fs -d keeps the owners of the source files: ours
    const ids = `${String(process.getuid!()).padStart(5)} ${String(process.getgid!()).padStart(5)}`;
    const long = `${"long-name-".repeat(12)}.bin`;
    expect(r.stdout.toString()).toBe(
      [
        `lrwxrwxrwx ${ids}           17  2024-01-02 03:04  home/user/Documents/dangling-link -> ../missing-target`,
        `-rw-r----- ${ids}        70000  2024-01-02 03:04  home/user/Documents/${long}`,
        `-rw-r--r-- ${ids}           13  2024-01-02 03:04  home/user/Documents/report-ümlaut-日本.txt`,
        `-rw------- ${ids}           25  2024-01-02 03:04  home/user/Documents/todo.txt`,
        "",
      ].join("\n"),
    );
    const dir = await runQbackup(["ls", "-p", pass, backup, "work:home/user/.config"]);
    expect(dir.stdout.toString()).toBe(`drwxr-xr-x ${ids}         4096  2024-01-02 03:04  home/user/.config/app\n`);
    const one = await runQbackup(["ls", "-p", pass, backup, "work:home/user/todo-link"]);
    expect(one.stdout.toString()).toMatch(/^lrwxrwxrwx .* home\/user\/todo-link -> Documents\/todo\.txt\n$/);
  });

  it("a path that is not there, a qube that is not there, a volume that is not there: one clear line each", async () => {
    const cases: Array<[string[], RegExp]> = [
      [
        ["work:home/nobody"],
        /^qbackup: error: work: private\.img: cannot stat \/home\/nobody: no such file or directory$/m,
      ],
      [["ghost:home"], /^qbackup: error: .*ghost/m],
      [
        ["--volume", "root", "work:etc"],
        /^qbackup: error: qube work has no volume root in this backup \(it has private\.img; choose with --volume\)$/m,
      ],
    ];
    for (const [args, message] of cases) {
      const r = await runQbackup(["ls", "-p", pass, backup, ...args.slice(0, -1), args.at(-1)!]);
      expect(r.status, r.stderr).not.toBe(0);
      expect(r.stderr, args.join(" ")).toMatch(message);
    }
  });
});

describe("qbackup extract", () => {
  it("gives back the same bytes, modes, mtimes and links; holes stay holes; nothing is overwritten", async () => {
    const out = fs.mkdtempSync(path.join(root, "out-"));
    const r = await runQbackup(["extract", "-p", pass, backup, "work:home/user", "-C", out]);
    expect(r.status, r.stderr).toBe(0);
    const got = path.join(out, "user");
    expect(snapshotTree(got)).toEqual(snapshotTree(home));
    expect(allocatedBytes(path.join(got, "vm.qcow2"))).toBeLessThan(8 * MIB);
    expect(fs.readdirSync(out)).toEqual(["user"]); // no temporary names left

    const again = await runQbackup([
      "extract",
      "-p",
      pass,
      backup,
      "work:home/user/.bashrc",
      "work:home/user",
      "-C",
      out,
    ]);
    expect(again.status).toBe(6);
    expect(again.stderr).toMatch(/user already exists; refusing to overwrite it/);
    expect(fs.readdirSync(out)).toEqual(["user"]);
  });

  it("one file, with -C, and --json", async () => {
    const out = fs.mkdtempSync(path.join(root, "one-"));
    const r = await runQbackup(["extract", "--json", "-p", pass, backup, "work:/home/user/bin/run.sh", "-C", out]);
    expect(r.status, r.stderr).toBe(0);
    expect(jsonLines(r.stdout).at(-1)).toMatchObject({
      type: "summary",
      command: "extract",
      extracted: [{ path: "home/user/bin/run.sh", to: path.join(out, "run.sh"), files: 1, bytes: 18 }],
    });
    expect(fs.statSync(path.join(out, "run.sh")).mode & 0o777).toBe(0o755);
  });
});

describe("damaged filesystems inside a valid backup", () => {
  /** A backup of a copy of the image with `damage` applied to it first. */
  async function damagedBackup(name: string, damage: (image: string) => void): Promise<string> {
    const image = path.join(root, `${name}.img`);
    fs.copyFileSync(path.join(root, "private.img"), image);
    damage(image);
    const file = path.join(root, `${name}.bin`);
    await makeBackup(pass, file, [`work=${image}`], ["--chunk-size", "1M"]);
    return file;
  }

  function overwrite(image: string, offset: number, bytes: Buffer): void {
    const fd = fs.openSync(image, "r+");
    fs.writeSync(fd, bytes, 0, bytes.length, offset);
    fs.closeSync(fd);
  }

  it("a zeroed superblock: a clear error, a non-zero exit, and no temporary image left", async () => {
    const file = await damagedBackup("nosuper", (img) => overwrite(img, 1024, Buffer.alloc(1024)));
    const tmp = fs.mkdtempSync(path.join(root, "tmp-"));
    const r = await runQbackup(["ls", "-p", pass, "--tmp-dir", tmp, file, "work:home"], { timeoutMs: 60_000 });
    // a zeroed superblock leaves no sign the volume ever held ext: unsupported (1), not damaged (4)
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(
      /^qbackup: error: work: private\.img: no ext2\/3\/4 filesystem: no superblock at byte 1024/m,
    );
    expect(r.stderr.split("\n").filter((l) => l.startsWith("qbackup: error")).length).toBe(1);
    expect(fs.readdirSync(tmp)).toEqual([]);
  });

  it("a garbled inode table: a clear error and a non-zero exit within the timeout", async () => {
    const dump = execFileSync("dumpe2fs", [path.join(root, "private.img")], { encoding: "utf8", stdio: "pipe" });
    const blockSize = Number(/^Block size:\s+(\d+)/m.exec(dump)![1]);
    const inodeSize = Number(/^Inode size:\s+(\d+)/m.exec(dump)![1]);
    const table = Number(/Inode table at (\d+)-/.exec(dump)![1]);
    // from inode 12, the first one mke2fs -d gives out: the root directory (inode 2) stays sound
    const from = table * blockSize + 11 * inodeSize;
    const file = await damagedBackup("noinodes", (img) => overwrite(img, from, randomBytes(64 * 1024)));
    const r = await runQbackup(["ls", "-R", "-p", pass, file, "work:home/user"], { timeoutMs: 90_000 });
    expect(r.signal).toBeNull();
    expect(r.status).toBe(4);
    expect(r.stderr).toMatch(/^qbackup: error: work: private\.img: cannot /m);
  });
});

describe("other volume layouts", () => {
  it("a root.img with a GPT partition table: the ext4 partition is found", async () => {
    const src = path.join(root, "tmpl-src");
    fs.mkdirSync(path.join(src, "etc"), { recursive: true });
    fs.writeFileSync(path.join(src, "etc", "hostname"), "debian-12\n");
    const disk = path.join(root, "root.img");
    fs.closeSync(fs.openSync(disk, "w"));
    fs.truncateSync(disk, 96 * MIB);
    const sfdisk = spawnSync("sfdisk", ["-q", disk], { input: "label: gpt\n,16M,U\n,,L\n" });
    expect(sfdisk.status, sfdisk.stderr.toString()).toBe(0);
    const table = JSON.parse(execFileSync("sfdisk", ["--json", disk], { encoding: "utf8" })) as {
      partitiontable: { partitions: Array<{ start: number; size: number }> };
    };
    const part = table.partitiontable.partitions[1]!;
    execFileSync("mke2fs", [
      "-q",
      "-F",
      "-t",
      "ext4",
      "-d",
      src,
      "-E",
      `offset=${part.start * 512}`,
      disk,
      `${(part.size * 512) / 1024}k`,
    ]);
    const file = path.join(root, "tmpl.bin");
    await makeBackup(pass, file, [`debian-12:root=${disk}`], ["--chunk-size", "1M"]);
    const r = await runQbackup(["ls", "--volume", "root", "-p", pass, file, "debian-12:etc"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.toString()).toMatch(/ etc\/hostname\n$/);
    const x = await runQbackup(["extract", "--volume", "root", "-p", pass, file, "debian-12:etc/hostname", "-C", root]);
    expect(x.status, x.stderr).toBe(0);
    expect(fs.readFileSync(path.join(root, "hostname"), "utf8")).toBe("debian-12\n");
  });
});

describe("temporary disk", () => {
  const asRoot = process.getuid?.() === 0;

  it.skipIf(!asRoot)("one small file from a 1 GiB image needs no more than the image's allocated size", async () => {
    const src = path.join(root, "big-src");
    fs.mkdirSync(path.join(src, "home", "user"), { recursive: true });
    fs.writeFileSync(path.join(src, "home", "user", "small.txt"), "small\n");
    const image = path.join(root, "big.img");
    mkfs(src, image, 1024);
    const allocated = allocatedBytes(image);
    const file = path.join(root, "big.bin");
    await makeBackup(pass, file, [`work=${image}`]);

    const tmpfs = fs.mkdtempSync(path.join(root, "tmpfs-"));
    // room for the image's allocated blocks and the qube's small files, not for 1 GiB
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${allocated + 4 * MIB}`, "tmpfs", tmpfs]);
    try {
      const out = fs.mkdtempSync(path.join(root, "big-out-"));
      const r = await runQbackup([
        "extract",
        "-p",
        pass,
        "--tmp-dir",
        tmpfs,
        file,
        "work:home/user/small.txt",
        "-C",
        out,
      ]);
      expect(r.status, r.stderr).toBe(0);
      expect(fs.readFileSync(path.join(out, "small.txt"), "utf8")).toBe("small\n");
      expect(fs.readdirSync(tmpfs)).toEqual([]);
    } finally {
      execFileSync("umount", [tmpfs]);
    }
  });

  it("Ctrl-C while the image is being restored removes it", async () => {
    const tmp = fs.mkdtempSync(path.join(root, "int-"));
    const r = await runQbackup(["ls", "-R", "-p", pass, "--tmp-dir", tmp, backup, "work:home"], {
      signal: { name: "SIGINT", when: (pid) => hasOpen(pid, backup) && fs.readdirSync(tmp).length > 0 },
    });
    expect(r.status).toBe(130);
    expect(fs.readdirSync(tmp)).toEqual([]);
  });
});
