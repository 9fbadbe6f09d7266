/**
 * Writer of the R4 (core3) qubes.xml our backups carry (spec §6.1, §6.3). The document is small and
 * its shape fixed, so it is written as text here; no XML library is needed to produce it.
 */
import { QbackupError } from "../../errors.js";
import { ADMINVM_LABEL, QUBES_LABELS, standardLabelName } from "./labels.js";
import type { BackupDom0, BackupQube, QubesXmlModel } from "./model.js";
import {
  ADMINVM_NAME,
  DOM0_HOME_PREFIX,
  hasNonXmlChar,
  isValidDom0User,
  qubeNameProblem,
  quote,
  validateQubeName,
} from "./names.js";

export const XML_DECLARATION = "<?xml version='1.0' encoding='UTF-8'?>";
/** Pool name written into volume-config; REF-R ignores volume-config (spec §6.2). */
export const DEFAULT_POOL = "varlibqubes";
const INDENT = "  ";
/** Extra properties this writer sets itself. */
const RESERVED_PROPERTIES: ReadonlySet<string> = new Set(["name", "label", "qid", "uuid", "template", "netvm"]);
const BACKUP_FEATURES: ReadonlySet<string> = new Set(["backup-content", "backup-path", "backup-size"]);
/** core-admin property names are Python identifiers. */
const PROPERTY_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Feature and tag names: printable ASCII without spaces (features such as `supported-rpc.x+` use `+`). */
const FEATURE_OR_TAG_NAME_RE = /^[\x21-\x7e]+$/;
/** Volume names become archive file names `vm<qid>/<name>.img`. */
const VOLUME_NAME_RE = /^[a-z][a-z0-9_-]{0,31}$/;
const MAX_QID = 9_999_999_999;
/** Where core-admin keeps volumes of each class (only informative: written into `vid`). */
const VOLUME_DIR: Readonly<Record<BackupQube["klass"], string>> = {
  AppVM: "appvms",
  DispVM: "appvms",
  StandaloneVM: "appvms",
  TemplateVM: "vm-templates",
};
const NEEDS_TEMPLATE: ReadonlySet<string> = new Set(["AppVM", "DispVM"]);

/**
 * Build the document: labels, `<pools/>`, global properties (default_template if given), then
 * the domains: the AdminVM (always present; included with `dom0-home/<user>` when `m.dom0` is
 * given, else with empty backup-content), then every qube of the model, in model order.
 * Templates referenced by qubes but absent from the model are not invented.
 */
export function buildQubesXml(m: QubesXmlModel): Buffer {
  checkModel(m);
  const out: string[] = [XML_DECLARATION, "<qubes>"];
  const line = (depth: number, s: string) => out.push(INDENT.repeat(depth) + s);

  line(1, "<labels>");
  for (const l of QUBES_LABELS) {
    line(2, `<label color=${attr(l.color)} id=${attr(l.id)}>${text(l.name)}</label>`);
  }
  line(1, "</labels>");
  line(1, "<pools/>");
  if (m.defaultTemplate === undefined) {
    line(1, "<properties/>");
  } else {
    line(1, "<properties>");
    line(2, property("default_template", m.defaultTemplate));
    line(1, "</properties>");
  }

  line(1, "<domains>");
  writeAdminVm(line, m.dom0);
  for (const q of m.qubes) writeQube(line, q);
  line(1, "</domains>");
  out.push("</qubes>", "");
  return Buffer.from(out.join("\n"), "utf8");
}

type LineFn = (depth: number, s: string) => void;

function writeAdminVm(line: LineFn, dom0: BackupDom0 | undefined): void {
  line(2, `<domain id="domain-0" class="AdminVM">`);
  line(3, "<properties>");
  line(4, property("label", ADMINVM_LABEL));
  line(3, "</properties>");
  line(3, "<features>");
  if (dom0 === undefined) {
    line(4, feature("backup-content", ""));
  } else {
    line(4, feature("backup-content", "1"));
    line(4, feature("backup-path", DOM0_HOME_PREFIX + dom0.user));
    line(4, feature("backup-size", String(dom0.backupSize)));
  }
  line(3, "</features>");
  line(3, "<tags/>");
  line(2, "</domain>");
}

function writeQube(line: LineFn, q: BackupQube): void {
  line(2, `<domain id=${attr(`domain-${q.qid}`)} class=${attr(q.klass)}>`);
  line(3, "<properties>");
  line(4, property("label", standardLabelName(q.label) ?? q.label));
  line(4, property("name", q.name));
  line(4, property("qid", String(q.qid)));
  if (q.template !== undefined) line(4, property("template", q.template));
  if (q.netvm !== undefined) line(4, property("netvm", q.netvm ?? ""));
  for (const [k, v] of Object.entries(q.properties ?? {})) line(4, property(k, v));
  line(3, "</properties>");

  line(3, "<features>");
  line(4, feature("backup-content", "1"));
  line(4, feature("backup-path", q.backupPath));
  line(4, feature("backup-size", String(q.backupSize)));
  for (const [k, v] of Object.entries(q.features ?? {})) line(4, feature(k, v));
  line(3, "</features>");

  const tags = q.tags ?? [];
  if (tags.length === 0) {
    line(3, "<tags/>");
  } else {
    line(3, "<tags>");
    for (const t of tags) line(4, `<tag name=${attr(t)}/>`);
    line(3, "</tags>");
  }

  if (q.volumes.length > 0) {
    line(3, "<volume-config>");
    for (const v of q.volumes) {
      const vid = `${VOLUME_DIR[q.klass]}/${q.name}/${v.name}`;
      line(
        4,
        `<volume name=${attr(v.name)} pool=${attr(DEFAULT_POOL)} rw="True" save_on_stop="True" ` +
          `size=${attr(String(v.size))} vid=${attr(vid)}/>`,
      );
    }
    line(3, "</volume-config>");
  }
  line(2, "</domain>");
}

function property(name: string, value: string): string {
  return `<property name=${attr(name)}>${text(value)}</property>`;
}

function feature(name: string, value: string): string {
  return `<feature name=${attr(name)}>${text(value)}</feature>`;
}

/**
 * Character data: the markup characters, plus CR (a literal one would be read back as LF) and
 * NEL/LS/PS (XML 1.1-style readers, xmldom by default, turn literal ones into LF).
 */
function text(s: string): string {
  return s.replace(/[&<>\r\u0085\u2028\u2029]/g, charRef);
}

/** A double-quoted attribute value; TAB/LF/CR escaped so attribute normalisation keeps them. */
function attr(s: string): string {
  return `"${s.replace(/[&<>"\t\n\r\u0085\u2028\u2029]/g, charRef)}"`;
}

const NAMED_REFS: Readonly<Record<string, string>> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" };

function charRef(c: string): string {
  return NAMED_REFS[c] ?? `&#${c.codePointAt(0)};`;
}

// ---- model checks ----

function usage(message: string): QbackupError {
  return new QbackupError("ERR_USAGE", message);
}

function internal(message: string): QbackupError {
  return new QbackupError("ERR_INTERNAL", message);
}

function checkXmlString(what: string, s: string): void {
  if (hasNonXmlChar(s)) throw usage(`qubes.xml: ${what} contains a character xml cannot represent`);
}

function checkSize(what: string, n: number): void {
  if (!Number.isSafeInteger(n) || n < 0) throw internal(`qubes.xml: ${what} must be a non-negative integer, got ${n}`);
}

function checkReference(what: string, name: string): void {
  const problem = qubeNameProblem(name);
  if (problem !== undefined) throw usage(`qubes.xml: ${what} ${quote(name)}: ${problem}`);
}

function checkModel(m: QubesXmlModel): void {
  if (m.defaultTemplate !== undefined) checkReference("default template", m.defaultTemplate);
  if (m.dom0 !== undefined) {
    if (!isValidDom0User(m.dom0.user)) throw usage(`qubes.xml: invalid dom0 user name ${quote(m.dom0.user)}`);
    checkSize("dom0 backup size", m.dom0.backupSize);
  }
  const names = new Set<string>([ADMINVM_NAME]);
  const qids = new Set<number>();
  for (const q of m.qubes) {
    validateQubeName(q.name);
    if (names.has(q.name)) throw usage(`qubes.xml: duplicate qube name ${quote(q.name)}`);
    names.add(q.name);
    checkQube(q);
    if (qids.has(q.qid)) throw internal(`qubes.xml: duplicate qid ${q.qid}`);
    qids.add(q.qid);
  }
}

function checkQube(q: BackupQube): void {
  const who = `qube ${quote(q.name)}`;
  if (!Number.isSafeInteger(q.qid) || q.qid < 1 || q.qid > MAX_QID)
    throw internal(`qubes.xml: ${who}: bad qid ${q.qid}`);
  if (!Object.hasOwn(VOLUME_DIR, q.klass)) throw internal(`qubes.xml: ${who}: unknown class ${quote(q.klass)}`);
  if (q.backupPath !== `vm${q.qid}/`) {
    throw internal(`qubes.xml: ${who}: backup path ${quote(q.backupPath)} is not vm${q.qid}/`);
  }
  checkSize(`${who} backup size`, q.backupSize);
  if (standardLabelName(q.label) === undefined) throw usage(`qubes.xml: ${who}: unknown label ${quote(q.label)}`);

  if (NEEDS_TEMPLATE.has(q.klass)) {
    if (q.template === undefined) throw usage(`qubes.xml: ${who}: a ${q.klass} needs a template`);
  } else if (q.template !== undefined) {
    throw usage(`qubes.xml: ${who}: a ${q.klass} has no template`);
  }
  if (q.template !== undefined) checkReference(`${who} template`, q.template);
  if (typeof q.netvm === "string") checkReference(`${who} netvm`, q.netvm);

  for (const [k, v] of Object.entries(q.properties ?? {})) {
    if (!PROPERTY_NAME_RE.test(k)) throw usage(`qubes.xml: ${who}: invalid property name ${quote(k)}`);
    if (RESERVED_PROPERTIES.has(k)) throw usage(`qubes.xml: ${who}: property ${quote(k)} is set by the writer`);
    checkXmlString(`${who} property ${quote(k)}`, v);
  }
  for (const [k, v] of Object.entries(q.features ?? {})) {
    if (!FEATURE_OR_TAG_NAME_RE.test(k)) throw usage(`qubes.xml: ${who}: invalid feature name ${quote(k)}`);
    if (BACKUP_FEATURES.has(k)) throw usage(`qubes.xml: ${who}: feature ${quote(k)} is set by the writer`);
    checkXmlString(`${who} feature ${quote(k)}`, v);
  }
  const tags = new Set<string>();
  for (const t of q.tags ?? []) {
    if (!FEATURE_OR_TAG_NAME_RE.test(t)) throw usage(`qubes.xml: ${who}: invalid tag ${quote(t)}`);
    if (tags.has(t)) throw usage(`qubes.xml: ${who}: duplicate tag ${quote(t)}`);
    tags.add(t);
  }
  const volumes = new Set<string>();
  for (const v of q.volumes) {
    if (!VOLUME_NAME_RE.test(v.name)) throw internal(`qubes.xml: ${who}: invalid volume name ${quote(v.name)}`);
    if (volumes.has(v.name)) throw internal(`qubes.xml: ${who}: duplicate volume ${quote(v.name)}`);
    volumes.add(v.name);
    checkSize(`${who} volume ${quote(v.name)} size`, v.size);
  }
}
