/**
 * The create pipeline: sources → inner tar → compress → chunk → seal → outer tar → sink.
 *
 *   1. backup-header          plain `key=value` text in the reference writer's form
 *   2. backup-header.hmac     scrypt container of the header, passphrase `backup-header!P`
 *   3. qubes.xml.000.enc      the manifest (one chunk, always), written first so that a reader
 *                             can list a backup without reading its data
 *   4. per qube, per file     inner tar (volume: pax + GNU sparse 1.0; directory: tree) →
 *                             one compressed stream → chunks of exactly chunkSize bytes →
 *                             each sealed with `backup-id!<file>.NNN!P` → `<file>.NNN.enc`
 *                             (chunk-members.ts: streamed to a file, gathered for a pipe)
 *   5. dom0-home/<user>       last, like the reference writer
 *
 * Everything is streamed with backpressure: memory is at most one chunk buffer plus the KDFs,
 * whatever the size of the sources, and nothing is written anywhere but the sink. Each stage
 * hands on buffers it never touches again, so the next may keep them or change them in place
 * (compression reads them, sealing encrypts them in place). The sink publishes the
 * backup only after the last byte was written (commit); any failure aborts it.
 */
import { serializeBackupHeaderV4, isValidBackupId } from "../codec/backup-header/index.js";
import { buildQubesXml } from "../codec/qubes-xml/index.js";
import type { BackupQube, QubesXmlModel } from "../codec/qubes-xml/index.js";
import { CONTAINER_OVERHEAD } from "../codec/scrypt/index.js";
import type { ScryptParams } from "../codec/scrypt/index.js";
import { encodeTreeEntryHeader, endOfArchive, paddingFor } from "../codec/tar/index.js";
import { QbackupError } from "../errors.js";
import {
  BACKUP_HEADER_HMAC_NAME,
  BACKUP_HEADER_NAME,
  MAX_CHUNK_SIZE,
  MIN_CHUNK_SIZE,
  QUBES_XML_BASE,
  chunkMemberName,
  newBackupId,
} from "../format/names.js";
import { validatePassphrase } from "../format/passphrase.js";
import type { BackupSink } from "../transport/sink.js";
import { ChunkBuffer } from "./chunk.js";
import { writeChunkMembers } from "./chunk-members.js";
import { likelyChunkCount } from "./likely-chunks.js";
import { compress, headerCompressionFields } from "./compress.js";
import type { Compression } from "./compress.js";
import { OuterArchiveWriter } from "./outer.js";
import type { BackupPlan, PlannedFile, PlannedQube } from "./plan.js";
import { ChunkSealer } from "./seal.js";
import { treeArchive } from "./sources/tree.js";
import { volumeArchive } from "./sources/volume.js";

export type { BackupPlan, PlannedFile, PlannedQube, SourceSpec } from "./plan.js";
export { parseSourceSpec, planBackup, sourceHolding } from "./plan.js";
export type { Compression } from "./compress.js";
export { DEFAULT_GZIP_LEVEL } from "./compress.js";

/** qubes.xml must be one chunk (the reference reader only fetches `.000`) of at most 1 MiB (spec §2.5). */
export const MAX_QUBES_XML_MEMBER = 1024 * 1024;
/** Label given to backed-up qubes in qubes.xml (the reference reader falls back to red as well). */
export const DEFAULT_LABEL = "red";

export type CreateEvent =
  | { type: "start"; backupId: string; totalEstimate: number }
  | { type: "file-start"; qube: string; file: string; estimate: number }
  | { type: "scanned"; bytes: number }
  | { type: "read"; bytes: number }
  | { type: "member"; name: string; size: number }
  | { type: "file-done"; qube: string; file: string; chunks: number; storedBytes: number }
  | { type: "warning"; message: string };

export interface CreateOptions {
  sink: BackupSink;
  passphrase: string;
  compression: Compression;
  chunkSize: number;
  scrypt: ScryptParams;
  backupId?: string;
  /** KDFs that may run at once, and chunks derived ahead of need (each KDF holds 128·r·N bytes); default 1. */
  jobs?: number;
  onEvent?: (event: CreateEvent) => void;
  signal?: AbortSignal;
}

export interface CreateResult {
  backupId: string;
  location: string;
  bytesWritten: number;
  members: number;
  qubes: Array<{ name: string; storedBytes: number; backupSize: number }>;
  /** Every archived file (qubes.xml first) with its number of chunks, in backup order. */
  files: Array<{ base: string; chunks: number }>;
  /** The compression filter the header names, or null when not compressed. */
  compressionFilter: string | null;
}

export async function createBackup(plan: BackupPlan, options: CreateOptions): Promise<CreateResult> {
  const { sink } = options;
  try {
    const result = await writeBackup(plan, options);
    await sink.commit();
    return result;
  } catch (err) {
    await sink.abort();
    throw err;
  }
}

async function writeBackup(plan: BackupPlan, options: CreateOptions): Promise<CreateResult> {
  const { passphrase, compression, chunkSize, scrypt, signal } = options;
  const emit = options.onEvent ?? (() => undefined);
  validatePassphrase(passphrase);
  if (!Number.isSafeInteger(chunkSize) || chunkSize < MIN_CHUNK_SIZE || chunkSize > MAX_CHUNK_SIZE) {
    throw new QbackupError("ERR_USAGE", `chunk size must be between ${MIN_CHUNK_SIZE} and ${MAX_CHUNK_SIZE} bytes`);
  }
  const backupId = options.backupId ?? newBackupId();
  if (!isValidBackupId(backupId))
    throw new QbackupError("ERR_USAGE", `backup id '${backupId}' must match [A-Za-z0-9-]+ and not start with '-'`);

  const qubes = plan.dom0 ? [...plan.qubes, plan.dom0] : plan.qubes;
  const backupSizes = new Map(qubes.map((q) => [q, storedBytesBound(q, chunkSize)]));
  emit({ type: "start", backupId, totalEstimate: qubes.reduce((n, q) => n + q.estimate, 0) });

  const now = Math.floor(Date.now() / 1000);
  const outer = new OuterArchiveWriter(options.sink, now);
  let members = 0;
  const written = (name: string, size: number) => {
    members++;
    emit({ type: "member", name, size });
  };
  const member = async (name: string, parts: readonly Uint8Array[]) => {
    signal?.throwIfAborted();
    const size = await outer.member(name, parts);
    written(name, size);
    return size;
  };

  // Keys that are certainly needed are derived at once, in parallel with everything else: the
  // header's, the manifest's and the first file's first chunk's (then each next file's, below).
  const ahead = options.jobs ?? 1;
  const sealer = new ChunkSealer(backupId, passphrase, scrypt, Math.max(1, ahead));
  const files = qubes.flatMap((q) => q.files);
  sealer.prepareHeader();
  sealer.prepare(QUBES_XML_BASE, 0);
  if (files[0]) sealer.prepare(files[0].fileBase, 0);

  // 1–2: header and its authenticator
  const header = serializeBackupHeaderV4({ backupId, ...headerCompressionFields(compression) });
  await member(BACKUP_HEADER_NAME, [header]);
  await member(BACKUP_HEADER_HMAC_NAME, await sealer.sealHeader(header));

  // 3: the manifest
  const xml = buildQubesXml(qubesXmlModel(plan, backupSizes));
  const xmlStream = await collect(
    compress(singleFileArchive(QUBES_XML_BASE, xml, now), compression),
    MAX_QUBES_XML_MEMBER,
  );
  await member(chunkMemberName(QUBES_XML_BASE, 0), await sealer.seal(QUBES_XML_BASE, 0, xmlStream));

  // 4–5: the data, one qube's members contiguous, dom0 home last
  const chunkBuffer = new ChunkBuffer(chunkSize); // for a sink that is not seekable; files go one at a time
  const results: CreateResult["qubes"] = [];
  const archived: CreateResult["files"] = [{ base: QUBES_XML_BASE, chunks: 1 }];
  for (const qube of qubes) {
    let stored = 0;
    for (const file of qube.files) {
      emit({ type: "file-start", qube: qube.name, file: file.fileBase, estimate: file.estimate });
      let inputRead = 0;
      const progress = {
        scanned: (bytes: number) => emit({ type: "scanned", bytes }),
        read: (bytes: number) => {
          inputRead += bytes;
          emit({ type: "read", bytes });
        },
        warning: (message: string) => emit({ type: "warning", message }),
      };
      const inner =
        file.kind === "volume" ? volumeArchive(file, progress) : treeArchive(file.path, file.fileBase, progress);
      const next = files[files.indexOf(file) + 1];
      if (next) sealer.prepare(next.fileBase, 0);
      // keys of this chunk and of the next ones the file will likely have (likely-chunks.ts)
      const bound = Math.ceil(storedBytesBound({ ...qube, files: [file] }, chunkSize) / chunkSize);
      const onData = (index: number, filled: number) => {
        const produced = index * chunkSize + filled;
        const likely = likelyChunkCount({ produced, inputRead, inputTotal: file.estimate, chunkSize, bound });
        sealer.prepareAhead(file.fileBase, index, ahead, likely ?? index + 1);
      };
      const { chunks, stored: fileStored } = await writeChunkMembers(compress(inner, compression), {
        fileBase: file.fileBase,
        chunkSize,
        sealer,
        outer,
        chunkBuffer,
        onData,
        onMember: written,
        signal,
      });
      sealer.discard(file.fileBase);
      stored += fileStored;
      archived.push({ base: file.fileBase, chunks });
      emit({ type: "file-done", qube: qube.name, file: file.fileBase, chunks, storedBytes: fileStored });
    }
    const backupSize = backupSizes.get(qube)!;
    if (stored > backupSize) {
      emit({
        type: "warning",
        message: `qube ${qube.name}: ${stored} bytes stored, more than the ${backupSize} recorded as backup-size; restoring it from a qube with qvm-backup-restore needs --ignore-size-limit`,
      });
    }
    results.push({ name: qube.name, storedBytes: stored, backupSize });
  }
  const { compressed, compressionFilter } = headerCompressionFields(compression);
  return {
    backupId,
    location: options.sink.location,
    bytesWritten: outer.bytesWritten,
    members,
    qubes: results,
    files: archived,
    compressionFilter: compressed ? compressionFilter : null,
  };
}

/**
 * An upper bound of the bytes a qube's `.enc` members will take, written into qubes.xml as
 * `backup-size` before the data exists (the reference reader uses it as a hard limit when
 * restoring from a qube, spec §6.3): data + archive overhead, + 2% for a compressor's worst-case
 * expansion, + 1 MiB, + the container overhead of every chunk.
 */
export function storedBytesBound(qube: PlannedQube, chunkSize: number): number {
  const ARCHIVE_OVERHEAD = 64 * 1024;
  let total = 0;
  for (const file of qube.files) {
    const archive = file.estimate + ARCHIVE_OVERHEAD;
    const compressed = archive + Math.ceil(archive / 50) + 1024 * 1024;
    total += compressed + (Math.ceil(compressed / chunkSize) + 1) * CONTAINER_OVERHEAD;
  }
  return total;
}

function qubesXmlModel(plan: BackupPlan, backupSizes: Map<PlannedQube, number>): QubesXmlModel {
  const qubes: BackupQube[] = plan.qubes.map((q) => ({
    name: q.name,
    qid: q.qid,
    klass: "StandaloneVM",
    label: DEFAULT_LABEL,
    backupPath: q.backupPath,
    backupSize: backupSizes.get(q)!,
    volumes: q.files.flatMap((f: PlannedFile) => (f.kind === "volume" ? [{ name: f.volume, size: f.realSize }] : [])),
  }));
  return plan.dom0 ? { qubes, dom0: { user: plan.dom0.user, backupSize: backupSizes.get(plan.dom0)! } } : { qubes };
}

/** A one-file inner archive, for qubes.xml. */
async function* singleFileArchive(name: string, content: Buffer, mtime: number): AsyncGenerator<Buffer> {
  yield encodeTreeEntryHeader({
    path: name,
    type: "file",
    size: content.length,
    mode: 0o644,
    mtime,
    uid: 0,
    gid: 0,
    uname: "root",
    gname: "root",
  });
  yield content;
  yield Buffer.alloc(paddingFor(content.length));
  yield endOfArchive();
}

async function collect(stream: AsyncIterable<Buffer>, limit: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let total = 0;
  for await (const part of stream) {
    total += part.length;
    if (total > limit) throw new QbackupError("ERR_INTERNAL", `qubes.xml does not fit into ${limit} bytes`);
    parts.push(part);
  }
  return Buffer.concat(parts);
}
