/**
 * A Qubes v4 backup built exactly the way the reference writer (REF-W) lays it out, with nothing but
 * the stock tools: GNU tar (inner archives and one `tar -cO --posix` run per outer member), the
 * compressor, the Tarsnap `scrypt` CLI (passphrase on stdin via `-P` only) and coreutils `du`.
 * It follows `make-reference-backups.sh` build_v4 step by step (spec §11.0), so tests can judge
 * qbackup's reader and writer against REF-W's layout without depending on shared/ at test time.
 *
 * No qbackup code is used here: this is an independent producer of reference backups.
 */
import { spawnSync } from "node:child_process";
import type { SpawnSyncReturns } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { GOLDEN_REGIONS, makeSparseImage } from "./sources.js";

export interface ReferenceBuildOptions {
  passphrase?: string;
  backupId?: string;
  chunkSize?: number;
  /** qubes.xml must fit in one chunk; raise this for tiny chunk sizes. */
  qubesXmlChunkSize?: number;
  compress?: "gzip" | "bzip2" | "xz" | "none";
  /** Extra `scrypt enc` arguments; [] = the CLI's own (slow, machine-dependent) parameter choice. */
  scryptArgs?: string[];
  /** R4's extra empty chunk when a stream length is an exact multiple of the chunk size. */
  emptyTail?: boolean;
  vmQid?: number;
  dom0User?: string;
}

export interface ReferenceSources {
  privateImg: string;
  firewallXml: string;
  notesTxt: string;
  /** the dom0 user's home directory (its basename is the dom0 user name) */
  home: string;
}

export interface ReferenceMember {
  name: string;
  size: number;
}

export interface ReferenceBuild {
  /** the outer file */
  backupFile: string;
  src: ReferenceSources;
  /** outer members in order, with their sizes */
  members: ReferenceMember[];
  /** plaintext qubes.xml that was stored */
  qubesXml: string;
  options: Required<ReferenceBuildOptions>;
}

export const FIXTURE_PASSPHRASE = "qubes-fixture-passphrase";
export const FIXTURE_BACKUP_ID = "20240102T030405-4242";
/** make-reference-backups.sh's SEED: region labels are `<seed>:<label>`. */
export const FIXTURE_SEED = "qubes-fixture";
/** Every source entry is touched to this instant (the script's `touch -h -d`). */
export const FIXTURE_MTIME = new Date("2024-01-02T03:04:05Z");
export const FIXTURE_IMAGE_SIZE = 64 * 1024 * 1024;
/** The same bytes as the golden fixture's private.img (spec §11.1). */
export const FIXTURE_IMAGE_SHA256 = "ce25ed4ca1e0489049e64a05ad98fc1124f04b21d64d82d087bed0c1f19e97d6";

const MIB = 1024 * 1024;
const DEFAULT_CHUNK_SIZE = MIB;
const MIN_CHUNK_SIZE = 512;
const DEFAULT_SCRYPT_ARGS = ["--logN", "12", "-r", "8", "-p", "1"];
const DEFAULT_VM_QID = 5;
const DEFAULT_DOM0_USER = "user";
/** Enough for every tool's diagnostics; stdout of the big producers goes to files, not buffers. */
const TOOL_MAX_BUFFER = 16 * MIB;
const BACKUP_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9-]*$/;
const DOM0_USER_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;
/** Chunk numbers are printf("%03d"): .000 … .999, then .1000 … */
const CHUNK_NUMBER_WIDTH = 3;

/** The v4 firewall.xml of the fixture (byte-identical to the script's heredoc). */
export const FIREWALL_XML_V4 = `<?xml version='1.0' encoding='UTF-8'?>
<firewall version="2">
  <rules>
    <rule>
      <properties>
        <property name="action">accept</property>
        <property name="specialtarget">dns</property>
      </properties>
    </rule>
    <rule>
      <properties>
        <property name="action">accept</property>
        <property name="proto">tcp</property>
        <property name="dsthost">198.51.100.0/24</property>
        <property name="dstports">443</property>
      </properties>
    </rule>
    <rule>
      <properties>
        <property name="action">drop</property>
      </properties>
    </rule>
  </rules>
</firewall>
`;
export const NOTES_TXT = 'Fixture notes for the "work" qube.\n';
/** The dom0 home: 3 files in 3 directories, plus `todo-link -> Documents/todo.txt`. */
export const HOME_FILES: ReadonlyArray<readonly [string, string]> = [
  [".bashrc", "# fixture bashrc\nexport FIXTURE=1\n"],
  ["Documents/todo.txt", "buy milk\nrestore backups\n"],
  [".config/fixture/settings.ini", "[fixture]\nkey=value\n"],
];
export const HOME_SYMLINK = { name: "todo-link", target: "Documents/todo.txt" } as const;

export function resolveOptions(options: ReferenceBuildOptions = {}): Required<ReferenceBuildOptions> {
  const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
  const o: Required<ReferenceBuildOptions> = {
    passphrase: options.passphrase ?? FIXTURE_PASSPHRASE,
    backupId: options.backupId ?? FIXTURE_BACKUP_ID,
    chunkSize,
    qubesXmlChunkSize: options.qubesXmlChunkSize ?? chunkSize,
    compress: options.compress ?? "gzip",
    scryptArgs: [...(options.scryptArgs ?? DEFAULT_SCRYPT_ARGS)],
    emptyTail: options.emptyTail ?? true,
    vmQid: options.vmQid ?? DEFAULT_VM_QID,
    dom0User: options.dom0User ?? DEFAULT_DOM0_USER,
  };
  for (const size of [o.chunkSize, o.qubesXmlChunkSize]) {
    if (!Number.isSafeInteger(size) || size < MIN_CHUNK_SIZE)
      throw new Error(`reference build: bad chunk size ${size}`);
  }
  if (!BACKUP_ID_PATTERN.test(o.backupId)) throw new Error(`reference build: bad backup id ${o.backupId}`);
  if (/[\r\n\0]/.test(o.passphrase)) throw new Error("reference build: passphrase must not contain CR, LF or NUL");
  if (!Number.isSafeInteger(o.vmQid) || o.vmQid < 1) throw new Error(`reference build: bad qid ${o.vmQid}`);
  if (!DOM0_USER_PATTERN.test(o.dom0User)) throw new Error(`reference build: bad dom0 user ${o.dom0User}`);
  return o;
}

// ---------------------------------------------------------------------------------------------
// tool invocations
// ---------------------------------------------------------------------------------------------

function run(
  cmd: string,
  args: string[],
  opts: { input?: string; stdout?: number; cwd?: string } = {},
): SpawnSyncReturns<Buffer> {
  const r = spawnSync(cmd, args, {
    cwd: opts.cwd,
    input: opts.input,
    stdio: ["pipe", opts.stdout ?? "pipe", "pipe"],
    maxBuffer: TOOL_MAX_BUFFER,
  });
  if (r.error) throw r.error;
  if (r.status !== 0) {
    throw new Error(`${cmd} ${args.join(" ")} failed (status ${r.status}): ${r.stderr.toString().trim()}`);
  }
  return r;
}

/** Run a producer with its stdout written to `file` (created/truncated). */
function runToFile(cmd: string, args: string[], file: string, cwd?: string): void {
  const fd = fs.openSync(file, "w");
  try {
    run(cmd, args, { stdout: fd, cwd });
  } finally {
    fs.closeSync(fd);
  }
}

/** `printf '%s\n' "$passString" | scrypt enc -P <args> in out` — the passphrase only ever on stdin. */
export function scryptEnc(passString: string, input: string, output: string, scryptArgs: readonly string[]): void {
  run("scrypt", ["enc", "-P", ...scryptArgs, input, output], { input: `${passString}\n` });
}

/**
 * One inner archive, the way qubes/backup.py builds it:
 * `tar -Pc --sparse -C <dir> [--dereference] [--use-compress-program=F] --xform=s:^<base>:<subdir>\0: <base>`.
 */
export function innerTarArgs(srcPath: string, subdir: string, dereference: boolean, compress: string): string[] {
  const base = path.basename(srcPath);
  const args = ["-Pc", "--sparse", "-C", path.dirname(srcPath)];
  if (dereference) args.push("--dereference");
  if (compress !== "none") args.push(`--use-compress-program=${compress}`);
  args.push(`--xform=s:^${base}:${subdir}\\0:`, base);
  return args;
}

/** `tar -cO --posix -C <stage> <member> >> outer`: every member is its own complete archive. */
function appendOuterMember(outerFd: number, stage: string, member: string): void {
  run("tar", ["-cO", "--posix", "-C", stage, member], { stdout: outerFd });
}

/** `du -s -B1 <dir>`: allocated bytes, as the script's backup-size estimate. */
function diskUsage(dir: string): number {
  const out = run("du", ["-s", "-B1", dir]).stdout.toString();
  const n = Number(out.split("\t")[0]);
  if (!Number.isSafeInteger(n)) throw new Error(`du: unexpected output ${JSON.stringify(out)}`);
  return n;
}

// ---------------------------------------------------------------------------------------------
// sources
// ---------------------------------------------------------------------------------------------

/**
 * The script's source tree under `srcDir`: `vm/work/{private.img,firewall.xml,notes.txt}` and
 * `home/<dom0User>/…`, every entry (symlink itself included) touched to FIXTURE_MTIME.
 */
export function makeReferenceSources(srcDir: string, dom0User = DEFAULT_DOM0_USER): ReferenceSources {
  const vmDir = path.join(srcDir, "vm", "work");
  const home = path.join(srcDir, "home", dom0User);
  fs.mkdirSync(vmDir, { recursive: true });
  const src: ReferenceSources = {
    privateImg: path.join(vmDir, "private.img"),
    firewallXml: path.join(vmDir, "firewall.xml"),
    notesTxt: path.join(vmDir, "notes.txt"),
    home,
  };
  const regions = GOLDEN_REGIONS.map((r) => ({ ...r, label: `${FIXTURE_SEED}:${r.label}` }));
  makeSparseImage(src.privateImg, FIXTURE_IMAGE_SIZE, regions);
  fs.writeFileSync(src.firewallXml, FIREWALL_XML_V4);
  fs.writeFileSync(src.notesTxt, NOTES_TXT);
  for (const [rel, content] of HOME_FILES) {
    fs.mkdirSync(path.dirname(path.join(home, rel)), { recursive: true });
    fs.writeFileSync(path.join(home, rel), content);
  }
  fs.symlinkSync(HOME_SYMLINK.target, path.join(home, HOME_SYMLINK.name));
  touchTree(srcDir);
  return src;
}

function touchTree(p: string): void {
  const st = fs.lstatSync(p);
  if (st.isDirectory()) for (const name of fs.readdirSync(p)) touchTree(path.join(p, name));
  fs.lutimesSync(p, FIXTURE_MTIME, FIXTURE_MTIME);
}

// ---------------------------------------------------------------------------------------------
// the pieces of a v4 backup
// ---------------------------------------------------------------------------------------------

/** backup-header in REF-W's key order; uncompressed still says compression-filter=gzip (§3.3). */
export function referenceHeader(o: Pick<Required<ReferenceBuildOptions>, "compress" | "backupId">): string {
  const compression =
    o.compress === "none"
      ? "compressed=False\ncompression-filter=gzip\n"
      : `compressed=True\ncompression-filter=${o.compress}\n`;
  return `version=4\nencrypted=True\n${compression}hmac-algorithm=scrypt\nbackup-id=${o.backupId}\n`;
}

/** `<base>.NNN` with printf("%03d") numbering: the width grows past 999. */
export function chunkName(base: string, index: number): string {
  return `${base}.${String(index).padStart(CHUNK_NUMBER_WIDTH, "0")}`;
}

/**
 * Cut a stream into `size`-byte pieces the way the script's chunkify does: at least one piece, and,
 * with `emptyTail`, an extra empty piece when the length is an exact non-zero multiple of `size`.
 */
export function cutChunks(stream: Buffer, size: number, emptyTail: boolean): Buffer[] {
  const pieces: Buffer[] = [];
  let off = 0;
  do {
    pieces.push(stream.subarray(off, off + size));
    off += size;
  } while (off < stream.length);
  if (emptyTail && stream.length > 0 && off === stream.length) pieces.push(Buffer.alloc(0));
  return pieces;
}

/** Chunk and seal one inner stream into `<stage>/<base>.NNN.enc`; returns the member names. */
function sealStream(
  stage: string,
  streamFile: string,
  base: string,
  chunkSize: number,
  o: Required<ReferenceBuildOptions>,
): string[] {
  const members: string[] = [];
  const pieces = cutChunks(fs.readFileSync(streamFile), chunkSize, o.emptyTail);
  pieces.forEach((piece, i) => {
    const rel = chunkName(base, i);
    const plain = path.join(stage, rel);
    fs.writeFileSync(plain, piece);
    scryptEnc(`${o.backupId}!${rel}!${o.passphrase}`, plain, `${plain}.enc`, o.scryptArgs);
    fs.rmSync(plain);
    members.push(`${rel}.enc`);
  });
  fs.rmSync(streamFile);
  return members;
}

/** The R4 qubes.xml document of write_qubes_xml_r4 (three domains, two of them backed up). */
export function referenceQubesXml(vmQid: number, dom0User: string, vmSize: number, homeSize: number): string {
  return `<?xml version='1.0' encoding='UTF-8'?>
<qubes>
  <labels>
    <label color="0xcc0000" id="label-1">red</label>
    <label color="0xf57900" id="label-2">orange</label>
    <label color="0xedd400" id="label-3">yellow</label>
    <label color="0x73d216" id="label-4">green</label>
    <label color="0x555753" id="label-5">gray</label>
    <label color="0x3465a4" id="label-6">blue</label>
    <label color="0x75507b" id="label-7">purple</label>
    <label color="0x000000" id="label-8">black</label>
  </labels>
  <pools>
    <pool dir_path="/var/lib/qubes" driver="file" name="varlibqubes" revisions_to_keep="1"/>
  </pools>
  <properties>
    <property name="default_template">debian-12-xfce</property>
    <property name="default_netvm"></property>
    <property name="updatevm">dom0</property>
  </properties>
  <domains>
    <domain id="domain-0" class="AdminVM">
      <properties>
        <property name="label">black</property>
      </properties>
      <features>
        <feature name="backup-content">1</feature>
        <feature name="backup-path">dom0-home/${dom0User}</feature>
        <feature name="backup-size">${homeSize}</feature>
      </features>
      <tags/>
    </domain>
    <domain id="domain-1" class="TemplateVM">
      <properties>
        <property name="label">black</property>
        <property name="name">debian-12-xfce</property>
        <property name="qid">1</property>
        <property name="uuid">6f0a3d2e-6c1b-4a8e-9a57-1d3c2b4a5e61</property>
      </properties>
      <features>
        <feature name="backup-content"></feature>
        <feature name="qrexec">1</feature>
      </features>
      <tags/>
      <volume-config>
        <volume name="root" pool="varlibqubes" revisions_to_keep="1" rw="True" save_on_stop="True" size="10737418240" vid="vm-templates/debian-12-xfce/root"/>
        <volume name="private" pool="varlibqubes" revisions_to_keep="0" rw="True" save_on_stop="True" size="2147483648" vid="vm-templates/debian-12-xfce/private"/>
        <volume name="volatile" pool="varlibqubes" revisions_to_keep="0" rw="True" size="10737418240" vid="vm-templates/debian-12-xfce/volatile"/>
      </volume-config>
    </domain>
    <domain id="domain-${vmQid}" class="AppVM">
      <properties>
        <property name="label">blue</property>
        <property name="name">work</property>
        <property name="qid">${vmQid}</property>
        <property name="uuid">1b9f2c44-53a7-4d0e-8f6e-7a2c9e0d4b13</property>
        <property name="template">debian-12-xfce</property>
        <property name="memory">600</property>
        <property name="netvm"></property>
      </properties>
      <features>
        <feature name="backup-content">1</feature>
        <feature name="backup-path">vm${vmQid}/</feature>
        <feature name="backup-size">${vmSize}</feature>
        <feature name="service.fixture">1</feature>
      </features>
      <tags>
        <tag name="created-by-dom0"/>
        <tag name="fixture"/>
      </tags>
      <devices class="pci"/>
      <volume-config>
        <volume name="root" pool="varlibqubes" revisions_to_keep="0" size="10737418240" snap_on_start="True" source="vm-templates/debian-12-xfce/root" vid="appvms/work/root"/>
        <volume name="private" pool="varlibqubes" revisions_to_keep="1" rw="True" save_on_stop="True" size="67108864" vid="appvms/work/private"/>
        <volume name="volatile" pool="varlibqubes" revisions_to_keep="0" rw="True" size="10737418240" vid="appvms/work/volatile"/>
      </volume-config>
    </domain>
  </domains>
</qubes>
`;
}

/** backup-size as the script computes it: Σ stored member sizes, raised to `du` of the source dir. */
function backupSize(stage: string, members: readonly string[], srcDir: string): number {
  const stored = members.reduce((n, m) => n + fs.statSync(path.join(stage, m)).size, 0);
  return Math.max(stored, diskUsage(srcDir));
}

// ---------------------------------------------------------------------------------------------
// the backup
// ---------------------------------------------------------------------------------------------

/**
 * A v4 backup of existing sources, as build_v4 writes it, to `<outDir>/qubes-backup-v4.bin` (plus
 * `<outDir>/qubes.xml.plain`). The staging directory is removed afterwards.
 */
export function writeReferenceBackupV4(
  src: ReferenceSources,
  outDir: string,
  options: ReferenceBuildOptions = {},
): ReferenceBuild {
  const o = resolveOptions(options);
  if (path.basename(src.home) !== o.dom0User) throw new Error("reference build: home basename must be the dom0 user");
  const stage = path.join(outDir, "stage");
  const backupFile = path.join(outDir, "qubes-backup-v4.bin");
  fs.mkdirSync(stage, { recursive: true });

  // 1. the header, and its scrypt-sealed copy
  fs.writeFileSync(path.join(stage, "backup-header"), referenceHeader(o));
  scryptEnc(
    `backup-header!${o.passphrase}`,
    path.join(stage, "backup-header"),
    path.join(stage, "backup-header.hmac"),
    o.scryptArgs,
  );

  // 2. the qube's files (before qubes.xml, so that backup-size can be exact)
  const vmSub = `vm${o.vmQid}/`;
  fs.mkdirSync(path.join(stage, vmSub));
  const vmMembers: string[] = [];
  const vmFiles = [src.privateImg, src.firewallXml, src.notesTxt];
  for (const file of vmFiles) {
    const f = path.basename(file);
    const stream = path.join(stage, `${vmSub}${f}.inner`);
    runToFile("tar", innerTarArgs(file, vmSub, true, o.compress), stream);
    vmMembers.push(...sealStream(stage, stream, `${vmSub}${f}`, o.chunkSize, o));
  }

  // 3. the dom0 home: a whole directory, no --dereference
  fs.mkdirSync(path.join(stage, "dom0-home"));
  const homeStream = path.join(stage, `dom0-home/${o.dom0User}.inner`);
  runToFile("tar", innerTarArgs(src.home, "dom0-home/", false, o.compress), homeStream);
  const homeMembers = sealStream(stage, homeStream, `dom0-home/${o.dom0User}`, o.chunkSize, o);

  // 4. qubes.xml, last, as exactly one chunk
  const qubesXml = referenceQubesXml(
    o.vmQid,
    o.dom0User,
    backupSize(stage, vmMembers, path.dirname(src.privateImg)),
    backupSize(stage, homeMembers, src.home),
  );
  const xmlFile = path.join(stage, "qubes.xml");
  fs.writeFileSync(xmlFile, qubesXml);
  const xmlStream = path.join(stage, "qubes.xml.inner");
  runToFile("tar", innerTarArgs(xmlFile, "", true, o.compress), xmlStream);
  const xmlMembers = sealStream(stage, xmlStream, "qubes.xml", o.qubesXmlChunkSize, o);
  if (xmlMembers.length !== 1) throw new Error(`reference build: qubes.xml needs ${xmlMembers.length} chunks, not 1`);
  fs.writeFileSync(path.join(outDir, "qubes.xml.plain"), qubesXml);
  fs.rmSync(xmlFile);

  // 5. the outer file: one tar run per member, in REF-W's order
  const order = ["backup-header", "backup-header.hmac", ...xmlMembers, ...vmMembers, ...homeMembers];
  const members = order.map((name) => ({ name, size: fs.statSync(path.join(stage, name)).size }));
  const outerFd = fs.openSync(backupFile, "w");
  try {
    for (const m of order) appendOuterMember(outerFd, stage, m);
  } finally {
    fs.closeSync(outerFd);
  }
  fs.rmSync(stage, { recursive: true });
  return { backupFile, src, members, qubesXml, options: o };
}

/**
 * Build sources (the fixture script's layout) under `<dir>/src` and a v4 backup of them at
 * `<dir>/v4/qubes-backup-v4.bin`, exactly as make-reference-backups.sh build_v4 does.
 */
export function buildReferenceV4(dir: string, options: ReferenceBuildOptions = {}): ReferenceBuild {
  const o = resolveOptions(options);
  const src = makeReferenceSources(path.join(dir, "src"), o.dom0User);
  return writeReferenceBackupV4(src, path.join(dir, "v4"), o);
}
