/**
 * Qubes v3 backups (R2 final … R3.2) built the way the R3 writer (R3-W) built them, with nothing but
 * the stock tools (spec §5.1, §11.0): GNU tar for every inner archive (§4.3a), gzip through tar's
 * --use-compress-program, ONE `openssl enc -e -aes-256-cbc -md md5` stream per archived file
 * (passphrase from a 0600 file, never on argv), chunks cut by R3-W's rule, a `(stdin)= <hex>` `.hmac`
 * after every chunk from `openssl dgst -sha512 -hmac` (OpenSSL 3's dgst takes an HMAC key only on
 * argv; these are test passphrases), and one `tar -cO --posix` run per outer member, like
 * reference-v4.ts and make-reference-backups.sh build_v3 do.
 *
 * Content: an AppVM `work` (sparse private.img, R3 firewall.xml, app-menu list), a StandaloneVM
 * `personal` (private.img, root.img), optionally the TemplateVM `fedora-23` archived R3-style as one
 * whole-directory archive (`vm1/.`, chunks `vm1/..000`), and a dom0 home (makeTree).
 * Encrypted backups use `vm<qid>/` paths, unencrypted ones R3's real paths (`appvms/work/`, …).
 *
 * No qbackup code is used here: this is an independent producer of reference backups.
 */
import { spawnSync } from "node:child_process";
import type { SpawnSyncReturns } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import type { ReferenceMember } from "./reference-v4.js";
import { FIXTURE_PASSPHRASE, chunkName, innerTarArgs } from "./reference-v4.js";
import { makeSparseImage, makeTree, prng } from "./sources.js";
import type { DataRegion } from "./sources.js";

export interface ReferenceV3Options {
  /** Build directory: sources in `<dir>/src`, the backup at `<dir>/qubes-backup-v3.bin`. */
  dir: string;
  passphrase?: string;
  compress?: "gzip" | "bzip2" | "none";
  encrypt?: boolean;
  /** Largest chunk (R3 used 100 MiB); small values make several chunks in tests. */
  chunkSize?: number;
  /** Largest single read of R3-W's copy loop (R3: 409600), scaled to the chunk size by default. */
  readSize?: number;
  /** false: every read is full (R3-W reading a pipe to EOF); true: reads vary, so chunk sizes vary. */
  shortReads?: boolean;
  /** qubes.xml must fit into one chunk. */
  qubesXmlChunkSize?: number;
  /** Also back up the TemplateVM, as R3-W did: one whole-directory archive. */
  template?: boolean;
  dom0User?: string;
}

export interface ReferenceV3File {
  /** Chunk base in the backup, e.g. `vm5/private.img`, `vm1/.`, `dom0-home/user`, `qubes.xml`. */
  base: string;
  /** The archived source (a file, or a directory for templates and the dom0 home). */
  source: string;
  chunks: number;
}

export interface ReferenceV3Build {
  /** The outer file. */
  backup: string;
  header: string;
  /** Outer members in order, with their sizes. */
  members: ReferenceMember[];
  /** Plaintext core2 qubes.xml that was stored. */
  qubesXml: string;
  files: ReferenceV3File[];
  /** The dom0 user's home directory (its basename is the dom0 user name). */
  home: string;
  options: Required<ReferenceV3Options>;
}

const KIB = 1024;
const MIB = 1024 * KIB;
const DEFAULT_CHUNK_SIZE = 64 * KIB;
/** Keeps the chunk count of the small sources bounded. */
const MIN_CHUNK_SIZE = 4 * KIB;
/** R3-W's copy loop: 100 MiB chunks, 409600-byte reads; the default read size keeps that spirit. */
const CHUNK_TO_READ_RATIO = 6;
const DEFAULT_QUBES_XML_CHUNK_SIZE = MIB;
const DEFAULT_DOM0_USER = "user";
const DOM0_USER_PATTERN = /^[a-z_][a-z0-9_-]*$/;
const TOOL_MAX_BUFFER = 16 * MIB;
const V3_CIPHER = "aes-256-cbc";
const V3_DIGEST = "sha512";
/** Seed of the pseudo-random read lengths: the same build always cuts the same chunks. */
const READ_SEED = "r3-read-lengths";

/** qids and names of the described system (template 1, netvm 2, qubes 5 and 6). */
export const V3_QUBES = {
  template: { name: "fedora-23", qid: 1 },
  netvm: { name: "sys-net", qid: 2 },
  work: { name: "work", qid: 5 },
  personal: { name: "personal", qid: 6 },
} as const;

/** R3-style firewall.xml of `work` (the pre-R4 format, spec §6.5). */
export const FIREWALL_XML_R3 = `<QubesFirewallRules dns="allow" icmp="allow" policy="deny" yumProxy="allow">
  <rule address="198.51.100.0" netmask="24" port="443" proto="tcp"/>
</QubesFirewallRules>
`;
export const APPMENUS_LIST = "firefox.desktop\nxterm.desktop\n";

const WORK_IMAGE_SIZE = 8 * MIB;
const WORK_REGIONS: DataRegion[] = [
  { offset: 0, length: 96 * KIB, label: "v3-work-a" },
  { offset: 3 * MIB + 4 * KIB, length: 160 * KIB, label: "v3-work-b" },
  { offset: 7 * MIB, length: 4 * KIB, label: "v3-work-c" },
];
const SMALL_IMAGE_SIZE = 2 * MIB;
const personalRegions = (img: string): DataRegion[] => [
  { offset: 512 * KIB, length: 48 * KIB, label: `v3-personal-${img}` },
];
const templateRegions = (img: string): DataRegion[] => [{ offset: 0, length: 40 * KIB, label: `v3-template-${img}` }];

export function resolveV3Options(options: ReferenceV3Options): Required<ReferenceV3Options> {
  const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
  const o: Required<ReferenceV3Options> = {
    dir: options.dir,
    passphrase: options.passphrase ?? FIXTURE_PASSPHRASE,
    compress: options.compress ?? "gzip",
    encrypt: options.encrypt ?? true,
    chunkSize,
    readSize: options.readSize ?? Math.ceil(chunkSize / CHUNK_TO_READ_RATIO),
    shortReads: options.shortReads ?? true,
    qubesXmlChunkSize: options.qubesXmlChunkSize ?? Math.max(chunkSize, DEFAULT_QUBES_XML_CHUNK_SIZE),
    template: options.template ?? false,
    dom0User: options.dom0User ?? DEFAULT_DOM0_USER,
  };
  for (const size of [o.chunkSize, o.qubesXmlChunkSize]) {
    if (!Number.isSafeInteger(size) || size < MIN_CHUNK_SIZE) throw new Error(`reference v3: bad chunk size ${size}`);
  }
  if (!Number.isSafeInteger(o.readSize) || o.readSize < 1 || o.readSize > o.chunkSize) {
    throw new Error(`reference v3: read size ${o.readSize} must be 1 … chunk size`);
  }
  if (o.passphrase === "" || /[\r\n\0]/.test(o.passphrase)) {
    throw new Error("reference v3: passphrase must be non-empty, without CR, LF or NUL");
  }
  if (!DOM0_USER_PATTERN.test(o.dom0User)) throw new Error(`reference v3: bad dom0 user ${o.dom0User}`);
  return o;
}

// ---------------------------------------------------------------------------------------------
// tool invocations
// ---------------------------------------------------------------------------------------------

function run(
  cmd: string,
  args: string[],
  opts: { input?: string | Buffer; stdout?: number; cwd?: string } = {},
): SpawnSyncReturns<Buffer> {
  const r = spawnSync(cmd, args, {
    cwd: opts.cwd,
    input: opts.input,
    stdio: ["pipe", opts.stdout ?? "pipe", "pipe"],
    maxBuffer: TOOL_MAX_BUFFER,
  });
  if (r.error) throw r.error;
  if (r.status !== 0) {
    throw new Error(`${cmd} ${args[0] ?? ""} failed (status ${r.status}): ${r.stderr.toString().trim()}`);
  }
  return r;
}

function runToFile(cmd: string, args: string[], file: string): void {
  const fd = fs.openSync(file, "w");
  try {
    run(cmd, args, { stdout: fd });
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * `"(stdin)= " + hex(HMAC-SHA512(key = passphrase, file)) + "\n"`, the R2/R3 (OpenSSL 1.0) form,
 * from the hex that `openssl dgst -sha512 -hmac P < file` prints (OpenSSL 3 says `SHA2-512(stdin)=`).
 */
export function dgstHmacLine(file: string, passphrase: string): string {
  const out = run("openssl", ["dgst", `-${V3_DIGEST}`, "-hmac", passphrase], { input: fs.readFileSync(file) });
  const hex = /= ([0-9a-f]+)\n?$/.exec(out.stdout.toString())?.[1];
  if (hex === undefined || hex.length !== 128) throw new Error(`unexpected openssl dgst output for ${file}`);
  return `(stdin)= ${hex}\n`;
}

/** `openssl enc -e -aes-256-cbc -md md5 -pass file:PASSFILE -in in -out out`: salted, EVP_BytesToKey(MD5). */
function opensslEncrypt(input: string, output: string, passFile: string): void {
  run("openssl", [
    "enc",
    "-e",
    `-${V3_CIPHER}`,
    "-md",
    "md5",
    "-pass",
    `file:${passFile}`,
    "-in",
    input,
    "-out",
    output,
  ]);
}

// ---------------------------------------------------------------------------------------------
// R3-W's chunking
// ---------------------------------------------------------------------------------------------

/**
 * Cut a stream the way R3-W's copy loop did: before each read of up to `readSize` bytes it closes
 * the chunk if that read might overflow `chunkSize`; EOF closes the last chunk. So chunks are at
 * most `chunkSize`, not fixed-size, a stream ending right at a closing point gets an empty last
 * chunk, and an empty stream is one empty chunk. `readLength()` gives each read's size (≤ readSize),
 * as a pipe may return less than asked.
 */
export function cutChunksR3(stream: Buffer, chunkSize: number, readSize: number, readLength: () => number): Buffer[] {
  if (readSize < 1 || readSize > chunkSize) throw new Error(`cutChunksR3: read size ${readSize} of chunk ${chunkSize}`);
  const chunks: Buffer[] = [];
  let off = 0;
  for (;;) {
    const start = off;
    for (;;) {
      if (off - start + readSize > chunkSize) break; // "size_limit": next chunk
      const n = Math.min(Math.max(1, Math.min(readLength(), readSize)), stream.length - off);
      if (n === 0) {
        chunks.push(stream.subarray(start, off)); // EOF
        return chunks;
      }
      off += n;
    }
    chunks.push(stream.subarray(start, off));
  }
}

/** Read lengths for cutChunksR3: all `readSize`, or reproducibly varying in [readSize/2, readSize]. */
export function r3ReadLengths(readSize: number, shortReads: boolean, seed = READ_SEED): () => number {
  if (!shortReads) return () => readSize;
  const low = Math.ceil(readSize / 2);
  const random = prng(seed, 4 * 4096);
  let i = 0;
  return () => {
    const r = random.readUInt32BE((i++ * 4) % random.length);
    return low + (r % (readSize - low + 1));
  };
}

// ---------------------------------------------------------------------------------------------
// sources
// ---------------------------------------------------------------------------------------------

interface V3Sources {
  work: { dir: string; files: string[] };
  personal: { dir: string; files: string[] };
  template: string;
  home: string;
}

/** R3's directory layout under `srcDir`: appvms/<name>/…, vm-templates/<name>/, home/<user>. */
function makeV3Sources(srcDir: string, dom0User: string): V3Sources {
  const work = path.join(srcDir, "appvms", V3_QUBES.work.name);
  const personal = path.join(srcDir, "appvms", V3_QUBES.personal.name);
  const template = path.join(srcDir, "vm-templates", V3_QUBES.template.name);
  const home = path.join(srcDir, "home", dom0User);
  for (const d of [work, personal, template, home]) fs.mkdirSync(d, { recursive: true });

  makeSparseImage(path.join(work, "private.img"), WORK_IMAGE_SIZE, WORK_REGIONS);
  fs.writeFileSync(path.join(work, "firewall.xml"), FIREWALL_XML_R3);
  fs.writeFileSync(path.join(work, "whitelisted-appmenus.list"), APPMENUS_LIST);
  for (const img of ["private.img", "root.img"]) {
    makeSparseImage(path.join(personal, img), SMALL_IMAGE_SIZE, personalRegions(img));
    makeSparseImage(path.join(template, img), SMALL_IMAGE_SIZE, templateRegions(img));
  }
  fs.writeFileSync(path.join(template, "whitelisted-appmenus.list"), APPMENUS_LIST);
  makeTree(home);
  return {
    // R3-W's per-qube order: private.img, …, firewall.xml, whitelisted-appmenus.list, root.img
    work: { dir: work, files: ["private.img", "firewall.xml", "whitelisted-appmenus.list"] },
    personal: { dir: personal, files: ["private.img", "root.img"] },
    template,
    home,
  };
}

// ---------------------------------------------------------------------------------------------
// the pieces of a v3 backup
// ---------------------------------------------------------------------------------------------

/** backup-header in R3-W's key order (spec §3.3): compression-filter only when compressed. */
export function referenceHeaderV3(o: Pick<Required<ReferenceV3Options>, "compress" | "encrypt">): string {
  const py = (b: boolean) => (b ? "True" : "False");
  const compressed = o.compress !== "none";
  return (
    `version=3\nhmac-algorithm=SHA512\ncrypto-algorithm=${V3_CIPHER}\n` +
    `encrypted=${py(o.encrypt)}\ncompressed=${py(compressed)}\n` +
    (compressed ? `compression-filter=${o.compress}\n` : "")
  );
}

interface BackupSizes {
  work: number;
  personal: number;
  template: number;
  home: number;
}

/** The core2 qubes.xml (spec §6.4) of the described system; `paths` are R3's backup_path values. */
export function referenceQubesXmlV3(
  o: Required<ReferenceV3Options>,
  paths: { work: string; personal: string; template: string },
  sizes: BackupSizes,
): string {
  const { template: t, netvm: n, work: w, personal: p } = V3_QUBES;
  const common = `debug="False" default_user="user" include_in_backups="True" internal="False"`;
  const kernel = `kernel="4.4.14-11" kernelopts="" uses_default_kernel="True" uses_default_kernelopts="True"`;
  const tplBackup = o.template
    ? `backup_content="True" backup_path="${paths.template}" backup_size="${sizes.template}"`
    : `backup_content="False"`;
  return `<QubesVmCollection clockvm="${n.qid}" default_fw_netvm="${n.qid}" default_kernel="4.4.14-11" default_netvm="${n.qid}" default_template="${t.qid}" updatevm="${n.qid}">
  <QubesAdminVm autostart="False" backup_content="True" backup_path="dom0-home/${o.dom0User}" backup_size="${sizes.home}" ${common} dir_path="/var/lib/qubes/servicevms/dom0" installed_by_rpm="False" label="black" name="dom0" qid="0" services="{}" template_qid="none"/>
  <QubesTemplateVm ${tplBackup} ${common} dir_path="/var/lib/qubes/vm-templates/${t.name}" installed_by_rpm="True" ${kernel} label="black" maxmem="4000" memory="400" name="${t.name}" netvm_qid="${n.qid}" pcidevs="[]" qid="${t.qid}" services="{'meminfo-writer': True}" template_qid="none" uses_default_netvm="True" vcpus="2"/>
  <QubesNetVm backup_content="False" ${common} dir_path="/var/lib/qubes/servicevms/${n.name}" installed_by_rpm="False" ${kernel} label="red" maxmem="4000" memory="300" name="${n.name}" netid="1" pcidevs="['00:19.0']" qid="${n.qid}" services="{'meminfo-writer': False}" template_qid="${t.qid}" vcpus="2"/>
  <QubesAppVm backup_content="True" backup_path="${paths.personal}" backup_size="${sizes.personal}" ${common} dir_path="/var/lib/qubes/appvms/${p.name}" installed_by_rpm="False" ${kernel} label="purple" maxmem="4000" memory="800" name="${p.name}" netvm_qid="none" pcidevs="[]" qid="${p.qid}" services="{'meminfo-writer': True}" template_qid="none" uses_default_netvm="False" vcpus="2"/>
  <QubesAppVm backup_content="True" backup_path="${paths.work}" backup_size="${sizes.work}" ${common} dir_path="/var/lib/qubes/appvms/${w.name}" installed_by_rpm="False" ${kernel} label="blue" maxmem="4000" memory="600" name="${w.name}" netvm_qid="${n.qid}" pcidevs="[]" qid="${w.qid}" services="{'meminfo-writer': True}" template_qid="${t.qid}" uses_default_netvm="True" vcpus="2"/>
</QubesVmCollection>
`;
}

/**
 * One archived file: inner tar (| gzip) (| openssl enc) as ONE stream, cut by R3-W's rule into
 * `<stage>/<base>.NNN`, each followed by `<base>.NNN.hmac`. Returns the member names in order.
 */
function archiveFile(
  stage: string,
  passFile: string,
  src: string,
  subdir: string,
  dereference: boolean,
  chunkSize: number,
  o: Required<ReferenceV3Options>,
): { base: string; members: string[]; chunks: number } {
  const base = `${subdir}${path.basename(src)}`;
  fs.mkdirSync(path.join(stage, subdir), { recursive: true });
  const inner = path.join(stage, `${base}.inner`);
  runToFile("tar", innerTarArgs(src, subdir, dereference, o.compress), inner);
  let streamFile = inner;
  if (o.encrypt) {
    streamFile = path.join(stage, `${base}.stream`);
    opensslEncrypt(inner, streamFile, passFile);
    fs.rmSync(inner);
  }
  const pieces = cutChunksR3(
    fs.readFileSync(streamFile),
    chunkSize,
    o.readSize,
    r3ReadLengths(o.readSize, o.shortReads, `${READ_SEED}:${base}`),
  );
  fs.rmSync(streamFile);
  const members: string[] = [];
  pieces.forEach((piece, i) => {
    const rel = chunkName(base, i);
    const file = path.join(stage, rel);
    fs.writeFileSync(file, piece);
    fs.writeFileSync(`${file}.hmac`, dgstHmacLine(file, o.passphrase));
    members.push(rel, `${rel}.hmac`);
  });
  return { base, members, chunks: pieces.length };
}

const sizeOf = (stage: string, members: readonly string[]) =>
  members.reduce((n, m) => n + fs.statSync(path.join(stage, m)).size, 0);

// ---------------------------------------------------------------------------------------------
// the backup
// ---------------------------------------------------------------------------------------------

/**
 * Sources under `<dir>/src` (and `<dir>/xml/qubes.xml`) and a v3 backup of them at
 * `<dir>/qubes-backup-v3.bin`, as R3-W laid it
 * out: header, header hmac, qubes.xml.000 (+ .hmac), then the non-template qubes by name, then the
 * template, then the dom0 home; every chunk followed by its `.hmac`. The staging dir is removed.
 */
export function buildReferenceV3(options: ReferenceV3Options): ReferenceV3Build {
  const o = resolveV3Options(options);
  const src = makeV3Sources(path.join(o.dir, "src"), o.dom0User);
  const stage = path.join(o.dir, "stage");
  const backup = path.join(o.dir, "qubes-backup-v3.bin");
  fs.mkdirSync(stage, { recursive: true });
  const passFile = path.join(o.dir, "passphrase");
  fs.writeFileSync(passFile, `${o.passphrase}\n`, { mode: 0o600 });

  try {
    // 1. the header and its HMAC text
    const header = referenceHeaderV3(o);
    fs.writeFileSync(path.join(stage, "backup-header"), header);
    fs.writeFileSync(
      path.join(stage, "backup-header.hmac"),
      dgstHmacLine(path.join(stage, "backup-header"), o.passphrase),
    );

    // 2. the data (before qubes.xml, so that backup_size can be exact)
    const qubeDir = (q: { name: string; qid: number }, realParent: string) =>
      o.encrypt ? `vm${q.qid}/` : `${realParent}/${q.name}/`;
    const files: ReferenceV3File[] = [];
    const archive = (source: string, subdir: string, dereference: boolean, chunkSize = o.chunkSize) => {
      const r = archiveFile(stage, passFile, source, subdir, dereference, chunkSize, o);
      files.push({ base: r.base, source, chunks: r.chunks });
      return r.members;
    };
    const personalMembers = src.personal.files.flatMap((f) =>
      archive(path.join(src.personal.dir, f), qubeDir(V3_QUBES.personal, "appvms"), true),
    );
    const workMembers = src.work.files.flatMap((f) =>
      archive(path.join(src.work.dir, f), qubeDir(V3_QUBES.work, "appvms"), true),
    );
    // a template is one archive of `<dir>/.`: members `vm1/.`, `vm1/./root.img`, … (spec §5.1)
    const templateMembers = o.template
      ? archive(`${src.template}/.`, qubeDir(V3_QUBES.template, "vm-templates"), true)
      : [];
    const homeMembers = archive(src.home, "dom0-home/", false);

    // 3. qubes.xml, as exactly one chunk
    const noSlash = (p: string) => p.slice(0, -1);
    const qubesXml = referenceQubesXmlV3(
      o,
      {
        work: noSlash(qubeDir(V3_QUBES.work, "appvms")),
        personal: noSlash(qubeDir(V3_QUBES.personal, "appvms")),
        template: noSlash(qubeDir(V3_QUBES.template, "vm-templates")),
      },
      {
        work: sizeOf(stage, workMembers),
        personal: sizeOf(stage, personalMembers),
        template: sizeOf(stage, templateMembers),
        home: sizeOf(stage, homeMembers),
      },
    );
    const xmlDir = path.join(o.dir, "xml");
    fs.mkdirSync(xmlDir, { recursive: true });
    fs.writeFileSync(path.join(xmlDir, "qubes.xml"), qubesXml);
    const xmlMembers = archive(path.join(xmlDir, "qubes.xml"), "", true, o.qubesXmlChunkSize);
    if (xmlMembers.length !== 2)
      throw new Error(`reference v3: qubes.xml needs ${xmlMembers.length / 2} chunks, not 1`);
    files.unshift(files.pop()!); // listed in outer order: qubes.xml first

    // 4. the outer file, one tar run per member
    const order = [
      "backup-header",
      "backup-header.hmac",
      ...xmlMembers,
      ...personalMembers,
      ...workMembers,
      ...templateMembers,
      ...homeMembers,
    ];
    const members = order.map((name) => ({ name, size: fs.statSync(path.join(stage, name)).size }));
    const outerFd = fs.openSync(backup, "w");
    try {
      for (const m of order) run("tar", ["-cO", "--posix", "-C", stage, m], { stdout: outerFd });
    } finally {
      fs.closeSync(outerFd);
    }
    return { backup, header, members, qubesXml, files, home: src.home, options: o };
  } finally {
    fs.rmSync(passFile, { force: true });
    fs.rmSync(stage, { recursive: true, force: true });
  }
}
