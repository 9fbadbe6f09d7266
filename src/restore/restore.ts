/**
 * Restore and verify: one pass over the outer archive after the header and manifest (open.ts).
 *
 * For every member, in stream order:
 *   1. its name says which qube and file it belongs to (`<backup-path><file>.NNN.enc`, in v3
 *      `<backup-path><file>.NNN` followed by its `.hmac`; chunks.ts); a member that belongs to
 *      no qube of the manifest, or is not a chunk, is an error;
 *   2. a member of a qube that is not selected is skipped without running its KDF (seeked over
 *      when the backup is a file);
 *   3. otherwise the chunk numbers of each file must run 0, 1, 2, … with the file's chunks
 *      consecutive and each qube's members contiguous; the qube's stored bytes may not exceed
 *      its recorded backup-size unless allowed;
 *   4. the chunk is authenticated in full (authenticate.ts, v3.ts) and only then handed on, in order,
 *      to that file's consumer: decompress → strict inner tar reader → placement (place.ts),
 *      which runs concurrently with reading the next chunk;
 *   5. when a file's last chunk was handed on, its consumer must end cleanly: compressed
 *      stream complete, tar end marker present, nothing after it, exactly the expected member
 *      (or a tree under it);
 *   6. when a qube's last member was processed, its output directory (built under a temporary
 *      name) gets qube.json and waits; anything incomplete is removed instead.
 * At the end, selected qubes with no members and volumes listed in qubes.xml but absent from
 * the backup are reported. Only if the whole stream ended cleanly and every selected qube is
 * complete are the waiting directories published (renamed); otherwise they are removed, so a
 * damaged or cut backup leaves nothing under a final name. With `keepComplete`, each qube is
 * published as soon as it is complete instead. In verify mode placement runs in dry-run mode.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { readInnerTar } from "../codec/tar/index.js";
import type { DataPiece } from "../codec/tar/index.js";
import type { KdfLimits } from "../codec/scrypt/index.js";
import { QbackupError, destinationError } from "../errors.js";
import { pathExists } from "../runtime/paths.js";
import { Channel } from "../runtime/streams.js";
import type { ByteSource } from "../transport/source.js";
import { decompress } from "./decompress.js";
import type { Decompression } from "./decompress.js";
import { openBackup } from "./open.js";
import type { BackupQubeInfo, OpenedBackup } from "./open.js";
import type { OuterMember } from "./outer-reader.js";
import { OutputDirectory } from "./place.js";

export interface RestoreOptions {
  passphrase: string;
  kdfLimits: KdfLimits;
  forcedCompressionFilter?: string;
  /** Qube names to restore (dom0 = its home); empty or absent = all. */
  include?: readonly string[];
  exclude?: readonly string[];
  skipDom0Home?: boolean;
  /** Allow more stored data than a qube's recorded backup-size. */
  ignoreSizeLimit?: boolean;
  /** Authenticate, decompress and parse everything; write nothing. */
  verifyOnly?: boolean;
  /** Where restored qubes go (required unless verifyOnly). */
  destDir?: string;
  /** Restore beside an existing DEST/<qube> as DEST/<qube>-1, -2, … instead of failing. */
  renameConflicting?: boolean;
  /** Publish each qube as soon as it is complete, even if a later part of the backup fails. */
  keepComplete?: boolean;
  /**
   * Only these files of each selected qube (as named inside it: `private.img`, `firewall.xml`);
   * the others are skipped, not missing. Absent = all.
   */
  onlyFiles?: readonly string[];
  /**
   * Containers whose keys are derived at once (each KDF holds 128·r·N bytes); default 1. From a
   * seekable file the KDFs of the next `jobs + 1` members start ahead of the reader.
   */
  jobs?: number;
  onEvent?: (event: RestoreEvent) => void;
}

/**
 * `incomplete`: its members were sound but something qubes.xml records is absent or differs (a
 * volume, a volume's size); `discarded`: complete, but not kept because the restore as a whole
 * failed (see keepComplete).
 */
export type QubeStatus = "restored" | "verified" | "incomplete" | "discarded" | "missing" | "failed" | "not selected";

export interface QubeResult {
  name: string;
  status: QubeStatus;
  /** What was restored: the file (or tree) name, its data bytes, and its size (files only). */
  files: Array<{ name: string; bytes: number; size?: number }>;
  storedBytes: number;
  backupSize: number;
  location: string | undefined;
  problems: string[];
}

export interface RestoreReport {
  /** v4's backup-id; null for v3 backups, which have none. */
  backupId: string | null;
  qubes: QubeResult[];
  /** True when every selected qube is complete. */
  ok: boolean;
}

export type RestoreEvent =
  /** `volumes`: the disk images qubes.xml says the backup holds for the qube (`private.img`, …). */
  | {
      type: "opened";
      backupId: string | null;
      selected: Array<{ name: string; backupSize: number; volumes: string[] }>;
    }
  | { type: "qube-start"; qube: string; backupSize: number }
  /** A member of the qube was authenticated: `bytes` as stored (compressed, encrypted). */
  | { type: "chunk"; qube: string; bytes: number }
  /** Restored (verified) data of the qube: `bytes` as the qube had them, comparable to backupSize. */
  | { type: "data"; qube: string; bytes: number }
  | { type: "file-done"; qube: string; file: string; bytes: number }
  | { type: "qube-done"; qube: string; result: QubeResult };

const METADATA_FILE = "qube.json";
const MAX_RENAME_SUFFIX = 99;

interface FileRun {
  base: string;
  next: number;
  channel: Channel<Buffer>;
  consumer: Promise<{ name: string; bytes: number; size?: number }>;
}

interface QubeRun {
  info: BackupQubeInfo;
  result: QubeResult;
  output: OutputDirectory;
  file: FileRun | undefined;
  finishedFiles: Set<string>;
  emit: (event: RestoreEvent) => void;
  /** Whether the qube's file NAME is to be restored (onlyFiles). */
  wanted: (name: string) => boolean;
}

export async function restoreBackup(source: ByteSource, options: RestoreOptions): Promise<RestoreReport> {
  let completed = false;
  try {
    // before the manifest says which member is whose, data chunks are worth an early KDF only
    // when every qube will be restored
    const everything = !options.include?.length && !options.exclude?.length && !options.skipDom0Home;
    const opened = await openBackup(source, { ...options, lookAhead: everything ? lookAheadOf(options) : 1 });
    const report = await restoreOpened(opened, options);
    completed = true;
    return report;
  } finally {
    await source.close(!completed).catch((err: unknown) => {
      if (completed) throw err;
    });
  }
}

/** Members whose KDFs may start ahead of the reader: enough to keep `jobs` KDFs busy meanwhile. */
function lookAheadOf(options: RestoreOptions): number {
  return (options.jobs ?? 1) + 1;
}

/** The qubes to process: include/exclude by name (dom0 = the home), errors for unknown names. */
export function selectQubes(
  qubes: readonly BackupQubeInfo[],
  options: Pick<RestoreOptions, "include" | "exclude" | "skipDom0Home">,
): BackupQubeInfo[] {
  const names = new Set(qubes.map((q) => q.name));
  for (const name of [...(options.include ?? []), ...(options.exclude ?? [])]) {
    if (!names.has(name)) {
      throw new QbackupError("ERR_USAGE", `qube ${name} is not in this backup`, {
        hint: `it holds: ${[...names].join(", ") || "no qubes"}`,
      });
    }
  }
  const include = options.include && options.include.length > 0 ? new Set(options.include) : undefined;
  const exclude = new Set(options.exclude ?? []);
  return qubes.filter(
    (q) =>
      (include ? include.has(q.name) : true) &&
      !exclude.has(q.name) &&
      !(options.skipDom0Home && q.dom0User !== undefined && !include?.has(q.name)),
  );
}

async function restoreOpened(opened: OpenedBackup, options: RestoreOptions): Promise<RestoreReport> {
  const emit = options.onEvent ?? (() => undefined);
  const selected = selectQubes(opened.qubes, options);
  const targets = options.verifyOnly ? new Map<BackupQubeInfo, Target>() : await planTargets(selected, options);
  emit({
    type: "opened",
    backupId: opened.backupId,
    selected: selected.map((q) => ({
      name: q.name,
      backupSize: q.backupSize,
      volumes: q.domain.volumes.filter((v) => v.saveOnStop).map((v) => `${v.name}.img`),
    })),
  });

  const results = new Map<BackupQubeInfo, QubeResult>(
    opened.qubes.map((q) => [
      q,
      {
        name: q.name,
        status: selected.includes(q) ? "missing" : "not selected",
        files: [],
        storedBytes: 0,
        backupSize: q.backupSize,
        location: undefined,
        problems: [],
      },
    ]),
  );
  const finishedQubes = new Set<BackupQubeInfo>();
  const wanted = wantedFiles(options);
  opened.chunks.lookAhead((base) => {
    const owner = ownerOf(base, opened.qubes);
    return owner !== undefined && selected.includes(owner) && wanted(fileOf(base, owner));
  }, lookAheadOf(options));
  /** Complete qubes waiting for the whole restore to succeed. */
  const waiting: QubeRun[] = [];
  let run: QubeRun | undefined;
  const finish = async (r: QubeRun) => {
    await finishQube(r);
    if (r.result.status === "incomplete") await r.output.abort();
    else if (options.verifyOnly || options.keepComplete) await publishQube(r, options, emit);
    else waiting.push(r);
  };

  try {
    for (let member = await opened.reader.next(); member !== null; member = await opened.reader.next()) {
      const { base, index } = opened.chunks.chunkOf(member.name);
      const owner = ownerOf(base, opened.qubes);
      if (owner === undefined) {
        throw new QbackupError("ERR_TAR_MALFORMED", `member ${member.name} belongs to no qube in this backup`, {
          hint: "a member was moved or added",
        });
      }
      if (!selected.includes(owner) || !wanted(fileOf(base, owner))) {
        await opened.chunks.skip(opened.reader, member);
        continue;
      }
      if (run?.info !== owner) {
        if (run) await finish(run);
        run = undefined;
        if (finishedQubes.has(owner)) {
          throw new QbackupError(
            "ERR_TAR_MALFORMED",
            `members of qube ${owner.name} are not contiguous (${member.name})`,
          );
        }
        finishedQubes.add(owner);
        run = await startQube(owner, results.get(owner)!, targets.get(owner), options);
        emit({ type: "qube-start", qube: owner.name, backupSize: owner.backupSize });
      }
      await opened.chunks.fill();
      await processChunk(run, opened, member, base, index, options);
      emit({ type: "chunk", qube: owner.name, bytes: member.size });
    }
    if (run) await finish(run);
    run = undefined;
  } catch (err) {
    if (run) {
      run.result.status = "failed";
      await abortQube(run);
    }
    await discard(waiting);
    throw err;
  }

  for (const q of selected) {
    const result = results.get(q)!;
    if (result.status === "missing") result.problems.push("no members in the backup");
  }
  const ok = selected.every((q) => results.get(q)!.status === (options.verifyOnly ? "verified" : "restored"));
  if (ok) for (const r of waiting) await publishQube(r, options, emit);
  else await discard(waiting);
  return { backupId: opened.backupId, qubes: [...results.values()], ok };
}

async function discard(waiting: readonly QubeRun[]): Promise<void> {
  for (const r of waiting) {
    r.result.status = "discarded";
    r.result.problems.push("complete, but not kept because the restore failed (see --keep-complete)");
    await r.output.abort();
  }
}

/** The qube whose backup-path holds file `base`: `vmN/<file>` (one level), or dom0's `dom0-home/<user>`. */
/** The name of file `base` inside its qube (`private.img`); "" for dom0's home, which is one tree. */
function fileOf(base: string, owner: BackupQubeInfo): string {
  return owner.dom0User !== undefined ? "" : base.slice(owner.backupPath.length);
}

function wantedFiles(options: RestoreOptions): (name: string) => boolean {
  const only = options.onlyFiles;
  return only === undefined ? () => true : (name) => name === "" || only.includes(name);
}

function ownerOf(base: string, qubes: readonly BackupQubeInfo[]): BackupQubeInfo | undefined {
  return qubes.find((q) => {
    if (q.dom0User !== undefined) return base === q.backupPath;
    const rest = base.startsWith(q.backupPath) ? base.slice(q.backupPath.length) : "";
    return rest !== "" && !rest.includes("/");
  });
}

interface Target {
  parent: string;
  name: string;
}

/** DEST/<qube> (dom0: DEST/dom0-home/<user>); never an existing path. */
async function planTargets(
  selected: readonly BackupQubeInfo[],
  options: RestoreOptions,
): Promise<Map<BackupQubeInfo, Target>> {
  const dest = options.destDir;
  if (dest === undefined) throw new QbackupError("ERR_USAGE", "restore needs a destination directory");
  await fs.mkdir(dest, { recursive: true }).catch((err: unknown) => {
    throw destinationError(err, dest);
  });
  const st = await fs.lstat(dest);
  if (!st.isDirectory()) throw new QbackupError("ERR_DEST", `destination ${dest} is not a directory`);
  const targets = new Map<BackupQubeInfo, Target>();
  const taken = new Set<string>();
  for (const q of selected) {
    const parent = q.dom0User !== undefined ? path.join(dest, "dom0-home") : dest;
    const wanted = q.dom0User ?? q.name;
    let name = wanted;
    for (let i = 1; ; i++) {
      const candidate = path.join(parent, name);
      const exists = taken.has(candidate) || (await pathExists(candidate));
      if (!exists) break;
      if (!options.renameConflicting) {
        throw new QbackupError("ERR_DEST_EXISTS", `${candidate} already exists; not overwriting it`, {
          hint: "restore elsewhere, remove it, or use --rename-conflicting",
        });
      }
      if (i > MAX_RENAME_SUFFIX) throw new QbackupError("ERR_DEST_EXISTS", `no free name for ${wanted} in ${parent}`);
      name = `${wanted}-${i}`;
    }
    taken.add(path.join(parent, name));
    targets.set(q, { parent, name });
  }
  return targets;
}

async function startQube(
  info: BackupQubeInfo,
  result: QubeResult,
  target: Target | undefined,
  options: RestoreOptions,
): Promise<QubeRun> {
  const dryRun = options.verifyOnly === true;
  const finalPath = target ? path.join(target.parent, target.name) : info.name;
  const output = await OutputDirectory.create(options.destDir ?? "", finalPath, dryRun);
  const emit = options.onEvent ?? (() => undefined);
  return { info, result, output, file: undefined, finishedFiles: new Set(), emit, wanted: wantedFiles(options) };
}

async function processChunk(
  run: QubeRun,
  opened: OpenedBackup,
  member: OuterMember,
  base: string,
  index: number,
  options: RestoreOptions,
): Promise<void> {
  const { info, result } = run;
  if (!options.ignoreSizeLimit && result.storedBytes + member.size > info.backupSize) {
    throw new QbackupError(
      "ERR_TAR_MALFORMED",
      `qube ${info.name} has more data than its recorded backup-size of ${info.backupSize} bytes (at ${member.name})`,
      { hint: "use --ignore-size-limit if the backup is trusted to be larger" },
    );
  }
  if (run.file?.base !== base) {
    if (run.file) await finishFile(run);
    if (run.finishedFiles.has(base)) {
      throw new QbackupError("ERR_TAR_MALFORMED", `chunk ${member.name} arrives after other files followed ${base}`);
    }
    if (index !== 0) {
      throw new QbackupError(
        "ERR_MISSING",
        `file ${base} starts at ${member.name}: ${opened.chunks.memberName(base, 0)} is missing`,
      );
    }
    run.file = startFile(run, base, opened);
  } else if (index !== run.file.next) {
    throw new QbackupError(
      index > run.file.next ? "ERR_MISSING" : "ERR_TAR_MALFORMED",
      `expected ${opened.chunks.memberName(base, run.file.next)}, found ${member.name}: a chunk is missing or out of order`,
    );
  }
  const file = run.file;
  file.next = index + 1;
  result.storedBytes += member.size;
  for await (const plaintext of opened.chunks.open(opened.reader, member, { base, index })) {
    await file.channel.push(plaintext).catch(async (err: unknown) => {
      // the consumer failed (its error is the real one) or ended before this chunk
      const failure = await file.consumer.then(
        () => new QbackupError("ERR_TAR_MALFORMED", `chunk ${member.name} comes after the end of ${base}`),
        (e: unknown) => e,
      );
      throw failure ?? err;
    });
  }
}

function startFile(run: QubeRun, base: string, opened: OpenedBackup): FileRun {
  const channel = new Channel<Buffer>();
  const stored = opened.chunks.fileStream(channel, `archive of ${base}`);
  const consumer = consumeFile(run, base, stored, opened.decompression).then(
    (r) => {
      channel.fail(new QbackupError("ERR_TAR_MALFORMED", `${base} ended before its last chunk`));
      return r;
    },
    (err: unknown) => {
      channel.fail(err);
      throw err;
    },
  );
  consumer.catch(() => undefined); // awaited in finishFile / on push
  return { base, next: 0, channel, consumer };
}

async function finishFile(run: QubeRun): Promise<void> {
  const file = run.file!;
  run.file = undefined;
  file.channel.close();
  const done = await file.consumer;
  run.finishedFiles.add(file.base);
  run.result.files.push(done);
}

/** decompress → inner tar → placement, for the chunks of one archived file. */
async function consumeFile(
  run: QubeRun,
  base: string,
  chunks: AsyncIterable<Buffer>,
  decompression: Decompression,
): Promise<{ name: string; bytes: number; size?: number }> {
  const { info, output } = run;
  const what = `archive of ${base}`;
  // a file of the qube, or the qube's whole directory (dom0's home; a v3 template's `vmN/.`)
  const inside = base.slice(info.backupPath.length);
  const rootRel = info.dom0User !== undefined || inside === "." ? "" : inside;
  const relOf = (p: string) => {
    if (p === base) return rootRel;
    if (p.startsWith(`${base}/`))
      return rootRel === "" ? p.slice(base.length + 1) : `${rootRel}/${p.slice(base.length + 1)}`;
    throw new QbackupError("ERR_UNSAFE_PATH", `${what} holds ${JSON.stringify(p)}, outside ${base}`);
  };
  let kind: "file" | "directory" | undefined;
  let bytes = 0;
  let size = 0;
  for await (const { entry, data } of readInnerTar(decompress(chunks, decompression, what))) {
    const rel = relOf(entry.path);
    if (kind === undefined) {
      if (entry.path !== base || (entry.type !== "file" && entry.type !== "directory")) {
        throw new QbackupError(
          "ERR_TAR_MALFORMED",
          `${what} starts with ${JSON.stringify(entry.path)} instead of ${base}`,
        );
      }
      kind = entry.type;
      size = entry.size;
    } else if (kind === "file") {
      throw new QbackupError("ERR_TAR_MALFORMED", `${what} holds more than the single file ${base}`);
    }
    const linkRel = entry.type === "hardlink" && entry.linkname !== undefined ? relOf(entry.linkname) : undefined;
    bytes += await output.place(
      rel,
      entry,
      counted(data, (n) => run.emit({ type: "data", qube: info.name, bytes: n })),
      linkRel,
    );
  }
  if (kind === undefined) throw new QbackupError("ERR_TAR_MALFORMED", `${what} is empty`);
  const name = rootRel === "" ? path.posix.basename(base) : rootRel;
  return kind === "file" ? { name, bytes, size } : { name, bytes };
}

async function* counted(data: AsyncIterable<DataPiece>, count: (bytes: number) => void): AsyncGenerator<DataPiece> {
  for await (const piece of data) {
    count(piece.bytes.length);
    yield piece;
  }
}

/** Everything of the qube was read: end its last file, check it, and write qube.json. */
async function finishQube(run: QubeRun): Promise<void> {
  if (run.file) await finishFile(run);
  const { info, result, output } = run;
  const fileNames = new Set(result.files.map((f) => f.name));
  for (const v of info.domain.volumes) {
    if (v.saveOnStop && run.wanted(`${v.name}.img`) && !fileNames.has(`${v.name}.img`)) {
      result.problems.push(
        `volume ${v.name} is listed in qubes.xml but ${info.backupPath}${v.name}.img is not in the backup`,
      );
    }
  }
  // dom0's output is a home directory: nothing of ours goes into it. Written before finish(),
  // which sets the directories' own times (a v3 template's archive has the qube directory's)
  if (info.dom0User === undefined) {
    await output.writeMetadata(METADATA_FILE, `${JSON.stringify(qubeMetadata(info, result), null, 2)}\n`);
  }
  await output.finish();
  result.status = result.problems.length > 0 ? "incomplete" : output.dryRun ? "verified" : "restored";
}

async function publishQube(run: QubeRun, options: RestoreOptions, emit: (e: RestoreEvent) => void): Promise<void> {
  const { info, result, output } = run;
  await output.commit();
  result.location = options.verifyOnly ? undefined : output.finalPath;
  emit({ type: "qube-done", qube: info.name, result });
}

async function abortQube(run: QubeRun): Promise<void> {
  if (run.file) {
    run.file.channel.fail(new QbackupError("ERR_ABORTED", "restore aborted"));
    await run.file.consumer.catch(() => undefined);
  }
  await run.output.abort();
}

function qubeMetadata(info: BackupQubeInfo, result: QubeResult) {
  const d = info.domain;
  return {
    name: info.name,
    class: info.klass,
    label: info.label,
    template: info.template ?? null,
    netvm: info.netvm,
    properties: d.properties,
    features: d.features,
    tags: d.tags,
    devices: d.devices,
    volumes: d.volumes,
    backupPath: info.backupPath,
    backupSize: info.backupSize,
    files: result.files,
  };
}
