/**
 * Memory stays bounded whatever the source size: a 2 GiB sparse image with 160 MiB of data,
 * default 100 MiB chunks, streamed to stdout into `wc -c`. Peak RSS (GNU time's %M) must stay
 * under 300 MiB, with a 16 MiB KDF (logN 14); the default logN 19 adds its 512 MiB on top.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { QBACKUP, passphraseFile, tempDir } from "../support/cli.js";
import { makeSparseImage } from "../support/sources.js";

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const RSS_LIMIT_KIB = 300 * 1024;

let dir: string;
beforeAll(() => (dir = tempDir("qb-rss-")));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

it("create of a 2 GiB sparse source to stdout keeps peak RSS under 300 MiB", () => {
  const image = path.join(dir, "big.img");
  const regions = Array.from({ length: 8 }, (_, i) => ({
    offset: i * 256 * MiB + 4096,
    length: 20 * MiB,
    label: `r${i}`,
  }));
  makeSparseImage(image, 2 * GiB + 4096, regions);
  const pass = passphraseFile(dir);
  const script = `"$@" | wc -c`;
  const r = spawnSync(
    "/usr/bin/time",
    [
      "-f",
      "%M",
      "bash",
      "-o",
      "pipefail",
      "-c",
      script,
      "bash",
      process.execPath,
      QBACKUP,
      "create",
      "-y",
      "-p",
      pass,
      "--scrypt-logn",
      "14",
      "-",
      `big=${image}`,
    ],
    { encoding: "utf8", maxBuffer: 16 * MiB },
  );
  expect(r.status, r.stderr).toBe(0);
  const written = Number(r.stdout.trim());
  expect(written).toBeGreaterThan(160 * MiB); // random data does not compress
  // GNU time reports the largest RSS of the children it waited for: node (wc and bash are tiny)
  const peakKiB = Number(r.stderr.trim().split("\n").pop());
  console.log(`create 2 GiB sparse → stdout: ${written} bytes, peak RSS ${(peakKiB / 1024).toFixed(0)} MiB`);
  expect(peakKiB).toBeGreaterThan(10 * 1024);
  expect(peakKiB).toBeLessThan(RSS_LIMIT_KIB);
});
