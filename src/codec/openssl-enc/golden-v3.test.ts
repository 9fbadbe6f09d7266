/**
 * The two v3 codecs together on the golden v3 backup (test/fixtures/golden/v3, built by the
 * reference scripts with stock openssl): every `.hmac` verifies with HmacVerifier, every file's
 * chunks decrypt with SaltedDecryptor, and what comes out (through gunzip and GNU tar) is
 * byte-identical to the golden sources.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { gunzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HmacVerifier, headerHmacCandidates, parseDgstOutput } from "../openssl-dgst/index.js";
import { SaltedDecryptor } from "./index.js";

const GOLDEN = new URL("../../../test/fixtures/golden/", import.meta.url);
const PASSPHRASE = Buffer.from("qubes-fixture-passphrase");

let tmp: string;
let outer: string;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "qb-"));
  outer = path.join(tmp, "outer");
  fs.mkdirSync(outer);
  const r = spawnSync("tar", ["-i", "-xf", new URL("v3/qubes-backup-v3.bin", GOLDEN).pathname, "-C", outer]);
  if (r.status !== 0) throw new Error(`tar -i -xf: ${r.stderr.toString()}`);
});

afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function goldenSums(): Map<string, string> {
  const sums = new Map<string, string>();
  for (const line of fs.readFileSync(new URL("src/SHA256SUMS", GOLDEN), "utf8").trim().split("\n")) {
    const [sum, rel] = line.split(/ +/) as [string, string];
    sums.set(rel.replace(/^\.\//, ""), sum);
  }
  return sums;
}

/** Verify each chunk of `base`, then decrypt the concatenation as one stream. */
function openFile(base: string): Buffer {
  const dec = new SaltedDecryptor("aes-256-cbc", PASSPHRASE);
  const out: Buffer[] = [];
  for (let i = 0; ; i++) {
    const chunk = path.join(outer, `${base}.${String(i).padStart(3, "0")}`);
    if (!fs.existsSync(chunk)) break;
    const data = fs.readFileSync(chunk);
    new HmacVerifier("SHA512", PASSPHRASE).update(data).verify(parseDgstOutput(fs.readFileSync(`${chunk}.hmac`)));
    out.push(dec.update(data));
  }
  out.push(dec.final());
  return gunzipSync(Buffer.concat(out));
}

function untar(tarBytes: Buffer, dir: string): void {
  fs.mkdirSync(dir, { recursive: true });
  const r = spawnSync("tar", ["-xf", "-", "-C", dir], { input: tarBytes, maxBuffer: 1024 * 1024 });
  if (r.status !== 0) throw new Error(`tar -x: ${r.stderr.toString()}`);
}

const sha256 = (file: string) => createHash("sha256").update(fs.readFileSync(file)).digest("hex");

describe("golden v3 backup through the v3 codecs", () => {
  it("authenticates backup-header with the candidate digest", () => {
    const expected = parseDgstOutput(fs.readFileSync(path.join(outer, "backup-header.hmac")));
    const candidates = headerHmacCandidates(expected.length * 2);
    expect(candidates).toEqual(["sha512"]);
    new HmacVerifier(candidates[0]!, PASSPHRASE)
      .update(fs.readFileSync(path.join(outer, "backup-header")))
      .verify(expected, "backup-header");
  });

  it("restores qubes.xml, the qube's files and the dom0 home byte-identically", () => {
    const dest = path.join(tmp, "extracted");
    for (const base of [
      "qubes.xml",
      "vm5/private.img",
      "vm5/firewall.xml",
      "vm5/whitelisted-appmenus.list",
      "dom0-home/user",
    ]) {
      untar(openFile(base), dest);
    }
    expect(fs.readFileSync(path.join(dest, "qubes.xml"))).toEqual(
      fs.readFileSync(new URL("v3/qubes.xml.plain", GOLDEN)),
    );
    const sums = goldenSums();
    for (const [rel, sum] of sums) {
      if (rel.startsWith("vm/")) continue; // the v4 copy of the sources
      const restored = rel.startsWith("vm-r3/work/")
        ? path.join(dest, "vm5", rel.slice("vm-r3/work/".length))
        : path.join(dest, "dom0-home", rel.slice("home/".length));
      expect(sha256(restored), rel).toBe(sum);
    }
    expect(fs.statSync(path.join(dest, "vm5/private.img")).size).toBe(64 * 1024 * 1024);
  });

  it("refuses a chunk whose ciphertext was changed, at its hmac", () => {
    const chunk = fs.readFileSync(path.join(outer, "vm5/private.img.001"));
    chunk[12345]! ^= 0x80;
    const v = new HmacVerifier("sha512", PASSPHRASE).update(chunk);
    expect(() =>
      v.verify(parseDgstOutput(fs.readFileSync(path.join(outer, "vm5/private.img.001.hmac"))), "chunk"),
    ).toThrow(expect.objectContaining({ code: "ERR_CHUNK_AUTH" }));
  });
});
