/**
 * Retention for a local backup directory: among the dated backups create made there
 * (`qubes-backup-YYYY-MM-DDTHHMMSS`, regular files), delete those no rule keeps, with their
 * restore instructions. Anything else in the directory is never touched.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { planPrune } from "../agent/protocol.js";
import type { PrunePolicy } from "../agent/protocol.js";
import { QbackupError, systemErrorCode } from "../errors.js";
import { RECOVERY_SHEET_SUFFIX } from "../format/recovery-sheet.js";

/** The names defaultBackupFileName() gives (local.ts). */
export const DATED_BACKUP_NAME = /^qubes-backup-\d{4}-\d{2}-\d{2}T\d{6}$/;

export interface StoredBackup {
  name: string;
  size: number;
  mtimeMs: number;
}

/** The dated backups in `dir` (symlinks and other kinds are not backups). */
export async function datedBackups(dir: string): Promise<StoredBackup[]> {
  const entries = await fs.readdir(dir, { withFileTypes: true }).catch((err: unknown) => {
    throw new QbackupError("ERR_DEST", `cannot list ${dir} (${systemErrorCode(err) ?? String(err)})`, { cause: err });
  });
  const found: StoredBackup[] = [];
  for (const e of entries) {
    if (!e.isFile() || !DATED_BACKUP_NAME.test(e.name)) continue;
    const st = await fs.lstat(path.join(dir, e.name));
    found.push({ name: e.name, size: st.size, mtimeMs: st.mtimeMs });
  }
  return found.sort((a, b) => (a.name < b.name ? -1 : 1));
}

/** Deletes what the policy does not keep; returns the deleted backups' names. */
export async function pruneDirectory(dir: string, policy: PrunePolicy, now: Date = new Date()): Promise<string[]> {
  const doomed = planPrune(await datedBackups(dir), policy, now.getTime());
  for (const name of doomed) {
    await fs.unlink(path.join(dir, name)).catch((err: unknown) => {
      throw new QbackupError("ERR_DEST", `cannot delete ${path.join(dir, name)} (${systemErrorCode(err)})`, {
        cause: err,
      });
    });
    await fs.unlink(path.join(dir, `${name}${RECOVERY_SHEET_SUFFIX}`)).catch(() => undefined);
  }
  const handle = await fs.open(dir, "r").catch(() => undefined);
  await handle?.sync().catch(() => undefined);
  await handle?.close();
  return doomed;
}
