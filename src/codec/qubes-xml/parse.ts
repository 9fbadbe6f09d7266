/**
 * Reader of R4 (core3) qubes.xml, extracting what the reference reader (REF-R) extracts and
 * rejecting, with ERR_QUBES_XML, every input REF-R would crash on or that could steer later steps
 * wrongly (spec §6.2, §10). Uses @xmldom/xmldom for the XML grammar, fenced in: bounded size,
 * UTF-8 only, no DTD at all (so no entity expansion), every parser warning fatal.
 */
import type { Element } from "@xmldom/xmldom";
import { FencedXml, emptyRecord } from "./document.js";
import { checkDomainSet } from "./domain-set.js";
import type { ParsedDevice, ParsedDomain, ParsedQubesXml, ParsedVolume } from "./model.js";
import {
  ADMINVM_NAME,
  dom0UserOfBackupPath,
  hasNonXmlChar,
  isValidQubeBackupPath,
  qubeNameProblem,
  quote,
} from "./names.js";

const ELEMENT_NODE = 1;
const TEXT_NODE = 3;
const CDATA_SECTION_NODE = 4;
const ADMINVM_CLASS = "AdminVM";
/** Class names are Python class names the host resolves. */
const CLASS_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
const DECIMAL_RE = /^[0-9]+$/;
/** `device_protocol.qbool` of core-admin(-client): case-insensitive. */
const QBOOL_TRUE: ReadonlySet<string> = new Set(["1", "yes", "true", "on"]);
const QBOOL_FALSE: ReadonlySet<string> = new Set(["0", "no", "false", "off"]);
/** Properties REF-R takes aside or drops (spec §6.2). */
const DOMAIN_KEY_PROPERTIES = ["name", "label", "template", "qid", "uuid"] as const;
const BACKUP_CONTENT = "backup-content";
const BACKUP_PATH = "backup-path";
const BACKUP_SIZE = "backup-size";

const xml = new FencedXml("qubes.xml");

function fail(message: string): never {
  return xml.fail(message);
}

/** Parse and check a decompressed, already authenticated qubes.xml. Throws ERR_QUBES_XML. */
export function parseQubesXml(bytes: Uint8Array): ParsedQubesXml {
  const root = xml.parse(bytes);

  const labelsEl = firstChild(root, "labels") ?? fail("missing labels element");
  const labels = readLabels(labelsEl);
  const globalsEl = firstChild(root, "properties") ?? fail("missing global properties element");
  const properties = readNamedValues(globalsEl, "property", "global property");

  const domains: ParsedDomain[] = [];
  for (const domainsEl of children(root, "domains")) {
    for (const el of children(domainsEl, "domain")) domains.push(readDomain(el, labels));
  }
  if (!domains.some((d) => d.klass === ADMINVM_CLASS)) fail("no AdminVM domain");
  checkDomainSet(domains, BACKUP_PATH, fail);
  return { labels, properties: nullIfEmpty(properties), domains };
}

// ---- document level ----
// ---- element helpers (lxml `find`/`findall` semantics on un-namespaced names) ----

function children(el: Element, name: string): Element[] {
  const out: Element[] = [];
  for (let n = el.firstChild; n !== null; n = n.nextSibling) {
    if (n.nodeType !== ELEMENT_NODE) continue;
    const child = n as Element;
    if (child.namespaceURI === null && child.tagName === name) out.push(child);
  }
  return out;
}

function firstChild(el: Element, name: string): Element | undefined {
  return children(el, name)[0];
}

function grandchildren(el: Element, name: string, childName: string): Element[] {
  return children(el, name).flatMap((c) => children(c, childName));
}

/** The text of a leaf element ("" when empty); elements inside a value are refused. */
function leafText(el: Element, what: string): string {
  let s = "";
  for (let n = el.firstChild; n !== null; n = n.nextSibling) {
    if (n.nodeType === ELEMENT_NODE) fail(`${what}: unexpected element inside a value`);
    if (n.nodeType === TEXT_NODE || n.nodeType === CDATA_SECTION_NODE) s += n.nodeValue ?? "";
  }
  if (hasNonXmlChar(s)) fail(`${what}: contains a character xml does not allow`);
  return s;
}

/** An attribute that must be present and non-empty. */
/** `<parent><child name="k">v</child>…` → { k: v }; names required and unique. */
function readNamedValues(parent: Element, childName: string, what: string): Record<string, string> {
  return readNamedList([parent], childName, what);
}

function readNamedList(parents: Element[], childName: string, what: string): Record<string, string> {
  const out = emptyRecord<string>();
  for (const parent of parents) {
    for (const el of children(parent, childName)) {
      const name = xml.requiredAttr(el, "name", what);
      if (Object.hasOwn(out, name)) fail(`duplicate ${what} ${quote(name)}`);
      out[name] = leafText(el, `${what} ${quote(name)}`);
    }
  }
  return out;
}

/** Properties: an empty element means None (spec §6.2). */
function nullIfEmpty(values: Record<string, string>): Record<string, string | null> {
  const out = emptyRecord<string | null>();
  for (const [k, v] of Object.entries(values)) out[k] = v === "" ? null : v;
  return out;
}

function qbool(value: string, what: string): boolean {
  const v = value.toLowerCase();
  if (QBOOL_TRUE.has(v)) return true;
  if (QBOOL_FALSE.has(v)) return false;
  return fail(`${what}: ${quote(value)} is not a boolean`);
}

function decimal(value: string, what: string): number {
  const n = DECIMAL_RE.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n)) fail(`${what} ${quote(value)} is not a non-negative decimal integer`);
  return n;
}

// ---- labels ----

function readLabels(labelsEl: Element): Map<string, string> {
  const labels = new Map<string, string>();
  for (const el of children(labelsEl, "label")) {
    const id = xml.requiredAttr(el, "id", "label");
    const name = leafText(el, `label ${quote(id)}`);
    if (name === "") fail(`label ${quote(id)} has no name`);
    if (labels.has(id) || (name !== id && labels.has(name))) fail(`duplicate label ${quote(id)} (${quote(name)})`);
    labels.set(id, name);
    labels.set(name, name);
  }
  return labels;
}

// ---- domains ----

function readDomain(el: Element, labels: Map<string, string>): ParsedDomain {
  const klass = xml.requiredAttr(el, "class", "domain");
  if (!CLASS_NAME_RE.test(klass)) fail(`domain class ${quote(klass)} is not a class name`);
  const isAdmin = klass === ADMINVM_CLASS;

  const props = nullIfEmpty(readNamedList(children(el, "properties"), "property", "property"));
  const rawName = props["name"];
  let name: string;
  if (isAdmin) {
    name = ADMINVM_NAME;
  } else {
    if (rawName === undefined || rawName === null) fail(`${klass} domain without a name`);
    const problem = qubeNameProblem(rawName);
    if (problem !== undefined) fail(`domain name ${quote(rawName)}: ${problem}`);
    name = rawName;
  }
  const who = `domain ${quote(name)}`;

  const labelRef = props["label"];
  if (labelRef === undefined || labelRef === null) fail(`${who} has no label`);
  const label = labels.get(labelRef) ?? fail(`${who}: label ${quote(labelRef)} does not resolve`);

  const templateRef = props["template"];
  let template: string | undefined;
  if (templateRef !== undefined && templateRef !== null) {
    const problem = qubeNameProblem(templateRef);
    if (problem !== undefined) fail(`${who}: template name ${quote(templateRef)}: ${problem}`);
    template = templateRef;
  }
  const properties = emptyRecord<string | null>();
  for (const [k, v] of Object.entries(props)) {
    if (!(DOMAIN_KEY_PROPERTIES as readonly string[]).includes(k)) properties[k] = v;
  }

  const allFeatures = readNamedList(children(el, "features"), "feature", `${who} feature`);
  const content = allFeatures[BACKUP_CONTENT];
  const path = allFeatures[BACKUP_PATH];
  const size = allFeatures[BACKUP_SIZE];
  // REF-R: `if features.pop('backup-content', False)`; an empty text is False, *any* other text
  // (even "0" or "False") is True (spec §6.2).
  const included = content !== undefined && content !== "" && path !== undefined;
  const features = emptyRecord<string>();
  for (const [k, v] of Object.entries(allFeatures)) {
    if (k !== BACKUP_CONTENT && k !== BACKUP_PATH && k !== BACKUP_SIZE) features[k] = v;
  }

  const domain: ParsedDomain = {
    klass,
    name,
    label,
    ...(template === undefined ? {} : { template }),
    properties,
    features,
    tags: readTags(el, who),
    devices: readDevices(el, who),
    included,
    backupSize: 0,
    volumes: readVolumes(el, who),
  };
  if (included && path !== undefined) {
    checkBackupPath(path, isAdmin, who);
    domain.backupPath = path;
    if (size !== undefined) domain.backupSize = decimal(size, `${who}: backup-size`);
  }
  return domain;
}

function checkBackupPath(path: string, isAdmin: boolean, who: string): void {
  const ok = isAdmin ? dom0UserOfBackupPath(path) !== undefined : isValidQubeBackupPath(path);
  if (!ok) {
    fail(`${who}: backup-path ${quote(path)} is not ${isAdmin ? "dom0-home/<user>" : "vm<digits>/"}`);
  }
}

function readTags(el: Element, who: string): string[] {
  const tags = new Set<string>(); // a set in REF-R: repeats collapse
  for (const t of grandchildren(el, "tags", "tag")) tags.add(xml.requiredAttr(t, "name", `${who} tag`));
  return [...tags];
}

function readDevices(el: Element, who: string): ParsedDevice[] {
  const out: ParsedDevice[] = [];
  for (const bus of children(el, "devices")) {
    const devClass = xml.requiredAttr(bus, "class", `${who} devices`);
    for (const dev of children(bus, "device")) {
      const what = `${who} ${devClass} device`;
      const backendDomain = xml.requiredAttr(dev, "backend-domain", what);
      const backendProblem = backendDomain === ADMINVM_NAME ? undefined : qubeNameProblem(backendDomain);
      if (backendProblem !== undefined) fail(`${what}: backend domain ${quote(backendDomain)}: ${backendProblem}`);
      const id = xml.requiredAttr(dev, "id", what);
      const required = qbool(xml.optionalAttr(dev, "required", what) ?? "yes", `${what} required`);
      const options = readNamedList([dev], "option", `${what} option`);
      out.push({ class: devClass, backendDomain, id, required, options });
    }
  }
  return out;
}

function readVolumes(el: Element, who: string): ParsedVolume[] {
  const out: ParsedVolume[] = [];
  const seen = new Set<string>();
  for (const v of grandchildren(el, "volume-config", "volume")) {
    const name = xml.requiredAttr(v, "name", `${who} volume`);
    if (seen.has(name)) fail(`${who}: duplicate volume ${quote(name)}`);
    seen.add(name);
    const what = `${who} volume ${quote(name)}`;
    const saveOnStop = qbool(xml.optionalAttr(v, "save_on_stop", what) ?? "False", `${what} save_on_stop`);
    const size = xml.optionalAttr(v, "size", what);
    out.push(size === undefined ? { name, saveOnStop } : { name, saveOnStop, size: decimal(size, `${what} size`) });
  }
  return out;
}
