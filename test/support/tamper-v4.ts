/**
 * Damaged and tampered copies of a reference v4 backup (spec §4.8), for negative tests of readers:
 * the 16 variants of `make-tampered-variants.sh` (same names, same edits) plus more — a chunk moved
 * into another qube's directory, a chunk from another backup, an adjacent duplicate, the outer file
 * cut at every member boundary, a header container claiming logN 40, a `..` member name, and the
 * wrong passphrase. Members are extracted with `tar -i -xf`, edited, and packed again with one
 * `tar -cO --posix` run per member, like the script's pack().
 *
 * The `..` member is written by hand: GNU tar will not create such a name, and qbackup's own tar
 * codec refuses it (and must not be the judge of its own test data anyway).
 */
import { spawnSync } from "node:child_process";
import type { SpawnSyncReturns } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import type { ReferenceBuild } from "./reference-v4.js";
import { writeReferenceBackupV4 } from "./reference-v4.js";
import { prng } from "./sources.js";

export interface TamperedVariant {
  name: string;
  /** what was done, and what a reader must do about it */
  description: string;
  file: string;
  /**
   * reject: a reader must refuse the backup (or the affected qube) with an error;
   * report: it must at least say so (e.g. a member no included qube owns);
   * undetectable: the format cannot tell (no manifest of files) — a reader restores the rest.
   */
  expect: "reject" | "report" | "undetectable";
  /** The passphrase to try, when it is not the build's (wrong-passphrase). */
  passphrase?: string;
}

const BLOCK = 512;
const RECORD = 10240;
const MAX_TOOL_OUTPUT = 64 * 1024 * 1024;

// scrypt container layout (spec §4.6)
const SCRYPT_MAGIC = "scrypt";
const SCRYPT_PARAMS_END = 16;
const SCRYPT_SALT_END = 48;
const SCRYPT_CHECKSUM_LENGTH = 16;
const SCRYPT_OVERHEAD = 128;
/** 2^40 · 128 · r bytes: no machine can run this KDF, so a reader must refuse before trying. */
const HOSTILE_LOGN = 40;
const SCRYPT_R = 8;
const SCRYPT_P = 1;

// ustar header fields (spec Appendix A)
const F_NAME = 0;
const F_MODE = 100;
const F_UID = 108;
const F_GID = 116;
const F_SIZE = 124;
const F_MTIME = 136;
const F_CHKSUM = 148;
const F_TYPEFLAG = 156;
const F_MAGIC = 257;
const F_UNAME = 265;
const F_GNAME = 297;
const NAME_FIELD = 100;
const CHKSUM_FIELD = 8;

function run(cmd: string, args: string[], stdoutFd?: number): SpawnSyncReturns<Buffer> {
  const r = spawnSync(cmd, args, { stdio: ["ignore", stdoutFd ?? "pipe", "pipe"], maxBuffer: MAX_TOOL_OUTPUT });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.status}): ${r.stderr.toString().trim()}`);
  return r;
}

/** Outer member names in order, with the byte offset at which each member's archive starts. */
export function listOuterMembers(backupFile: string): Array<{ name: string; offset: number }> {
  // -R prints the block number of each member's (ustar) header; the member's own archive starts
  // at the 10240-byte record holding it (its pax header and that header are in the same record)
  const out = run("tar", ["-i", "-tR", "-f", backupFile]).stdout.toString();
  const members: Array<{ name: string; offset: number }> = [];
  for (const line of out.split("\n")) {
    const m = /^block (\d+): (.*)$/.exec(line);
    if (!m || m[2]!.startsWith("** ")) continue;
    members.push({ name: m[2]!, offset: Math.floor((Number(m[1]) * BLOCK) / RECORD) * RECORD });
  }
  return members;
}

/** An outer member written without tar: its bytes, with a name tar would never produce. */
interface HandWritten {
  data: Buffer;
}

interface Work {
  dir: string;
  order: string[];
  handWritten: Map<string, HandWritten>;
}

/** pack(): one `tar -cO --posix -C dir member` run per member, appended to `file`. */
function pack(work: Work, file: string): void {
  const fd = fs.openSync(file, "w");
  try {
    for (const m of work.order) {
      const hand = work.handWritten.get(m);
      if (hand) fs.writeSync(fd, handWrittenMember(m, hand.data));
      else run("tar", ["-cO", "--posix", "-C", work.dir, m], fd);
    }
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * One outer member as its own archive, built byte by byte: a POSIX ustar header (typeflag '0',
 * mode 0644, root/root, octal size and mtime, unsigned checksum), the data padded to 512, the
 * end-of-archive blocks, and NUL padding to the next 10240-byte record — what `tar -cO` writes,
 * minus the pax header.
 */
export function handWrittenMember(name: string, data: Buffer): Buffer {
  const nameBytes = Buffer.from(name, "ascii");
  if (nameBytes.length > NAME_FIELD) throw new Error(`hand-written member: name too long: ${name}`);
  const h = Buffer.alloc(BLOCK);
  nameBytes.copy(h, F_NAME);
  h.write("0000644\0", F_MODE, "ascii");
  h.write("0000000\0", F_UID, "ascii");
  h.write("0000000\0", F_GID, "ascii");
  h.write(`${data.length.toString(8).padStart(11, "0")}\0`, F_SIZE, "ascii");
  const mtime = Math.floor(Date.UTC(2024, 0, 2, 3, 4, 5) / 1000);
  h.write(`${mtime.toString(8).padStart(11, "0")}\0`, F_MTIME, "ascii");
  h.write("0", F_TYPEFLAG, "ascii");
  h.write("ustar\x0000", F_MAGIC, "ascii");
  h.write("root", F_UNAME, "ascii");
  h.write("root", F_GNAME, "ascii");
  h.fill(" ", F_CHKSUM, F_CHKSUM + CHKSUM_FIELD);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, "0")}\0 `, F_CHKSUM, "ascii");
  const body = Buffer.concat([h, data, Buffer.alloc((BLOCK - (data.length % BLOCK)) % BLOCK), Buffer.alloc(2 * BLOCK)]);
  return Buffer.concat([body, Buffer.alloc((RECORD - (body.length % RECORD)) % RECORD)]);
}

/**
 * A scrypt container whose header claims logN 40 (r 8, p 1) with a CORRECT header checksum, and
 * garbage after it, `length` bytes long. Only a reader that bounds N before the KDF survives it.
 */
export function hostileScryptContainer(length: number): Buffer {
  if (length < SCRYPT_OVERHEAD) throw new Error("hostile scrypt container: too short");
  const c = prng("tamper:hostile-scrypt", length);
  c.write(SCRYPT_MAGIC, 0, "ascii");
  c[SCRYPT_MAGIC.length] = 0; // format version
  c[SCRYPT_MAGIC.length + 1] = HOSTILE_LOGN;
  c.writeUInt32BE(SCRYPT_R, SCRYPT_MAGIC.length + 2);
  c.writeUInt32BE(SCRYPT_P, SCRYPT_PARAMS_END - 4);
  createHash("sha256")
    .update(c.subarray(0, SCRYPT_SALT_END))
    .digest()
    .copy(c, SCRYPT_SALT_END, 0, SCRYPT_CHECKSUM_LENGTH);
  return c;
}

function flipByte(file: string, offset: number): void {
  const b = fs.readFileSync(file);
  if (offset >= b.length) throw new Error(`flipByte: ${file} has only ${b.length} bytes`);
  b[offset]! ^= 1;
  fs.writeFileSync(file, b);
}

function replaceMember(order: string[], from: string, to: string[]): string[] {
  if (!order.includes(from)) throw new Error(`tamper: no member ${from}`);
  return order.flatMap((m) => (m === from ? to : [m]));
}

/** The qube's data members as the build wrote them (chunks of one file, in order). */
function chunksOf(members: readonly string[], base: string): string[] {
  return members.filter((m) => m.startsWith(`${base}.`) && /^\d{3,}\.enc$/.test(m.slice(base.length + 1)));
}

/** All 16 variants of make-tampered-variants.sh, and the extra ones, written under outDir. */
export function makeTamperedVariants(build: ReferenceBuild, outDir: string): TamperedVariant[] {
  const o = build.options;
  const vm = `vm${o.vmQid}`;
  const img = `${vm}/private.img`;
  const fw = `${vm}/firewall.xml.000.enc`;
  const notes = `${vm}/notes.txt.000.enc`;
  const chunk = (i: number) => `${img}.${String(i).padStart(3, "0")}.enc`;

  fs.mkdirSync(outDir, { recursive: true });
  const x = path.join(outDir, "x");
  const w = path.join(outDir, "w");
  fs.rmSync(x, { recursive: true, force: true });
  fs.mkdirSync(x);
  run("tar", ["-i", "-xf", path.resolve(build.backupFile), "-C", x]);
  const listed = listOuterMembers(build.backupFile);
  const ORDER = listed.map((m) => m.name);
  const imgChunks = chunksOf(ORDER, img);
  for (const need of [chunk(0), chunk(1), chunk(2), chunk(3), fw, notes, "qubes.xml.000.enc"]) {
    if (!ORDER.includes(need)) throw new Error(`tamper: the build has no ${need} (private.img needs >= 4 chunks)`);
  }

  const variants: TamperedVariant[] = [];
  const readme: string[] = ["# variant                    expected outcome"];
  const fresh = (): Work => {
    fs.rmSync(w, { recursive: true, force: true });
    fs.cpSync(x, w, { recursive: true, preserveTimestamps: true });
    return { dir: w, order: [...ORDER], handWritten: new Map() };
  };
  const variant = (
    name: string,
    expect: TamperedVariant["expect"],
    description: string,
    edit: (work: Work) => void,
    extra: Partial<TamperedVariant> = {},
  ): void => {
    const work = fresh();
    edit(work);
    const file = path.join(outDir, `${name}.bin`);
    pack(work, file);
    variants.push({ name, description, file, expect, ...extra });
    readme.push(`${`${name}.bin`.padEnd(28)} ${description}`);
  };
  const at = (work: Work, member: string) => path.join(work.dir, member);

  // ---- the 16 variants of make-tampered-variants.sh -------------------------------------------
  variant("header-modified", "reject", "backup-header changed, .hmac kept: header verification must fail", (wk) =>
    flipByte(at(wk, "backup-header"), 0),
  );
  variant("header-filter-swapped", "reject", "compression filter changed: header verification must fail", (wk) => {
    const h = fs.readFileSync(at(wk, "backup-header"), "utf8");
    fs.writeFileSync(at(wk, "backup-header"), h.replace(/^compression-filter=.*$/m, "compression-filter=xz"));
  });
  variant("header-hmac-modified", "reject", "scrypt container of the header damaged: must fail", (wk) =>
    flipByte(at(wk, "backup-header.hmac"), 100),
  );
  variant(
    "chunk-bitflip",
    "reject",
    "one ciphertext byte of private.img.001 flipped: final HMAC of that chunk fails",
    (wk) => flipByte(at(wk, chunk(1)), 5000),
  );
  variant(
    "chunk-header-bitflip",
    "reject",
    "scrypt header (logN byte) of private.img.000 changed: header checksum fails",
    (wk) => flipByte(at(wk, chunk(0)), 7),
  );
  variant(
    "chunks-swapped",
    "reject",
    "contents of chunks 001/002 swapped: wrong key for both (name is bound into the passphrase)",
    (wk) => {
      const a = fs.readFileSync(at(wk, chunk(1)));
      fs.copyFileSync(at(wk, chunk(2)), at(wk, chunk(1)));
      fs.writeFileSync(at(wk, chunk(2)), a);
    },
  );
  variant(
    "chunks-reordered",
    "reject",
    "chunks 001/002 intact but stored out of order: sequence check must fail",
    (wk) => {
      wk.order = replaceMember(wk.order, chunk(1), []);
      wk.order = replaceMember(wk.order, chunk(2), [chunk(2), chunk(1)]);
    },
  );
  variant("file-substituted", "reject", "notes.txt chunk stored under firewall.xml name: decryption must fail", (wk) =>
    fs.copyFileSync(at(wk, notes), at(wk, fw)),
  );
  const movedFw = fw.replace(`${vm}/`, "vm6/");
  variant(
    "chunk-moved-vm",
    "report",
    "firewall.xml chunk moved to another qube directory: decryption must fail if vm6 is restored; " +
      `${vm} silently lacks firewall.xml (reference reader does not notice)`,
    (wk) => {
      fs.mkdirSync(at(wk, "vm6"));
      fs.renameSync(at(wk, fw), at(wk, movedFw));
      wk.order = replaceMember(wk.order, fw, [movedFw]);
    },
  );
  variant(
    "last-chunk-dropped",
    "reject",
    "last private.img chunk missing: decompressor/tar must report truncation",
    (wk) => {
      wk.order = replaceMember(wk.order, imgChunks[imgChunks.length - 1]!, []);
    },
  );
  variant("middle-chunk-dropped", "reject", "private.img.001 missing: sequence check must fail", (wk) => {
    wk.order = replaceMember(wk.order, chunk(1), []);
  });
  variant(
    "file-dropped",
    "undetectable",
    "whole firewall.xml dropped: NOT detectable by the format (no manifest); reference reader restores without it",
    (wk) => {
      wk.order = replaceMember(wk.order, fw, []);
    },
  );
  variant("chunk-duplicated", "reject", "private.img.000 appears twice: must be rejected (duplicate member)", (wk) => {
    wk.order.push(chunk(0));
  });
  variant("foreign-member", "reject", "non-.enc member inside a selected qube dir: reference reader aborts", (wk) => {
    fs.writeFileSync(at(wk, `${vm}/extra.bin`), "junk");
    wk.order.push(`${vm}/extra.bin`);
  });
  variant("qubes-xml-missing", "reject", "qubes.xml.000.enc missing: must fail before any data is read", (wk) => {
    wk.order = replaceMember(wk.order, "qubes.xml.000.enc", []);
  });
  variant("chunk-truncated", "reject", "last byte of private.img.003 cut: final HMAC fails", (wk) => {
    const b = fs.readFileSync(at(wk, chunk(3)));
    fs.writeFileSync(at(wk, chunk(3)), b.subarray(0, b.length - 1));
  });

  // ---- extra variants ------------------------------------------------------------------------
  // dom0 is the other included qube of the build: its directory is dom0-home/
  const homeFirst = ORDER.find((m) => m.startsWith("dom0-home/"));
  if (!homeFirst) throw new Error("tamper: the build has no dom0-home member");
  const movedNotes = `dom0-home/${path.basename(notes)}`;
  variant(
    "member-moved-between-qubes",
    "reject",
    `notes.txt chunk of ${vm} moved into dom0-home/ (dom0 is included too): restoring dom0 must fail ` +
      `(the path is bound into the key); ${vm} lacks notes.txt`,
    (wk) => {
      fs.renameSync(at(wk, notes), at(wk, movedNotes));
      wk.order = replaceMember(wk.order, notes, []);
      wk.order = replaceMember(wk.order, homeFirst, [movedNotes, homeFirst]);
    },
  );

  const other = path.join(outDir, "other-backup");
  fs.rmSync(other, { recursive: true, force: true });
  const otherId = `${o.backupId}0`; // same shape, another id
  const otherBuild = writeReferenceBackupV4(build.src, other, { ...o, backupId: otherId });
  fs.mkdirSync(path.join(other, "x"));
  run("tar", ["-i", "-xf", otherBuild.backupFile, "-C", path.join(other, "x"), chunk(1)]);
  variant(
    "chunk-from-other-backup",
    "reject",
    `private.img.001 replaced by the same-named chunk of another backup (backup-id ${otherId}, same ` +
      "passphrase and sources): the backup id is bound into the key, decryption must fail",
    (wk) => fs.copyFileSync(path.join(other, "x", chunk(1)), at(wk, chunk(1))),
  );
  fs.rmSync(other, { recursive: true });

  variant(
    "duplicated-member",
    "reject",
    "firewall.xml.000 stored twice in a row (identical bytes): must be rejected (duplicate member)",
    (wk) => {
      wk.order = replaceMember(wk.order, fw, [fw, fw]);
    },
  );

  // the outer file cut right after member k (1-based), for every boundary
  const whole = fs.readFileSync(build.backupFile);
  for (let k = 1; k < listed.length; k++) {
    const name = `truncated-at-${k}`;
    const file = path.join(outDir, `${name}.bin`);
    fs.writeFileSync(file, whole.subarray(0, listed[k]!.offset));
    const description =
      `outer file cut right after member ${k} (${listed[k - 1]!.name}): ` +
      `${listed.length - k} member(s) from ${listed[k]!.name} on are missing; must be rejected`;
    variants.push({ name, description, file, expect: "reject" });
    readme.push(`${`${name}.bin`.padEnd(28)} ${description}`);
  }

  variant(
    "header-logn-40",
    "reject",
    "backup-header.hmac replaced by a scrypt container claiming logN 40 (r 8, p 1) with a correct header " +
      "checksum and garbage after it: must be refused by the KDF bound, without running the KDF",
    (wk) => {
      const size = fs.statSync(at(wk, "backup-header.hmac")).size;
      fs.writeFileSync(at(wk, "backup-header.hmac"), hostileScryptContainer(size));
    },
  );

  const dotdot = `${vm}/../escape.000.enc`;
  variant(
    "dotdot-member",
    "reject",
    `a member named ${dotdot} (hand-written ustar header; copy of notes.txt.000.enc) after the qube's ` +
      "chunks: a '..' component must be refused, nothing may be written outside the destination",
    (wk) => {
      wk.handWritten.set(dotdot, { data: fs.readFileSync(at(wk, notes)) });
      wk.order = replaceMember(wk.order, homeFirst, [dotdot, homeFirst]);
    },
  );

  variant(
    "wrong-passphrase",
    "reject",
    "the untouched backup, tried with a different passphrase: must fail at the header",
    () => undefined,
    { passphrase: `${o.passphrase}-wrong` },
  );

  fs.rmSync(x, { recursive: true, force: true });
  fs.rmSync(w, { recursive: true, force: true });
  fs.writeFileSync(path.join(outDir, "README"), `${readme.join("\n")}\n`);
  return variants;
}
