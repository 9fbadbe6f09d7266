/**
 * Public API of the Tarsnap `scrypt` file container codec (spec §4.6): parameters and KDF caps,
 * header parsing, streaming/one-shot seal and open.
 */

export {
  DEFAULT_KDF_LIMITS,
  DERIVED_KEY_SIZE,
  ENC_KEY_SIZE,
  KDF_MEMORY_OPTION,
  KDF_WORK_OPTION,
  MAC_KEY_SIZE,
  MAX_LOG_N,
  MIN_LOG_N,
  checkKdfLimits,
  deriveKeys,
  kdfMemoryBytes,
  kdfWork,
  validateScryptParams,
} from "./params.js";
export type { ContainerKeys, KdfLimits, ScryptParams } from "./params.js";
export {
  CONTAINER_FORMAT_VERSION,
  CONTAINER_HEADER_PREFIX_SIZE,
  CONTAINER_HEADER_SIZE,
  CONTAINER_MAC_SIZE,
  CONTAINER_MAGIC,
  CONTAINER_OVERHEAD,
  ContainerOpener,
  ContainerSealer,
  SALT_SIZE,
  encodeContainerHeaderPrefix,
  open,
  parseContainerHeader,
  seal,
} from "./container.js";
export type { ContainerHeaderInfo } from "./container.js";
