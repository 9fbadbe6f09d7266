/**
 * The v3 emergency restore procedure (spec §9.2), run with the stock tools only: GNU tar, openssl
 * and the decompressor named in the header, one tool invocation per step, with the pitfalls of
 * §9.3 handled: `tar -i`, the header's digest unknown until it is verified (try sha512, sha256,
 * sha1), `-md md5` for OpenSSL ≥ 1.1, only the hex after "= " compared (OpenSSL 3 prints
 * `SHA2-512(stdin)=`), numeric chunk enumeration past .999, a gap in the chunk numbers refused, and
 * the passphrase of `openssl enc` in the environment (`-pass env:`), not on argv. `openssl dgst`
 * has no such option for an HMAC key, so `-hmac` takes the (test) passphrase on argv, as R3 did.
 *
 * No qbackup code is used here: this is the independent judge of what the v3 builder writes.
 */
import { spawnSync } from "node:child_process";
import type { SpawnSyncReturns } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { listFiles } from "./emergency-v4.js";

export interface EmergencyV3Result {
  /** Where the restored files are (`vm5/private.img`, `dom0-home/user/…`, `qubes.xml`). */
  extracted: string;
  /** Every archived file, with the number of chunks it had. */
  files: Array<{ base: string; chunks: number }>;
  header: Record<string, string>;
  /** The digest that verified backup-header. */
  headerDigest: string;
}

const HEADER_DIGESTS = ["sha512", "sha256", "sha1"];
const FILTERS = ["gzip", "bzip2", "xz"];
const NAME_PATTERN = /^[a-z0-9-]+$/;
const PASS_ENV = "QB_EMERGENCY_PASS";

function run(
  cmd: string,
  args: string[],
  opts: { cwd: string; input?: string | Buffer; env?: NodeJS.ProcessEnv },
): SpawnSyncReturns<Buffer> {
  const r = spawnSync(cmd, args, { cwd: opts.cwd, input: opts.input, env: opts.env, maxBuffer: 64 * 1024 * 1024 });
  if (r.error) throw r.error;
  return r;
}

function must(r: SpawnSyncReturns<Buffer>, what: string): SpawnSyncReturns<Buffer> {
  if (r.status !== 0) throw new Error(`${what} failed (status ${r.status}): ${r.stderr.toString().trim()}`);
  return r;
}

/** The hex after the last "= " of a dgst line, blanks and line ends removed (the script's hmac_of_file). */
function hexAfterEquals(text: string): string {
  const i = text.lastIndexOf("= ");
  return (i < 0 ? "" : text.slice(i + 2)).replace(/[\r\n ]/g, "");
}

/** `openssl dgst -<digest> -hmac "$pass" < file`, its hex. */
function hmacHex(cwd: string, digest: string, file: string, passphrase: string): string {
  const r = must(
    run("openssl", ["dgst", `-${digest}`, "-hmac", passphrase], { cwd, input: fs.readFileSync(path.join(cwd, file)) }),
    `openssl dgst ${file}`,
  );
  return hexAfterEquals(r.stdout.toString());
}

function verify(cwd: string, file: string, digest: string, passphrase: string): void {
  const want = hexAfterEquals(fs.readFileSync(path.join(cwd, `${file}.hmac`), "latin1"));
  if (want === "" || want !== hmacHex(cwd, digest, file, passphrase)) throw new Error(`HMAC mismatch on ${file}`);
}

export function emergencyRestoreV3(backupFile: string, workDir: string, passphrase: string): EmergencyV3Result {
  fs.mkdirSync(workDir, { recursive: true });
  // 1. unpack the outer archive; -i because every member is its own archive
  must(run("tar", ["-i", "-xf", path.resolve(backupFile)], { cwd: workDir }), "tar -i -xf");

  // 2. verify backup-header: its digest is named inside it, so try the usual suspects
  const wantHeader = hexAfterEquals(fs.readFileSync(path.join(workDir, "backup-header.hmac"), "latin1"));
  const headerDigest = HEADER_DIGESTS.find((d) => hmacHex(workDir, d, "backup-header", passphrase) === wantHeader);
  if (headerDigest === undefined || wantHeader === "") {
    throw new Error("backup-header HMAC does not verify (wrong passphrase?)");
  }

  // 3. only now read it
  const header: Record<string, string> = {};
  for (const line of fs.readFileSync(path.join(workDir, "backup-header"), "utf8").split("\n")) {
    const eq = line.indexOf("=");
    if (eq > 0) header[line.slice(0, eq)] = line.slice(eq + 1);
  }
  if (header["version"] !== "3") throw new Error(`not a format v3 backup: version=${header["version"]}`);
  const isTrue = (v: string | undefined) => /^(1|true|yes)$/i.test(v ?? "");
  const digest = (header["hmac-algorithm"] ?? "").toLowerCase();
  const cipher = (header["crypto-algorithm"] ?? "").toLowerCase();
  const encrypted = isTrue(header["encrypted"]);
  const filter = isTrue(header["compressed"]) ? (header["compression-filter"] ?? "gzip") : undefined;
  if (!NAME_PATTERN.test(digest) || (encrypted && !NAME_PATTERN.test(cipher))) throw new Error("bad header");
  if (filter !== undefined && !FILTERS.includes(filter)) throw new Error(`unexpected compression filter ${filter}`);

  // 4. every archived file: verify chunks .000, .001, … (numerically), then
  //    cat chunks | openssl enc -d | <filter> -d | tar -x
  const extracted = path.join(workDir, "extracted");
  fs.mkdirSync(extracted);
  const all = listFiles(workDir);
  const firsts = all.filter((f) => f.endsWith(".000")).sort();
  if (firsts.length === 0) throw new Error("no *.000 members: the backup holds no data");
  const files: EmergencyV3Result["files"] = [];
  for (const first of firsts) {
    const base = first.slice(0, -".000".length);
    const parts: string[] = [];
    for (let i = 0; ; i++) {
      const chunk = `${base}.${String(i).padStart(3, "0")}`;
      if (!fs.existsSync(path.join(workDir, chunk))) break;
      verify(workDir, chunk, digest, passphrase);
      parts.push(chunk);
    }
    const prefix = `${base}.`;
    for (const f of all) {
      const m = f.startsWith(prefix) ? /^(\d{3,})$/.exec(f.slice(prefix.length)) : null;
      if (m && Number(m[1]) >= parts.length) throw new Error(`chunk ${f} follows a gap`);
    }
    const steps = ['cat "$@"'];
    if (encrypted) steps.push(`openssl enc -d -${cipher} -md md5 -pass env:${PASS_ENV} 2>openssl.err`);
    if (filter !== undefined) steps.push(`${filter} -d`);
    steps.push('tar -xf - -C "$0"');
    const r = run("bash", ["-o", "pipefail", "-c", steps.join(" | "), extracted, ...parts], {
      cwd: workDir,
      env: { ...process.env, [PASS_ENV]: passphrase },
    });
    const opensslErr = encrypted ? fs.readFileSync(path.join(workDir, "openssl.err"), "utf8") : "";
    if (r.status !== 0) {
      throw new Error(`restoring ${base} failed (status ${r.status}): ${r.stderr.toString().trim()} ${opensslErr}`);
    }
    // openssl 3 warns about the MD5 key derivation; tar or the decompressor must say nothing
    if (r.stderr.length > 0) throw new Error(`tar or ${filter} complained restoring ${base}: ${r.stderr.toString()}`);
    files.push({ base, chunks: parts.length });
  }
  return { extracted, files, header, headerDigest };
}
