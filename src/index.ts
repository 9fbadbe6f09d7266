/**
 * qbackup as a library. The pipelines (create) and their edges (local sinks, passphrase
 * sources), the error type, and the pure codecs of the Qubes backup format, each as a namespace.
 *
 *   import { planBackup, parseSourceSpec, createBackup, openFileSink } from "qbackup";
 *   const plan = await planBackup([parseSourceSpec("work=/path/private.img")]);
 *   await createBackup(plan, { sink: await openFileSink("b.bin"), passphrase, compression: { kind: "gzip", level: 1, jobs: 2 },
 *                              chunkSize: 100 * 1024 * 1024, scrypt: { logN: 19, r: 8, p: 1 } });
 */
export { QbackupError, isQbackupError } from "./errors.js";
export type { ErrorCode } from "./errors.js";

export { createBackup, parseSourceSpec, planBackup, storedBytesBound, DEFAULT_GZIP_LEVEL } from "./create/index.js";
export type {
  BackupPlan,
  Compression,
  CreateEvent,
  CreateOptions,
  CreateResult,
  PlannedFile,
  PlannedQube,
  SourceSpec,
} from "./create/index.js";

export { listBackup, openBackup, restoreBackup, selectQubes } from "./restore/index.js";
export type {
  BackupListing,
  BackupQubeInfo,
  ListedDomain,
  OpenOptions,
  QubeResult,
  RestoreEvent,
  RestoreOptions,
  RestoreReport,
} from "./restore/index.js";

export type { BackupSink } from "./transport/sink.js";
export type { ByteSource } from "./transport/source.js";
export { commandSource, openFileSource, stdinSource } from "./transport/source.js";
export { defaultBackupFileName, openFileSink, resolveLocalDestination, stdoutSink } from "./transport/local.js";
export { readPassphrase } from "./runtime/passphrase.js";
export type { PassphraseSource } from "./runtime/passphrase.js";
export { ALLOWED_FILTER_PROGRAMS, resolveFilterProgram } from "./runtime/filters.js";

export { ExtImage } from "./image/ext-image.js";
export type { EntryType, ExtEntry } from "./image/ext-image.js";
export { extractEntry } from "./image/extract.js";
export type { ExtractCounts } from "./image/extract.js";
export { detectFilesystem, locateExtFilesystem } from "./image/layout.js";
export type { FilesystemKind, Located, ReadAt } from "./image/layout.js";

export { parseProfile, renderProfile } from "./config/profile.js";
export type { LoadedProfile, Profile } from "./config/profile.js";
export { loadProfile, saveProfile } from "./config/profile-file.js";

export * as names from "./format/names.js";
export { validatePassphrase } from "./format/passphrase.js";

export * as scrypt from "./codec/scrypt/index.js";
export * as backupHeader from "./codec/backup-header/index.js";
export * as tar from "./codec/tar/index.js";
export * as qubesXml from "./codec/qubes-xml/index.js";
