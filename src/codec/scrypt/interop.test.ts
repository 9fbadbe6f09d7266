/**
 * Interop with the stock Tarsnap CLI (`/usr/bin/scrypt`, 1.3.1): our containers decrypt with
 * `scrypt dec -P` (no -f, so within the CLI's default resource limits), and CLI-made containers open
 * with our one-shot and streaming openers.
 */

import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CONTAINER_HEADER_SIZE,
  CONTAINER_MAC_SIZE,
  ContainerOpener,
  open,
  parseContainerHeader,
  seal,
} from "./index.js";
import type { ScryptParams } from "./index.js";

const SCRYPT = "/usr/bin/scrypt";
const haveScrypt = fs.existsSync(SCRYPT);

const PARAMS: ScryptParams = { logN: 10, r: 8, p: 1 };
const SIZES = [0, 1, 15, 16, 17, 4096, 1024 * 1024 + 3];
const PASSPHRASES = ["interop passphrase", ' sp ace \\ back\\slash \\n "quoted" é ü 日本語 ✓ ']; // leading/trailing spaces kept

interface KatVector {
  passphrase: string;
  plaintext: string;
  fileHex: string;
}

function pseudoRandomBytes(n: number, seed: number): Buffer {
  let x = seed >>> 0 || 1;
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

/** Run the CLI with the passphrase line on stdin; throws with its stderr on failure. */
function runScrypt(args: string[], passphrase: string): void {
  const res = spawnSync(SCRYPT, args, { input: `${passphrase}\n`, encoding: "utf8", timeout: 60_000 });
  if (res.status !== 0) throw new Error(`scrypt ${args.join(" ")} failed (${res.status}): ${res.stderr}`);
}

async function streamOpen(container: Buffer, passphrase: Uint8Array, pieceSize: number): Promise<Buffer> {
  const opener = await ContainerOpener.create(container.subarray(0, CONTAINER_HEADER_SIZE), passphrase);
  const ct = container.subarray(CONTAINER_HEADER_SIZE, container.length - CONTAINER_MAC_SIZE);
  for (let off = 0; off < ct.length; off += pieceSize) opener.authenticate(ct.subarray(off, off + pieceSize));
  opener.verify(container.subarray(container.length - CONTAINER_MAC_SIZE));
  const parts: Buffer[] = [];
  for (let off = 0; off < ct.length; off += pieceSize) parts.push(opener.decrypt(ct.subarray(off, off + pieceSize)));
  return Buffer.concat(parts);
}

describe.skipIf(!haveScrypt)("interop with stock scrypt 1.3.1", () => {
  let dir = "";
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "qb-"));
  });
  afterAll(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it("is the expected CLI version", () => {
    const res = spawnSync(SCRYPT, ["--version"], { encoding: "utf8" });
    expect(res.stdout).toContain("scrypt 1.3.1");
  });

  it("decrypts the spec §4.6 known-answer file", () => {
    const kat = JSON.parse(
      fs.readFileSync(new URL("./testdata/kat-spec-4.6.json", import.meta.url), "utf8"),
    ) as KatVector;
    const inFile = path.join(dir, "kat.enc");
    const outFile = path.join(dir, "kat.out");
    fs.writeFileSync(inFile, Buffer.from(kat.fileHex, "hex"));
    runScrypt(["dec", "-P", inFile, outFile], kat.passphrase);
    expect(fs.readFileSync(outFile, "utf8")).toBe(kat.plaintext);
  });

  for (const [pi, passphrase] of PASSPHRASES.entries()) {
    it(`scrypt dec -P decrypts what we seal (passphrase ${pi})`, async () => {
      const pass = Buffer.from(passphrase, "utf8");
      for (const size of SIZES) {
        const plain = pseudoRandomBytes(size, size + 1);
        const inFile = path.join(dir, `ours-${pi}-${size}.enc`);
        const outFile = path.join(dir, `ours-${pi}-${size}.out`);
        fs.writeFileSync(inFile, await seal(plain, pass, PARAMS));
        runScrypt(["dec", "-P", inFile, outFile], passphrase);
        expect(fs.readFileSync(outFile).equals(plain), `size ${size}`).toBe(true);
      }
    });

    it(`we open what scrypt enc -P --logN 12 makes (passphrase ${pi})`, async () => {
      const pass = Buffer.from(passphrase, "utf8");
      for (const size of [0, 1, 17, 4096, 1024 * 1024 + 3]) {
        const plain = pseudoRandomBytes(size, size + 1000);
        const inFile = path.join(dir, `cli-${pi}-${size}.plain`);
        const encFile = path.join(dir, `cli-${pi}-${size}.enc`);
        fs.writeFileSync(inFile, plain);
        runScrypt(["enc", "-P", "--logN", "12", "-r", "8", "-p", "1", inFile, encFile], passphrase);
        const container = fs.readFileSync(encFile);
        expect(parseContainerHeader(container.subarray(0, 64)).params).toEqual({ logN: 12, r: 8, p: 1 });
        expect((await open(container, pass)).equals(plain), `size ${size}`).toBe(true);
        expect((await streamOpen(container, pass, 4093)).equals(plain), `size ${size} streaming`).toBe(true);
      }
    });
  }
});
