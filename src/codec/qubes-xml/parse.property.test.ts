/**
 * Property tests of the R4 qubes.xml codec (spec §6.1–§6.3): random valid models (names per the
 * qube name rules, labels by name or id, netvm absent/none/named, volumes, properties, features,
 * tags, dom0 home) go through buildQubesXml and parseQubesXml unchanged; the writer never produces
 * a document its reader refuses; and random byte edits of a valid document either parse or throw
 * QbackupError ERR_QUBES_XML, never anything else.
 */
import { readFileSync } from "node:fs";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { applyByteEdits, byteEditArb } from "../../../test/support/byte-edits.js";
import { QbackupError } from "../../errors.js";
import {
  ADMINVM_LABEL,
  ADMINVM_NAME,
  MAX_DOM0_USER_LENGTH,
  MAX_QUBE_NAME_LENGTH,
  QUBES_LABELS,
  buildQubesXml,
  isValidQubeBackupPath,
  isValidQubeName,
  parseQubesXml,
  standardLabelName,
} from "./index.js";
import type { BackupQube, ParsedDomain, ParsedQubesXml, QubesXmlModel } from "./index.js";
import { hasNonXmlChar } from "./names.js";

const ROUND_TRIP_RUNS = 150;
const LOOSE_RUNS = 150;
const MUTATION_RUNS = 600;
const MAX_QUBES = 5;
const MAX_EXTRAS = 4;
const MAX_VALUE_LENGTH = 12;
const MAX_EDITS = 4;
const MAX_QID = 9_999_999_999;
const FIXTURES = ["golden-v4-qubes.xml", "minimal-spec-6.3.xml"].map((name) =>
  readFileSync(new URL(`./testdata/${name}`, import.meta.url)),
);
const CLASSES = ["AppVM", "DispVM", "TemplateVM", "StandaloneVM"] as const;
const NEEDS_TEMPLATE: ReadonlySet<string> = new Set(["AppVM", "DispVM"]);
const NAME_FIRST = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const NAME_REST = `${NAME_FIRST}0123456789_.-`;
const PRINTABLE = Array.from({ length: 0x7e - 0x21 + 1 }, (_, i) => String.fromCharCode(0x21 + i));
/** Characters the writer must escape or that XML readers like to normalise. */
const TRICKY_CHARS = [
  "&",
  "<",
  ">",
  '"',
  "'",
  "\t",
  "\n",
  "\r",
  " ",
  "\u0085",
  "\u2028",
  "\u2029",
  "]",
  "é",
  "日",
  "\u{1F600}",
];
/** Not allowed in XML 1.0 at all: the writer must refuse them (ERR_USAGE). */
const NON_XML_CHARS = ["\u0000", "\u0001", "\u001f", "\ufffe", "\uffff", "\ud800"];

// ---- generators ----

const qubeNameArb = fc
  .tuple(
    fc.constantFrom(...NAME_FIRST),
    fc.string({ unit: fc.constantFrom(...NAME_REST), maxLength: MAX_QUBE_NAME_LENGTH - 1 }),
  )
  .map(([a, b]) => a + b)
  .filter((n) => isValidQubeName(n) && n !== ADMINVM_NAME);

const xmlValueArb = (extra: readonly string[] = []): fc.Arbitrary<string> =>
  fc.oneof(
    fc.constantFrom("", "0", "1", "False", " ", "\n"),
    fc.string({
      unit: fc.oneof(
        fc.constantFrom(...PRINTABLE),
        fc.constantFrom(...TRICKY_CHARS),
        ...extra.map((c) => fc.constant(c)),
      ),
      maxLength: MAX_VALUE_LENGTH,
    }),
  );

const propertyNameArb = fc
  .oneof(
    fc.constantFrom("memory", "vcpus", "kernel", "__proto__", "constructor", "toString", "_"),
    fc
      .tuple(fc.constantFrom(...NAME_FIRST, "_"), fc.string({ unit: fc.constantFrom(...NAME_FIRST, "_", "0", "9") }))
      .map(([a, b]) => a + b),
  )
  .filter((k) => !["name", "label", "qid", "uuid", "template", "netvm"].includes(k));

const printableNameArb = fc.oneof(
  fc.constantFrom("service.x", "supported-rpc.x+", "__proto__", "a&b", 'q"t', "<x>"),
  fc.string({ unit: fc.constantFrom(...PRINTABLE), minLength: 1, maxLength: 10 }),
);
const featureNameArb = printableNameArb.filter((k) => !["backup-content", "backup-path", "backup-size"].includes(k));

/** A record with own keys only (Object.fromEntries also makes `__proto__` an own key). */
const recordArb = (key: fc.Arbitrary<string>, value: fc.Arbitrary<string>): fc.Arbitrary<Record<string, string>> =>
  fc
    .uniqueArray(fc.tuple(key, value), { maxLength: MAX_EXTRAS, selector: ([k]) => k })
    .map((entries) => Object.fromEntries(entries));

const labelArb = fc.constantFrom(...QUBES_LABELS.flatMap((l) => [l.name, l.id]));

function qubeArb(valueExtra: readonly string[]): fc.Arbitrary<Omit<BackupQube, "qid" | "backupPath">> {
  return fc
    .record({
      name: qubeNameArb,
      klass: fc.constantFrom(...CLASSES),
      label: labelArb,
      template: qubeNameArb,
      netvm: fc.option(fc.option(qubeNameArb, { nil: null }), { nil: undefined }),
      backupSize: fc.oneof(fc.nat(), fc.maxSafeNat()),
      volumes: fc.uniqueArray(
        fc.record({
          name: fc.stringMatching(/^[a-z][a-z0-9_-]{0,31}$/),
          size: fc.oneof(fc.nat(), fc.maxSafeNat()),
        }),
        { maxLength: 3, selector: (v) => v.name },
      ),
      properties: recordArb(propertyNameArb, xmlValueArb(valueExtra)),
      features: recordArb(featureNameArb, xmlValueArb(valueExtra)),
      tags: fc.uniqueArray(printableNameArb, { maxLength: MAX_EXTRAS }),
    })
    .map(({ template, netvm, ...q }) => ({
      ...q,
      ...(NEEDS_TEMPLATE.has(q.klass) ? { template } : {}),
      ...(netvm === undefined ? {} : { netvm }),
    }));
}

function modelArb(valueExtra: readonly string[] = []): fc.Arbitrary<QubesXmlModel> {
  return fc
    .record({
      qubes: fc.uniqueArray(qubeArb(valueExtra), { maxLength: MAX_QUBES, selector: (q) => q.name }),
      qids: fc.uniqueArray(fc.integer({ min: 1, max: MAX_QID }), { minLength: MAX_QUBES, maxLength: MAX_QUBES }),
      dom0: fc.option(
        fc.record({
          user: fc.stringMatching(new RegExp(`^[a-z_][a-z0-9_-]{0,${MAX_DOM0_USER_LENGTH - 1}}$`)),
          backupSize: fc.maxSafeNat(),
        }),
        { nil: undefined },
      ),
      defaultTemplate: fc.option(qubeNameArb, { nil: undefined }),
    })
    .map(({ qubes, qids, dom0, defaultTemplate }) => ({
      qubes: qubes.map((q, i) => {
        const qid = qids[i] ?? i + 1;
        return { ...q, qid, backupPath: `vm${qid}/` };
      }),
      ...(dom0 === undefined ? {} : { dom0 }),
      ...(defaultTemplate === undefined ? {} : { defaultTemplate }),
    }));
}

// ---- expectations ----

function nullIfEmpty(values: Record<string, string>): Record<string, string | null> {
  return Object.fromEntries(Object.entries(values).map(([k, v]) => [k, v === "" ? null : v]));
}

/** Plain objects for toEqual: the reader's records have no prototype. */
function plain<T>(record: Record<string, T>): Record<string, T> {
  return Object.fromEntries(Object.entries(record));
}

function expectedQube(q: BackupQube): ParsedDomain {
  return {
    klass: q.klass,
    name: q.name,
    label: standardLabelName(q.label) ?? "?",
    ...(q.template === undefined ? {} : { template: q.template }),
    properties: { ...(q.netvm === undefined ? {} : { netvm: q.netvm }), ...nullIfEmpty(q.properties ?? {}) },
    features: { ...(q.features ?? {}) },
    tags: q.tags ?? [],
    devices: [],
    included: true,
    backupPath: q.backupPath,
    backupSize: q.backupSize,
    volumes: q.volumes.map((v) => ({ name: v.name, saveOnStop: true, size: v.size })),
  };
}

function expectedAdmin(m: QubesXmlModel): ParsedDomain {
  return {
    klass: "AdminVM",
    name: ADMINVM_NAME,
    label: ADMINVM_LABEL,
    properties: {},
    features: {},
    tags: [],
    devices: [],
    included: m.dom0 !== undefined,
    ...(m.dom0 === undefined ? {} : { backupPath: `dom0-home/${m.dom0.user}` }),
    backupSize: m.dom0?.backupSize ?? 0,
    volumes: [],
  };
}

function comparable(d: ParsedDomain): ParsedDomain {
  return { ...d, properties: plain(d.properties), features: plain(d.features) };
}

function expectRoundTrip(m: QubesXmlModel, doc: ParsedQubesXml): void {
  for (const l of QUBES_LABELS) {
    expect(doc.labels.get(l.id)).toBe(l.name);
    expect(doc.labels.get(l.name)).toBe(l.name);
  }
  expect(plain(doc.properties)).toEqual(m.defaultTemplate === undefined ? {} : { default_template: m.defaultTemplate });
  expect(doc.domains.map(comparable)).toEqual([expectedAdmin(m), ...m.qubes.map(expectedQube)]);
}

/** What any caller may rely on in a document the reader accepted. */
function checkAccepted(doc: ParsedQubesXml): void {
  expect(doc.domains.some((d) => d.klass === "AdminVM")).toBe(true);
  const names = new Set<string>();
  for (const d of doc.domains) {
    expect(d.name === ADMINVM_NAME || isValidQubeName(d.name)).toBe(true);
    expect(names.has(d.name)).toBe(false);
    names.add(d.name);
    expect(Number.isSafeInteger(d.backupSize) && d.backupSize >= 0).toBe(true);
    if (d.backupPath !== undefined) {
      expect(d.included).toBe(true);
      if (d.klass !== "AdminVM") expect(isValidQubeBackupPath(d.backupPath)).toBe(true);
    }
  }
}

// ---- mutations ----

const INTERESTING_BYTES = [0x00, 0x0d, 0x20, 0x22, 0x26, 0x27, 0x2f, 0x3c, 0x3d, 0x3e, 0x21, 0x3f, 0x80, 0xc3, 0xff];

const editArb = byteEditArb(INTERESTING_BYTES, 20);

function parseOrXmlError(bytes: Uint8Array): void {
  let doc: ParsedQubesXml;
  try {
    doc = parseQubesXml(bytes);
  } catch (err) {
    if (!(err instanceof QbackupError)) throw err;
    expect(err.code).toBe("ERR_QUBES_XML");
    expect(err.message).not.toMatch(/[\r\n]/);
    return;
  }
  checkAccepted(doc);
}

describe("qubes.xml (r4): writer → reader", () => {
  it("random valid models come back unchanged", () => {
    fc.assert(
      fc.property(modelArb(), (m) => {
        expectRoundTrip(m, parseQubesXml(buildQubesXml(m)));
      }),
      { numRuns: ROUND_TRIP_RUNS },
    );
  });

  it("whatever the writer accepts, the reader reads back; the rest is ERR_USAGE", () => {
    fc.assert(
      fc.property(modelArb(NON_XML_CHARS), (m) => {
        let xml: Buffer;
        try {
          xml = buildQubesXml(m);
        } catch (err) {
          expect(err).toBeInstanceOf(QbackupError);
          expect((err as QbackupError).code).toBe("ERR_USAGE");
          const values = m.qubes.flatMap((q) => [
            ...Object.values(q.properties ?? {}),
            ...Object.values(q.features ?? {}),
          ]);
          expect(values.some(hasNonXmlChar)).toBe(true);
          return;
        }
        expectRoundTrip(m, parseQubesXml(xml));
      }),
      { numRuns: LOOSE_RUNS },
    );
  });
});

describe("qubes.xml (r4): mutations", () => {
  it("byte edits of written documents and fixtures parse or throw ERR_QUBES_XML only", () => {
    const source = fc.oneof(fc.constantFrom(...FIXTURES), modelArb().map(buildQubesXml));
    fc.assert(
      fc.property(source, fc.array(editArb, { minLength: 1, maxLength: MAX_EDITS }), (xml, edits) => {
        parseOrXmlError(applyByteEdits(xml, edits));
      }),
      { numRuns: MUTATION_RUNS },
    );
  });
});
