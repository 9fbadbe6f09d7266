/**
 * Reader of R3 (core2) qubes.xml, the `QubesVmCollection` document stored in format v3 backups
 * (spec §6.4), converted the way the reference reader (REF-R, core2.py) converts it into the same
 * ParsedQubesXml/ParsedDomain shape the core3 reader returns, so that one restore path serves both.
 * Same fence as parse.ts: bounded size, UTF-8 only, no DTD (so no entity expansion), every
 * @xmldom/xmldom warning fatal; ERR_QUBES_XML for anything REF-R would crash on or that could steer
 * later steps wrongly. The two small Python literals R3 stored (`services`, `pcidevs`) are read by
 * a hand-written parser of exactly that subset: no general Python-literal package fits.
 *
 * Conventions of the result (those of parse.ts and src/restore/open.ts):
 * - `backupPath` ends with "/" for qubes (`vm5` → `vm5/`, `appvms/work` → `appvms/work/`), so
 *   `<backupPath><file>` is a chunk base (`vm5/private.img`); dom0 keeps `dom0-home/<user>`.
 *   A v3 template is one whole-directory archive whose chunk base is `<backupPath>.` (`vm1/.`).
 * - `properties.netvm`: absent = host default, null = none, else the netvm's name.
 * - Python booleans become "True"/"False" properties and "1"/"" features (empty = False, as core3).
 */
import type { Element } from "@xmldom/xmldom";
import { FencedXml, emptyRecord } from "./document.js";
import { checkDomainSet } from "./domain-set.js";
import { ADMINVM_LABEL, QUBES_LABELS, standardLabelName } from "./labels.js";
import type { ParsedDevice, ParsedDomain, ParsedQubesXml } from "./model.js";
import { ADMINVM_NAME, dom0UserOfBackupPath, qubeNameProblem, quote } from "./names.js";

export const CORE2_ROOT = "QubesVmCollection";
/** R3's dom0 element; absent in R2, where REF-R synthesises dom0. */
const ADMIN_TAG = "QubesAdminVm";
const TEMPLATE_TAGS: ReadonlySet<string> = new Set(["QubesTemplateVm", "QubesTemplateHVm"]);
const HVM_TAGS: ReadonlySet<string> = new Set(["QubesTemplateHVm", "QubesHVm"]);
const NET_TAGS: ReadonlySet<string> = new Set(["QubesNetVm", "QubesProxyVm"]);
const NETVM_TAG = "QubesNetVm";
/** Every element REF-R reads; others (e.g. QubesDisposableVm) are ignored, as REF-R does. */
const DOMAIN_TAGS: ReadonlySet<string> = new Set([ADMIN_TAG, ...TEMPLATE_TAGS, "QubesAppVm", "QubesHVm", ...NET_TAGS]);
const ADMIN_QID = 0;
/** `label` when the attribute is missing (REF-R's default). */
const DEFAULT_LABEL = "red";
/** Attributes REF-R copies as properties unless they equal R3's default (mac: no default). */
const SIMPLE_PROPERTY_DEFAULTS: ReadonlyArray<readonly [string, string | undefined]> = [
  ["include_in_backups", "True"],
  ["qrexec_timeout", "60"],
  ["vcpus", "2"],
  ["memory", "400"],
  ["maxmem", "4000"],
  ["default_user", "user"],
  ["debug", "False"],
  ["mac", undefined],
  ["autostart", "False"],
];
/** Properties with a `uses_default_<name>` switch. */
const DEFAULTABLE_PROPERTIES = ["kernel", "kernelopts"] as const;
/** R3 service names that became differently named R4 features; others become features as named. */
const SERVICE_TO_FEATURE: Readonly<Record<string, string>> = {
  ntpd: "service.ntpd",
  "qubes-update-check": "check-updates",
  "meminfo-writer": "service.meminfo-writer",
};
/** Global attributes holding a qid (or None), converted to names. */
const GLOBAL_QID_ATTRS = ["default_netvm", "updatevm", "clockvm"] as const;
const PY_TRUE = "True";
const FEATURE_TRUE = "1";
const FEATURE_FALSE = "";
const DISPVM_PREFIX = "disp-";
const DISPVM_NO_NETVM = "disp-no-netvm";
const NONE_RE = /^none$/i;
const DECIMAL_RE = /^[0-9]{1,10}$/;
/** `vm<qid>` (encrypted v3) or the unencrypted real paths, without or with a trailing slash. */
const QUBE_BACKUP_PATH_RE = /^(vm[0-9]{1,10}|(?:appvms|servicevms|vm-templates)\/([^/]+))\/?$/;
/** Longest Python literal we read (services / pcidevs attributes). */
const MAX_LITERAL_LENGTH = 64 * 1024;

const ELEMENT_NODE = 1;

const xml = new FencedXml("qubes.xml (r3)");

function fail(message: string): never {
  return xml.fail(message);
}

/** Parse and convert a decompressed, already authenticated R3 qubes.xml. Throws ERR_QUBES_XML. */
export function parseQubesXmlCore2(bytes: Uint8Array): ParsedQubesXml {
  const root = xml.parse(bytes);
  if (root.namespaceURI !== null || root.tagName !== CORE2_ROOT) {
    fail(`root element is ${quote(root.tagName)}, not ${CORE2_ROOT}`);
  }

  const elements = readDomainElements(root);
  const qidNames = new Map<number, string>(elements.map((e) => [e.qid, e.name]));
  const hasAdmin = elements.some((e) => e.tag === ADMIN_TAG);
  if (!hasAdmin) qidNames.set(ADMIN_QID, ADMINVM_NAME);
  const resolve = (qid: string, what: string): string => {
    const name = qidNames.get(decimal(qid, what));
    return name ?? fail(`${what} ${quote(qid)} is not the qid of any domain`);
  };

  const properties = readGlobals(root, resolve);
  const domains: ParsedDomain[] = hasAdmin ? [] : [synthesisedDom0()];
  const qubes: Array<{ e: DomainElement; d: ParsedDomain }> = [];
  for (const e of elements) {
    if (e.tag === ADMIN_TAG) {
      domains.push(readDom0(e));
    } else {
      const d = readQube(e, resolve);
      domains.push(d);
      qubes.push({ e, d });
    }
  }

  // netvm and the dispvm netvm are set once every domain is known (REF-R: set_netvm_dependency);
  // without a global default_netvm REF-R's dispvm step fails for every qube, so it is skipped
  const globalDefaultNetvm = "default_netvm" in properties ? (properties["default_netvm"] ?? null) : undefined;
  const synthetic: ParsedDomain[] = [];
  for (const { e, d } of qubes) {
    setNetvm(e, d, resolve);
    if (globalDefaultNetvm === undefined) continue;
    const dispvm = dispvmTemplate(e, d, globalDefaultNetvm, resolve);
    if (dispvm === undefined) continue;
    d.properties["default_dispvm"] = dispvm.name;
    const taken = domains.some((x) => x.name === dispvm.name) || synthetic.some((x) => x.name === dispvm.name);
    if (!taken) synthetic.push(syntheticDispvmTemplate(dispvm.name, dispvm.netvm));
  }
  domains.push(...synthetic);

  checkDomainSet(domains, "backup_path", fail);
  return { labels: standardLabels(), properties, domains };
}

// ---- document level (the same fence as parse.ts) ----
function decimal(value: string, what: string): number {
  if (!DECIMAL_RE.test(value)) fail(`${what} ${quote(value)} is not a non-negative decimal integer`);
  return Number(value);
}
// ---- collection level ----

interface DomainElement {
  el: Element;
  tag: string;
  qid: number;
  name: string;
}

function readDomainElements(root: Element): DomainElement[] {
  const out: DomainElement[] = [];
  const qids = new Set<number>();
  for (let n = root.firstChild; n !== null; n = n.nextSibling) {
    if (n.nodeType !== ELEMENT_NODE) continue;
    const el = n as Element;
    if (el.namespaceURI !== null || !DOMAIN_TAGS.has(el.tagName)) continue;
    const tag = el.tagName;
    const rawName = xml.requiredAttr(el, "name", tag);
    const qid = decimal(xml.requiredAttr(el, "qid", `${tag} ${quote(rawName)}`), `${tag} ${quote(rawName)}: qid`);
    if (qids.has(qid)) fail(`two domains have qid ${qid}`);
    qids.add(qid);
    if ((tag === ADMIN_TAG) !== (qid === ADMIN_QID)) {
      fail(`${tag} ${quote(rawName)}: qid ${ADMIN_QID} is dom0's and only dom0's (${ADMIN_TAG})`);
    }
    const name = tag === ADMIN_TAG ? ADMINVM_NAME : rawName;
    out.push({ el, tag, qid, name });
  }
  return out;
}

/** default_template (required), default_netvm, updatevm, clockvm as names; default_kernel as is. */
function readGlobals(root: Element, resolve: (qid: string, what: string) => string): Record<string, string | null> {
  const props = emptyRecord<string | null>();
  const qidOrNone = (attr: string, value: string): string | null =>
    NONE_RE.test(value) ? null : resolve(value, `global ${attr}`);
  props["default_template"] = qidOrNone("default_template", xml.requiredAttr(root, "default_template", CORE2_ROOT));
  for (const attr of GLOBAL_QID_ATTRS) {
    const v = xml.optionalAttr(root, attr, CORE2_ROOT);
    if (v !== undefined) props[attr] = qidOrNone(attr, v);
  }
  const kernel = xml.optionalAttr(root, "default_kernel", CORE2_ROOT);
  if (kernel !== undefined) props["default_kernel"] = kernel === "" ? null : kernel;
  return props;
}

function standardLabels(): Map<string, string> {
  const labels = new Map<string, string>();
  for (const l of QUBES_LABELS) {
    labels.set(l.id, l.name);
    labels.set(l.name, l.name);
  }
  return labels;
}

// ---- domains ----

function labelOf(el: Element, who: string): string {
  const ref = xml.optionalAttr(el, "label", who) ?? DEFAULT_LABEL;
  return standardLabelName(ref) ?? fail(`${who}: label ${quote(ref)} is not a qubes label`);
}

/** REF-R: included iff backup_content is exactly "True"; data only with a backup_path. */
function backupOf(el: Element, who: string): { path: string; size: number } | undefined {
  if (xml.optionalAttr(el, "backup_content", who) !== PY_TRUE) return undefined;
  const path = xml.optionalAttr(el, "backup_path", who);
  if (path === undefined || path === "") return undefined;
  return { path, size: decimal(xml.optionalAttr(el, "backup_size", who) ?? "0", `${who}: backup_size`) };
}

function readDom0(e: DomainElement): ParsedDomain {
  const who = `domain ${quote(ADMINVM_NAME)}`;
  const d = baseDomain("AdminVM", ADMINVM_NAME, labelOf(e.el, who));
  const backup = backupOf(e.el, who);
  if (backup !== undefined) {
    if (dom0UserOfBackupPath(backup.path) === undefined) {
      fail(`${who}: backup_path ${quote(backup.path)} is not dom0-home/<user>`);
    }
    d.included = true;
    d.backupPath = backup.path;
    d.backupSize = backup.size;
  }
  return d;
}

/** R2 files have no dom0 element: REF-R adds one, never included. */
function synthesisedDom0(): ParsedDomain {
  return baseDomain("AdminVM", ADMINVM_NAME, ADMINVM_LABEL);
}

function baseDomain(klass: string, name: string, label: string): ParsedDomain {
  return {
    klass,
    name,
    label,
    properties: emptyRecord<string | null>(),
    features: emptyRecord<string>(),
    tags: [],
    devices: [],
    included: false,
    backupSize: 0,
    volumes: [],
  };
}

function readQube(e: DomainElement, resolve: (qid: string, what: string) => string): ParsedDomain {
  const problem = qubeNameProblem(e.name);
  if (problem !== undefined) fail(`domain name ${quote(e.name)}: ${problem}`);
  const who = `domain ${quote(e.name)}`;
  const el = e.el;

  let klass: string;
  let template: string | undefined;
  if (TEMPLATE_TAGS.has(e.tag)) {
    klass = "TemplateVM";
  } else {
    const templateQid = xml.requiredAttr(el, "template_qid", who);
    if (NONE_RE.test(templateQid)) {
      klass = "StandaloneVM";
    } else {
      klass = "AppVM";
      template = resolve(templateQid, `${who}: template_qid`);
    }
  }
  const d = baseDomain(klass, e.name, labelOf(el, who));
  if (template !== undefined) d.template = template;

  const props = d.properties;
  for (const [attr, dflt] of SIMPLE_PROPERTY_DEFAULTS) {
    const v = xml.optionalAttr(el, attr, who);
    if (v !== undefined && v !== "" && v !== dflt) props[attr] = v;
  }
  for (const attr of DEFAULTABLE_PROPERTIES) {
    const usesDefault = xml.optionalAttr(el, `uses_default_${attr}`, who);
    if (usesDefault === undefined || usesDefault.toLowerCase() === "true") continue;
    const v = xml.optionalAttr(el, attr, who);
    props[attr] = v === undefined || v === "" || NONE_RE.test(v) ? null : v;
  }
  const features = d.features;
  if (HVM_TAGS.has(e.tag)) {
    props["virt_mode"] = "hvm";
    props["kernel"] = null;
    features["linux-stubdom"] = FEATURE_FALSE;
  }
  if (NET_TAGS.has(e.tag)) props["provides_network"] = PY_TRUE;
  if (e.tag === NETVM_TAG) props["netvm"] = null;
  if (xml.optionalAttr(el, "internal", who) === PY_TRUE) features["internal"] = FEATURE_TRUE;

  const services = xml.optionalAttr(el, "services", who);
  if (services !== undefined && services !== "") {
    for (const [service, value] of parseServices(services, `${who}: services`)) {
      features[Object.hasOwn(SERVICE_TO_FEATURE, service) ? SERVICE_TO_FEATURE[service]! : service] = value;
    }
  }
  const pcidevs = xml.optionalAttr(el, "pcidevs", who);
  if (pcidevs !== undefined && pcidevs !== "") d.devices = pciDevices(pcidevs, `${who}: pcidevs`);

  const backup = backupOf(el, who);
  if (backup !== undefined) {
    d.included = true;
    d.backupPath = normaliseQubeBackupPath(backup.path, who);
    d.backupSize = backup.size;
  }
  return d;
}

/** `vm5` → `vm5/`; `appvms/<name>` (also servicevms/, vm-templates/) → `appvms/<name>/`. */
function normaliseQubeBackupPath(path: string, who: string): string {
  const m = QUBE_BACKUP_PATH_RE.exec(path);
  const dirName = m?.[2];
  if (m === null || (dirName !== undefined && qubeNameProblem(dirName) !== undefined)) {
    fail(`${who}: backup_path ${quote(path)} is not vm<qid> or appvms|servicevms|vm-templates/<name>`);
  }
  return `${m[1]}/`;
}

function pciDevices(literal: string, what: string): ParsedDevice[] {
  const ids = new Set<string>();
  for (const dev of parsePythonStringList(literal, what)) {
    if (dev === "") fail(`${what}: empty device`);
    ids.add(dev.replace(/:/g, "_"));
  }
  // REF-R reads pci_strictreset in a way that never takes effect: every device is a plain assignment.
  return [...ids].map((id) => ({ class: "pci", backendDomain: ADMINVM_NAME, id, required: true, options: {} }));
}

/** `netvm` as REF-R sets it: unchanged (absent = default) unless uses_default_netvm is not "True". */
function setNetvm(e: DomainElement, d: ParsedDomain, resolve: (qid: string, what: string) => string): void {
  const usesDefault = xml.optionalAttr(e.el, "uses_default_netvm", `domain ${quote(d.name)}`);
  if (usesDefault === undefined || usesDefault === PY_TRUE) return;
  d.properties["netvm"] = qidRefOrNull(e.el, "netvm_qid", d.name, resolve);
}

function qidRefOrNull(
  el: Element,
  attr: string,
  name: string,
  resolve: (qid: string, what: string) => string,
): string | null {
  const who = `domain ${quote(name)}`;
  const qid = xml.optionalAttr(el, attr, who);
  return qid === undefined || qid === "" || NONE_RE.test(qid) ? null : resolve(qid, `${who}: ${attr}`);
}

/**
 * R3 had a per-qube netvm for its disposable VMs; R4 has a default_dispvm instead. Where that netvm
 * differs from the global default, REF-R points default_dispvm at `disp-<netvm>` (or
 * `disp-no-netvm`) and creates that AppVM when the backup has none of that name.
 */
function dispvmTemplate(
  e: DomainElement,
  d: ParsedDomain,
  globalDefaultNetvm: string | null,
  resolve: (qid: string, what: string) => string,
): { name: string; netvm: string | null } | undefined {
  const usesDefault = xml.optionalAttr(e.el, "uses_default_dispvm_netvm", `domain ${quote(d.name)}`);
  let netvm: string | null;
  if (usesDefault === undefined || usesDefault === PY_TRUE) {
    netvm = "netvm" in d.properties ? (d.properties["netvm"] ?? null) : globalDefaultNetvm;
  } else {
    netvm = qidRefOrNull(e.el, "dispvm_netvm_qid", d.name, resolve);
  }
  if (netvm === globalDefaultNetvm) return undefined;
  return { name: netvm === null ? DISPVM_NO_NETVM : `${DISPVM_PREFIX}${netvm}`, netvm };
}

/** REF-R's stand-in disposable template: no data (so not included here), red, the given netvm. */
function syntheticDispvmTemplate(name: string, netvm: string | null): ParsedDomain {
  const d = baseDomain("AppVM", name, DEFAULT_LABEL);
  d.properties["netvm"] = netvm;
  d.properties["template_for_dispvms"] = PY_TRUE;
  return d;
}

// ---- the two Python literals R3 stored in attributes ----

/**
 * `services`: a dict literal of string keys to True/False (R3 wrote only booleans; quoted strings
 * and integers are accepted as feature text too). Returns [name, feature value] pairs, last wins.
 */
function parseServices(literal: string, what: string): Array<[string, string]> {
  const p = new PyLiteralReader(literal, what);
  const out = new Map<string, string>();
  p.expect("{");
  while (!p.peekIs("}")) {
    const key = p.string();
    p.expect(":");
    out.set(key, p.scalar());
    if (!p.peekIs("}")) p.expect(",");
  }
  p.expect("}");
  p.end();
  return [...out];
}

/** `pcidevs`: a list literal of strings, e.g. `['02:00.0']`. */
function parsePythonStringList(literal: string, what: string): string[] {
  const p = new PyLiteralReader(literal, what);
  const out: string[] = [];
  p.expect("[");
  while (!p.peekIs("]")) {
    out.push(p.string());
    if (!p.peekIs("]")) p.expect(",");
  }
  p.expect("]");
  p.end();
  return out;
}

const PY_SCALAR_RE = /^(True|False|-?[0-9]+)/;
const PY_SIMPLE_ESCAPES: Readonly<Record<string, string>> = { "\\": "\\", "'": "'", '"': '"' };

class PyLiteralReader {
  private pos = 0;

  constructor(
    private readonly s: string,
    private readonly what: string,
  ) {
    if (s.length > MAX_LITERAL_LENGTH) fail(`${what}: longer than ${MAX_LITERAL_LENGTH} characters`);
  }

  private bad(expected: string): never {
    return fail(`${this.what}: expected ${expected} at offset ${this.pos} of ${quote(this.s)}`);
  }

  private skipBlanks(): void {
    while (this.pos < this.s.length && " \t".includes(this.s[this.pos]!)) this.pos++;
  }

  peekIs(c: string): boolean {
    this.skipBlanks();
    return this.s[this.pos] === c;
  }

  expect(c: string): void {
    if (!this.peekIs(c)) this.bad(quote(c));
    this.pos++;
  }

  end(): void {
    this.skipBlanks();
    if (this.pos !== this.s.length) this.bad("the end");
  }

  /** A quoted string with only \\, \' and \" escapes. */
  string(): string {
    this.skipBlanks();
    const q = this.s[this.pos];
    if (q !== "'" && q !== '"') return this.bad("a quoted string");
    let out = "";
    for (this.pos++; this.pos < this.s.length; this.pos++) {
      const c = this.s[this.pos]!;
      if (c === q) {
        this.pos++;
        return out;
      }
      if (c === "\\") {
        const esc = PY_SIMPLE_ESCAPES[this.s[this.pos + 1] ?? ""];
        if (esc === undefined) return this.bad("one of the escapes \\\\ \\' \\\"");
        out += esc;
        this.pos++;
      } else {
        out += c;
      }
    }
    return this.bad("a closing quote");
  }

  /** True → "1", False → "", an integer or a quoted string → its text. */
  scalar(): string {
    this.skipBlanks();
    const c = this.s[this.pos];
    if (c === "'" || c === '"') return this.string();
    const m = PY_SCALAR_RE.exec(this.s.slice(this.pos));
    if (m === null) return this.bad("True, False, a number or a string");
    this.pos += m[1]!.length;
    return m[1] === "True" ? FEATURE_TRUE : m[1] === "False" ? FEATURE_FALSE : m[1]!;
  }
}
