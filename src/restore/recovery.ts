/**
 * What a recovery sheet needs, read from a v4 backup without the passphrase: the member names
 * (data is seeked over) and the header's backup-id and compression filter. Nothing here is
 * authenticated — the sheet's own first step authenticates the header with the stock scrypt tool —
 * so it is used for printing instructions only.
 */
import { parseBackupHeader } from "../codec/backup-header/index.js";
import { QbackupError } from "../errors.js";
import { BACKUP_HEADER_HMAC_NAME, BACKUP_HEADER_NAME, MAX_CHUNK_SIZE, parseChunkMemberName } from "../format/names.js";
import type { RecoveryFacts } from "../format/recovery-sheet.js";
import type { ByteSource } from "../transport/source.js";
import { memberSizeLimits } from "./open.js";
import { OuterReader } from "./outer-reader.js";

export async function recoveryFactsOf(source: ByteSource, backupName: string): Promise<RecoveryFacts> {
  const reader = new OuterReader(source, memberSizeLimits(MAX_CHUNK_SIZE));
  const first = await reader.next();
  if (first?.name !== BACKUP_HEADER_NAME) {
    throw new QbackupError("ERR_TAR_MALFORMED", `${backupName} does not start with ${BACKUP_HEADER_NAME}`);
  }
  const header = parseBackupHeader(await reader.read(first.size));
  if (header.version !== 4 || header.backupId === undefined) {
    throw new QbackupError("ERR_HEADER_UNSUPPORTED", "recovery sheets are written for format v4 backups");
  }
  const files: Array<{ base: string; chunks: number }> = [];
  for (let m = await reader.next(); m !== null; m = await reader.next()) {
    if (m.name !== BACKUP_HEADER_HMAC_NAME) {
      const { base, index } = parseChunkMemberName(m.name);
      const last = files.at(-1);
      if (last?.base === base && index === last.chunks) last.chunks++;
      else if (index === 0 && !files.some((f) => f.base === base)) files.push({ base, chunks: 1 });
      else throw new QbackupError("ERR_TAR_MALFORMED", `member ${m.name} is out of order`);
    }
    await reader.skipRest();
  }
  return {
    backupName,
    backupId: header.backupId,
    compressionFilter: header.compressed ? (header.compressionFilter ?? "gzip") : null,
    files,
  };
}
