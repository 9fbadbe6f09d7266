/**
 * The restore side: list, verify and restore v4 (and v3) backups, trusting nothing the storage returns.
 *
 *   source (file | stdin | command)                          untrusted bytes
 *   → outer tar reader (outer-reader.ts)                      strict, bounded, the only pre-auth parser
 *   → header + manifest (open.ts)                             authenticated, then parsed
 *   → per chunk: authenticate (authenticate.ts)               nothing released before its final MAC
 *   → per file: decompress → inner tar → place (restore.ts, place.ts)
 *                                                             only authenticated bytes, in order
 */
import type { ByteSource } from "../transport/source.js";
import { openBackup } from "./open.js";
import type { OpenOptions } from "./open.js";

import { netvmOf } from "./open.js";

export { openBackup, netvmOf } from "./open.js";
export type { BackupQubeInfo, OpenOptions, OpenedBackup } from "./open.js";
export { restoreBackup, selectQubes } from "./restore.js";
export type { QubeResult, QubeStatus, RestoreEvent, RestoreOptions, RestoreReport } from "./restore.js";

export interface ListedDomain {
  name: string;
  klass: string;
  template: string | null;
  /** A qube name, null for none, or "default" (a reserved name) for the host's default netvm. */
  netvm: string | null;
  label: string;
  included: boolean;
  backupPath: string | null;
  size: number;
}

export interface BackupListing {
  /** v4's backup-id; null for v3 backups, which have none. */
  backupId: string | null;
  version: number;
  compressed: boolean;
  compressionFilter: string | null;
  domains: ListedDomain[];
}

/** Reads only the header and qubes.xml, then stops reading the backup. */
export async function listBackup(source: ByteSource, options: OpenOptions): Promise<BackupListing> {
  try {
    const opened = await openBackup(source, options);
    return {
      backupId: opened.backupId,
      version: opened.header.version,
      compressed: opened.header.compressed,
      compressionFilter: opened.header.compressed ? (opened.header.compressionFilter ?? null) : null,
      domains: opened.manifest.domains.map((d) => ({
        name: d.name,
        klass: d.klass,
        template: d.template ?? null,
        netvm: netvmOf(d),
        label: d.label,
        included: d.included,
        backupPath: d.backupPath ?? null,
        size: d.backupSize,
      })),
    };
  } finally {
    await source.close(true);
  }
}
