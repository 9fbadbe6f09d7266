/** EVP_BytesToKey(MD5, 1 iteration): the spec §5.1 known answer, and agreement with `openssl enc -P`. */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { MAX_DERIVED_BYTES, evpBytesToKey } from "./index.js";

const KAT_SALT = Buffer.from("0102030405060708", "hex");

describe("evpBytesToKey", () => {
  it("reproduces the spec §5.1 known answer (pass 'qubes', aes-256-cbc)", () => {
    const { key, iv } = evpBytesToKey(Buffer.from("qubes"), KAT_SALT, 32, 16);
    expect(key.toString("hex").toUpperCase()).toBe("0095D3E8605B4C01578957E82AC66FD825252642F1E33D54B91285B969591FF8");
    expect(iv.toString("hex").toUpperCase()).toBe("09A26FC3AC81FF5F900204C64B2C973C");
  });

  it("is a prefix-stable stream: shorter keys are prefixes of longer derivations", () => {
    const long = evpBytesToKey(Buffer.from("qubes"), KAT_SALT, 32, 16);
    const short = evpBytesToKey(Buffer.from("qubes"), KAT_SALT, 16, 16);
    expect(short.key).toEqual(long.key.subarray(0, 16));
    expect(short.iv).toEqual(long.key.subarray(16, 32));
  });

  it("agrees with `openssl enc -md md5 -P` for aes-128-cbc and aes-256-ctr (passphrase from a file)", () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "qb-"));
    try {
      const pass = "a longer passphrase with spaces \\ and ünïcödé";
      const passFile = path.join(tmp, "pass");
      fs.writeFileSync(passFile, `${pass}\n`);
      for (const [cipher, keyBytes] of [
        ["aes-128-cbc", 16],
        ["aes-256-ctr", 32],
      ] as const) {
        const salt = "f0e1d2c3b4a59687";
        const r = spawnSync(
          "openssl",
          ["enc", `-${cipher}`, "-md", "md5", "-P", "-S", salt, "-pass", `file:${passFile}`],
          { encoding: "utf8" },
        );
        expect(r.status).toBe(0);
        const key = /^key=([0-9A-F]+)$/m.exec(r.stdout)![1]!;
        const iv = /^iv\s*=([0-9A-F]+)$/m.exec(r.stdout)![1]!;
        const ours = evpBytesToKey(Buffer.from(pass), Buffer.from(salt, "hex"), keyBytes, 16);
        expect(ours.key.toString("hex").toUpperCase()).toBe(key);
        expect(ours.iv.toString("hex").toUpperCase()).toBe(iv);
      }
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  it("derives zero-length outputs and refuses absurd lengths", () => {
    const { key, iv } = evpBytesToKey(Buffer.from("x"), KAT_SALT, 0, 0);
    expect(key.length + iv.length).toBe(0);
    expect(() => evpBytesToKey(Buffer.from("x"), KAT_SALT, MAX_DERIVED_BYTES, 1)).toThrow(
      expect.objectContaining({ code: "ERR_INTERNAL" }),
    );
    expect(() => evpBytesToKey(Buffer.from("x"), KAT_SALT, -1, 16)).toThrow(
      expect.objectContaining({ code: "ERR_INTERNAL" }),
    );
  });
});
