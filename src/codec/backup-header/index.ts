/** The backup-header codec: parse (reference-reader rules, spec §3.4) and write (REF-W v4 form, §3.3). */
export {
  MAX_BACKUP_HEADER_BYTES,
  MIN_BACKUP_VERSION,
  MAX_BACKUP_VERSION,
  WRITTEN_BACKUP_VERSION,
  serializeBackupHeaderV4,
  parseBackupHeader,
  isValidBackupId,
} from "./header.js";
export type { BackupHeader, BackupHeaderV4Input, ParseHeaderOptions } from "./header.js";
export {
  ALWAYS_ALLOWED_FILTERS,
  OPTIONAL_FILTERS,
  SCRYPT_ALGORITHM,
  DIGEST_OUTPUT_BYTES,
  CIPHER_SIZES,
  isKnownHmacAlgorithm,
  isKnownCryptoAlgorithm,
  isAllowedCompressionFilter,
  isKnownCompressionFilter,
} from "./allowlists.js";
export type { CipherSizes } from "./allowlists.js";
