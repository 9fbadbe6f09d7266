/**
 * What restore reads and decrypts: `list` stops after the manifest, and a selective restore from
 * a file seeks over the other qubes' chunks without reading or decrypting them.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { ContainerOpener } from "../../src/codec/scrypt/index.js";
import { DEFAULT_KDF_LIMITS } from "../../src/codec/scrypt/index.js";
import { listBackup, restoreBackup } from "../../src/restore/index.js";
import { commandSource, openFileSource } from "../../src/transport/source.js";
import type { ByteSource } from "../../src/transport/source.js";
import { makeBackup, passphraseFile, tempDir, TEST_PASSPHRASE } from "../support/cli.js";
import { prng, sha256File } from "../support/sources.js";

const MiB = 1024 * 1024;
let dir: string;
let pass: string;
beforeAll(() => {
  dir = tempDir("qb-reads-");
  pass = passphraseFile(dir);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const options = () => ({ passphrase: TEST_PASSPHRASE, kdfLimits: DEFAULT_KDF_LIMITS });

describe("list", () => {
  it("reads less than 2 MiB of a backup with 100 MiB chunks, from a file and from a pipe", async () => {
    const big = path.join(dir, "big.img");
    fs.writeFileSync(big, prng("big", 120 * MiB)); // incompressible: the first chunk is a full 100 MiB
    const backup = path.join(dir, "big.bin");
    await makeBackup(pass, backup, [`big=${big}`], []);
    expect(fs.statSync(backup).size).toBeGreaterThan(120 * MiB);

    const file = await openFileSource(backup);
    const listing = await listBackup(file, options());
    expect(listing.domains.find((d) => d.name === "big")).toMatchObject({ included: true, backupPath: "vm1/" });
    expect(file.bytesRead).toBeLessThan(2 * MiB);

    const pipe = commandSource(`cat '${backup}'`, 30_000);
    await listBackup(pipe, options());
    expect(pipe.bytesRead).toBeLessThan(2 * MiB);
  });
});

describe("selective restore", () => {
  it("onlyFiles restores the chosen volume of a qube and skips the others, which are not missing", async () => {
    const priv = path.join(dir, "two-private.img");
    const rootImg = path.join(dir, "two-root.img");
    fs.writeFileSync(priv, prng("private", 2 * MiB));
    fs.writeFileSync(rootImg, prng("root", 2 * MiB));
    const backup = path.join(dir, "two.bin");
    await makeBackup(pass, backup, [`t=${priv}`, `t:root=${rootImg}`]);
    const opened: string[] = [];
    const out = path.join(dir, "only-root");
    const report = await restoreBackup(await openFileSource(backup), {
      ...options(),
      onlyFiles: ["root.img"],
      destDir: out,
      onEvent: (e) => {
        if (e.type === "opened") opened.push(...e.selected.flatMap((q) => q.volumes));
      },
    });
    expect(report.ok).toBe(true);
    expect(opened.sort()).toEqual(["private.img", "root.img"]);
    expect(report.qubes.find((q) => q.name === "t")!.files.map((f) => f.name)).toEqual(["root.img"]);
    expect(sha256File(path.join(out, "t/root.img"))).toBe(sha256File(rootImg));
    expect(fs.existsSync(path.join(out, "t/private.img"))).toBe(false);
  });

  it("never reads or decrypts the chunks of qubes that were not selected", async () => {
    const files = ["a", "b", "c"].map((q) => {
      const f = path.join(dir, `${q}.img`);
      fs.writeFileSync(f, prng(q, 3 * MiB));
      return f;
    });
    const backup = path.join(dir, "abc.bin");
    await makeBackup(pass, backup, [`a=${files[0]}`, `b=${files[1]}`, `c=${files[2]}`]);

    const opened: string[] = [];
    const original = ContainerOpener.create.bind(ContainerOpener);
    const spy = vi.spyOn(ContainerOpener, "create").mockImplementation((header, passphrase, limits) => {
      opened.push(Buffer.from(passphrase).toString("utf8"));
      return original(header, passphrase, limits);
    });
    const source = await openFileSource(backup);
    let report;
    try {
      report = await restoreBackup(source, { ...options(), include: ["b"], destDir: path.join(dir, "only-b") });
    } finally {
      spy.mockRestore();
    }
    expect(report.ok).toBe(true);
    expect(sha256File(path.join(dir, "only-b/b/private.img"))).toBe(sha256File(files[1]!));
    // qube a is vm1/, b is vm2/, c is vm3/: only b's chunks (and the header, manifest) were opened
    const ids = opened.map((s) => s.split("!").slice(0, -1).join("!"));
    expect(ids.filter((s) => s.includes("vm1/") || s.includes("vm3/"))).toEqual([]);
    const bMembers = execFileSync("tar", ["-i", "-tf", backup], { encoding: "utf8" })
      .split("\n")
      .filter((m) => m.startsWith("vm2/"));
    expect(bMembers.length).toBeGreaterThan(1);
    expect(ids.filter((s) => s.includes("vm2/private.img.")).length).toBe(bMembers.length);
    // and their bytes were seeked over, not read: what was read is b's chunks twice (authenticated,
    // then read again to decrypt) plus the rest once; the look-ahead reads only the 512-byte tar
    // header of each member it passes (well under 128 KiB here)
    const bBytes = execFileSync("tar", ["-i", "-tvf", backup], { encoding: "utf8" })
      .split("\n")
      .filter((l) => l.includes(" vm2/"))
      .reduce((n, l) => n + Number(l.trim().split(/\s+/)[2]), 0);
    expect(bBytes).toBeGreaterThan(3 * MiB);
    expect(source.bytesRead).toBeLessThan(fs.statSync(backup).size - 2 * 3 * MiB + bBytes + 128 * 1024);
  });
});

/** `honest`, except that `lie` may change what a positional read returns. */
function lyingSource(honest: ByteSource, lie: (bytes: Buffer, at: number, n: number) => void): ByteSource {
  return {
    ...honest,
    get bytesRead() {
      return honest.bytesRead;
    },
    read: (n: number) => honest.read(n),
    skip: (n: number) => honest.skip(n),
    close: (a?: boolean) => honest.close(a),
    pread: async (at: number, n: number) => {
      const bytes = await honest.pread!(at, n);
      lie(bytes, at, n);
      return bytes;
    },
  };
}

describe("key derivation ahead of the reader", () => {
  it("refuses a member whose header changed between the look-ahead and the read", async () => {
    const img = path.join(dir, "toctou.img");
    fs.writeFileSync(img, prng("toctou", 2 * MiB));
    const backup = path.join(dir, "toctou.bin");
    await makeBackup(pass, backup, [`t=${img}`]);

    let lookAheads = 0;
    // the storage shows one thing to the look-ahead and another to the reader
    const lying = lyingSource(await openFileSource(backup), (bytes, _at, n) => {
      if (n === 96) {
        lookAheads++;
        bytes[40] = bytes[40]! ^ 1; // a salt byte
      }
    });
    await expect(
      restoreBackup(lying, { ...options(), jobs: 2, destDir: path.join(dir, "toctou-out") }),
    ).rejects.toMatchObject({
      code: "ERR_CHUNK_AUTH",
      message: expect.stringMatching(/changed while it was being read/),
    });
    expect(lookAheads).toBeGreaterThan(0);
    const out = path.join(dir, "toctou-out");
    expect(fs.existsSync(out) ? fs.readdirSync(out) : []).toEqual([]);
  });

  it("refuses a member whose bytes differ in the second pass from those authenticated in the first", async () => {
    const img = path.join(dir, "second-pass.img");
    fs.writeFileSync(img, prng("second pass", 3 * MiB)); // incompressible: three 1 MiB pieces in one chunk
    const backup = path.join(dir, "second-pass.bin");
    await makeBackup(pass, backup, [`t=${img}`]);

    for (const lieAt of [1, 2]) {
      const readsAt = new Map<number, number>();
      let rereads = 0;
      // the storage shows the first pass one thing and the second pass (a piece read again) another
      const lying = lyingSource(await openFileSource(backup), (bytes, at, n) => {
        const reads = (readsAt.get(at) ?? 0) + 1;
        readsAt.set(at, reads);
        if (n > 4096 && reads === 2 && ++rereads === lieAt) bytes[n >> 1] = bytes[n >> 1]! ^ 0x20;
      });
      const out = path.join(dir, `second-pass-${lieAt}`);
      await expect(restoreBackup(lying, { ...options(), destDir: out })).rejects.toMatchObject({
        code: "ERR_CHUNK_AUTH",
        message: expect.stringMatching(/changed while it was being read/),
      });
      expect(rereads).toBe(lieAt);
      expect(fs.existsSync(out) ? fs.readdirSync(out) : []).toEqual([]);
    }
  });

  it("restores the same bytes with and without look-ahead", async () => {
    const img = path.join(dir, "ahead.img");
    fs.writeFileSync(img, prng("ahead", 3 * MiB));
    const backup = path.join(dir, "ahead.bin");
    await makeBackup(pass, backup, [`a=${img}`]);
    for (const jobs of [1, 3]) {
      const out = path.join(dir, `ahead-${jobs}`);
      const report = await restoreBackup(await openFileSource(backup), { ...options(), jobs, destDir: out });
      expect(report.ok).toBe(true);
      expect(sha256File(path.join(out, "a/private.img"))).toBe(sha256File(img));
    }
  });
});
