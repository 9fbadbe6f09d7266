/** R4 (core3) qubes.xml codec: writer for our backups, reader with the reference reader's rules (spec §6). */
export * from "./model.js";
export { QUBES_LABELS, ADMINVM_LABEL, standardLabelName } from "./labels.js";
export type { QubesLabel } from "./labels.js";
export {
  ADMINVM_NAME,
  MAX_QUBE_NAME_LENGTH,
  MAX_DOM0_USER_LENGTH,
  isValidQubeName,
  validateQubeName,
  qubeNameProblem,
  isValidDom0User,
  isValidQubeBackupPath,
  dom0UserOfBackupPath,
} from "./names.js";
export { buildQubesXml, XML_DECLARATION, DEFAULT_POOL } from "./write.js";
export { parseQubesXml } from "./parse.js";
export { parseQubesXmlCore2 } from "./parse-core2.js";
