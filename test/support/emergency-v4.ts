/**
 * The v4 emergency restore procedure (spec §9.1), run with the stock tools only: GNU tar, the
 * Tarsnap scrypt CLI and the decompressor named in the header. Each step is one invocation of a
 * tool, exactly as a person following the published procedure would type it, with its pitfalls
 * handled: `tar -i`, the `backup-id` key, numeric chunk enumeration past .999, deleting the
 * output of a failed `scrypt dec`, and refusing a gap in the chunk numbers.
 *
 * No qbackup code is used here: this is the independent judge of what qbackup writes.
 */
import { spawnSync } from "node:child_process";
import type { SpawnSyncReturns } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

export interface EmergencyResult {
  /** Where the restored files are (`vm1/private.img`, `dom0-home/user/…`, `qubes.xml`). */
  extracted: string;
  /** Every archived file, with the number of chunks it had. */
  files: Array<{ base: string; chunks: number }>;
  header: Record<string, string>;
}

function run(cmd: string, args: string[], opts: { cwd: string; input?: string | Buffer }): SpawnSyncReturns<Buffer> {
  const r = spawnSync(cmd, args, { cwd: opts.cwd, input: opts.input, maxBuffer: 64 * 1024 * 1024 });
  if (r.error) throw r.error;
  return r;
}

function must(r: SpawnSyncReturns<Buffer>, what: string): void {
  if (r.status !== 0) throw new Error(`${what} failed (status ${r.status}): ${r.stderr.toString().trim()}`);
}

/** `printf '%s\n' "$string" | scrypt dec -P in out` — without -f, so the stock resource limits apply. */
function scryptDec(cwd: string, passphraseString: string, input: string, output: string): void {
  const r = run("scrypt", ["dec", "-P", input, output], { cwd, input: `${passphraseString}\n` });
  if (r.status !== 0) {
    fs.rmSync(path.join(cwd, output), { force: true }); // scrypt leaves unverified plaintext behind
    throw new Error(`scrypt dec ${input} failed: ${r.stderr.toString().trim()}`);
  }
}

export function emergencyRestoreV4(backupFile: string, workDir: string, passphrase: string): EmergencyResult {
  fs.mkdirSync(workDir, { recursive: true });
  // 1. unpack the outer archive; -i because every member is its own archive
  must(run("tar", ["-i", "-xf", path.resolve(backupFile)], { cwd: workDir }), "tar -i -xf");

  // 2. authenticate the header: the .hmac is the header sealed with "backup-header!P"
  scryptDec(workDir, `backup-header!${passphrase}`, "backup-header.hmac", "backup-header.verified");
  must(run("cmp", ["backup-header", "backup-header.verified"], { cwd: workDir }), "cmp backup-header");

  // 3. only now read it
  const header: Record<string, string> = {};
  for (const line of fs.readFileSync(path.join(workDir, "backup-header.verified"), "utf8").split("\n")) {
    const eq = line.indexOf("=");
    if (eq > 0) header[line.slice(0, eq)] = line.slice(eq + 1);
  }
  if (header["version"] !== "4") throw new Error(`not a v4 backup: version=${header["version"]}`);
  const backupId = header["backup-id"];
  if (!backupId || !/^[A-Za-z0-9][A-Za-z0-9-]*$/.test(backupId)) throw new Error("bad or missing backup-id");
  const compressed = /^(1|true|yes)$/i.test(header["compressed"] ?? "");
  const filter = compressed ? header["compression-filter"] : undefined;
  if (filter !== undefined && !["gzip", "bzip2", "xz", "zstd"].includes(filter)) throw new Error(`filter ${filter}`);

  // 4. every archived file: its chunks .000, .001, … (numerically: .999 is followed by .1000)
  const extracted = path.join(workDir, "extracted");
  fs.mkdirSync(extracted);
  const firsts = listFiles(workDir)
    .filter((f) => f.endsWith(".000.enc"))
    .sort();
  if (firsts.length === 0) throw new Error("no *.000.enc members: the backup holds no data");
  const files: EmergencyResult["files"] = [];
  for (const first of firsts) {
    const base = first.slice(0, -".000.enc".length);
    const parts: string[] = [];
    for (let i = 0; ; i++) {
      const enc = `${base}.${String(i).padStart(3, "0")}.enc`;
      if (!fs.existsSync(path.join(workDir, enc))) break;
      const dec = enc.slice(0, -".enc".length);
      scryptDec(workDir, `${backupId}!${dec}!${passphrase}`, enc, dec);
      parts.push(dec);
    }
    // a chunk after a gap means one is missing
    const prefix = `${base}.`;
    for (const f of listFiles(workDir)) {
      const m = f.startsWith(prefix) ? /^(\d{3,})\.enc$/.exec(f.slice(prefix.length)) : null;
      if (m && Number(m[1]) >= parts.length) throw new Error(`chunk ${f} follows a gap`);
    }
    // 5. cat chunks | <filter> -d | tar -x
    const script = filter ? `cat "$@" | ${filter} -d | tar -xf - -C "$0"` : `cat "$@" | tar -xf - -C "$0"`;
    const r = run("bash", ["-o", "pipefail", "-c", script, extracted, ...parts], { cwd: workDir });
    must(r, `restoring ${base}`);
    if (r.stderr.length > 0)
      throw new Error(`tar or ${filter} complained restoring ${base}: ${r.stderr.toString().trim()}`);
    files.push({ base, chunks: parts.length });
    for (const p of parts) fs.rmSync(path.join(workDir, p));
  }
  return { extracted, files, header };
}

/** Every file under `dir` (relative paths), leaving out the `extracted` output directory. */
export function listFiles(dir: string, rel = ""): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
    const p = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) {
      if (p !== "extracted") out.push(...listFiles(dir, p));
    } else out.push(p);
  }
  return out;
}
