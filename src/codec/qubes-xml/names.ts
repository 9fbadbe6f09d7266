/**
 * Naming rules used by both sides of the qubes.xml codec: qube names (the rules of Qubes'
 * `qubes_pure_is_valid_qube_name`, QubesOS/qubes-linux-utils qrexec-lib/pure.h), dom0 user names,
 * and the backup paths that later select outer archive members (spec §4.2, §6.3, §7).
 */
import { QbackupError } from "../../errors.js";

export const MAX_QUBE_NAME_LENGTH = 31;
const QUBE_NAME_RE = /^[A-Za-z][A-Za-z0-9_.-]*$/;
/** `none`/`default` are Admin API keywords, `Domain-0` is libxl's name for dom0. */
const RESERVED_QUBE_NAMES: ReadonlySet<string> = new Set(["none", "default", "Domain-0"]);
/** Suffix of device-model stubdomains. */
const RESERVED_QUBE_SUFFIX = "-dm";

/** The name REF-R gives the AdminVM (spec §6.2). */
export const ADMINVM_NAME = "dom0";

export const MAX_DOM0_USER_LENGTH = 32;
const DOM0_USER_RE = /^[a-z_][a-z0-9_-]*$/;

export const DOM0_HOME_PREFIX = "dom0-home/";
/** `vm<qid>/`; the digit bound keeps the member name short and the qid a safe integer. */
const QUBE_BACKUP_PATH_RE = /^vm[0-9]{1,10}\/$/;

/** Which rule a qube name breaks, or undefined when it is valid. */
export function qubeNameProblem(name: string): string | undefined {
  if (name.length === 0) return "must not be empty";
  if (name.length > MAX_QUBE_NAME_LENGTH) return `must be at most ${MAX_QUBE_NAME_LENGTH} characters`;
  if (!/^[A-Za-z]/.test(name)) return "must start with an ASCII letter";
  if (!QUBE_NAME_RE.test(name)) return "may contain only ASCII letters, digits, '_', '.' and '-'";
  if (RESERVED_QUBE_NAMES.has(name)) return "'none', 'default' and 'Domain-0' are reserved";
  if (name.endsWith(RESERVED_QUBE_SUFFIX)) return "must not end with '-dm'";
  return undefined;
}

export function isValidQubeName(name: string): boolean {
  return qubeNameProblem(name) === undefined;
}

/** Throws ERR_USAGE naming the broken rule. */
export function validateQubeName(name: string): void {
  const problem = qubeNameProblem(name);
  if (problem !== undefined) throw new QbackupError("ERR_USAGE", `invalid qube name ${quote(name)}: ${problem}`);
}

export function isValidDom0User(user: string): boolean {
  return user.length <= MAX_DOM0_USER_LENGTH && DOM0_USER_RE.test(user);
}

/** `vm<digits>/`, nothing else (no `..`, no absolute path, trailing slash required). */
export function isValidQubeBackupPath(path: string): boolean {
  return QUBE_BACKUP_PATH_RE.test(path);
}

/** The user of `dom0-home/<user>`, or undefined when the path has any other form. */
export function dom0UserOfBackupPath(path: string): string | undefined {
  if (!path.startsWith(DOM0_HOME_PREFIX)) return undefined;
  const user = path.slice(DOM0_HOME_PREFIX.length);
  return isValidDom0User(user) ? user : undefined;
}

/** Characters XML 1.0 cannot carry at all, not even as character references. */
const NON_XML_CHAR_RE = /[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/u;

export function hasNonXmlChar(s: string): boolean {
  return NON_XML_CHAR_RE.test(s);
}

const MAX_QUOTED_LENGTH = 64;

/** A value quoted for a one-line error message (JSON escapes newlines), shortened if long. */
export function quote(s: string): string {
  return JSON.stringify(s.length > MAX_QUOTED_LENGTH ? `${s.slice(0, MAX_QUOTED_LENGTH)}…` : s);
}
