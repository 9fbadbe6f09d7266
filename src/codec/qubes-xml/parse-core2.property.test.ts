/**
 * Property tests of the R3 (core2) qubes.xml reader (spec §6.4): random byte edits of the fixtures
 * and random `services` / `pcidevs` Python literals either parse or throw QbackupError ERR_QUBES_XML,
 * never anything else; well-formed literals convert the way REF-R converts them (services become
 * features, three of them renamed; PCI devices become dom0 assignments with ':' → '_').
 */
import { readFileSync } from "node:fs";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { applyByteEdits, byteEditArb } from "../../../test/support/byte-edits.js";
import { QbackupError } from "../../errors.js";
import { ADMINVM_NAME, isValidQubeName, parseQubesXmlCore2 } from "./index.js";
import type { ParsedDomain, ParsedQubesXml } from "./index.js";

const MUTATION_RUNS = 800;
const LITERAL_RUNS = 400;
const CONVERSION_RUNS = 200;
const MAX_EDITS = 4;
const MAX_ENTRIES = 5;
const testdata = (name: string): Buffer => readFileSync(new URL(`./testdata/${name}`, import.meta.url));
const GOLDEN_V3 = testdata("golden-v3-qubes.xml");
/** Core3 documents must be refused by the core2 reader (wrong root), never crash it. */
const OTHER_FIXTURES = [testdata("golden-v4-qubes.xml"), testdata("minimal-spec-6.3.xml")];
/** The golden file's `work` AppVM, whose services and pcidevs attributes the literals replace. */
const WORK_ELEMENT_START = '<QubesAppVm backup_content="True" backup_path="vm5"';
const RENAMED_SERVICES: Readonly<Record<string, string>> = {
  ntpd: "service.ntpd",
  "qubes-update-check": "check-updates",
  "meminfo-writer": "service.meminfo-writer",
};
/** Names every plain JS object inherits: a lookup table must not turn them into something else. */
const OBJECT_PROTOTYPE_NAMES = ["constructor", "__proto__", "toString", "valueOf", "hasOwnProperty"];
const LITERAL_TOKENS = ["{", "}", "[", "]", "'", '"', "\\", ":", ",", " ", "\t", "True", "False", "-1", "0", "a", "ü"];
const INTERESTING_BYTES = [0x00, 0x20, 0x22, 0x26, 0x27, 0x2f, 0x3c, 0x3d, 0x3e, 0x5b, 0x7b, 0x30, 0x35, 0x80, 0xff];

// ---- helpers ----

const editArb = byteEditArb(INTERESTING_BYTES, 20);

/** Parse; an accepted document must have unique, valid names and one dom0. */
function parseOrXmlError(bytes: Uint8Array): ParsedQubesXml | QbackupError {
  let doc: ParsedQubesXml;
  try {
    doc = parseQubesXmlCore2(bytes);
  } catch (err) {
    if (!(err instanceof QbackupError)) throw err;
    expect(err.code).toBe("ERR_QUBES_XML");
    expect(err.message).not.toMatch(/[\r\n]/);
    return err;
  }
  const names = doc.domains.map((d) => d.name);
  expect(new Set(names).size).toBe(names.length);
  expect(names.filter((n) => n === ADMINVM_NAME)).toHaveLength(1);
  for (const n of names) expect(n === ADMINVM_NAME || isValidQubeName(n)).toBe(true);
  return doc;
}

/** An attribute value as XML text inside double quotes. */
function xmlAttr(s: string): string {
  return s.replace(/[&<>"\t\n\r]/g, (c) => `&#${c.charCodeAt(0)};`);
}

function withWorkAttrs(services: string, pcidevs: string): Buffer {
  const text = GOLDEN_V3.toString("utf8");
  const start = text.indexOf(WORK_ELEMENT_START);
  const end = text.indexOf("/>", start);
  const element = text
    .slice(start, end)
    .replace(/ services="[^"]*"/u, ` services="${xmlAttr(services)}"`)
    .replace(/ pcidevs="[^"]*"/u, ` pcidevs="${xmlAttr(pcidevs)}"`);
  return Buffer.from(text.slice(0, start) + element + text.slice(end), "utf8");
}

function work(doc: ParsedQubesXml): ParsedDomain {
  const d = doc.domains.find((x) => x.name === "work");
  if (d === undefined) throw new Error("no work domain");
  return d;
}

/** A Python string literal with single quotes. */
function pyString(s: string): string {
  return `'${s.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
}

type PyScalar = { kind: "bool"; value: boolean } | { kind: "int"; value: number } | { kind: "str"; value: string };

function pyScalar(v: PyScalar): string {
  return v.kind === "bool" ? (v.value ? "True" : "False") : v.kind === "int" ? String(v.value) : pyString(v.value);
}

function featureValue(v: PyScalar): string {
  return v.kind === "bool" ? (v.value ? "1" : "") : String(v.value);
}

const textArb = fc.string({
  unit: fc.oneof(
    fc.constantFrom(..."abcXYZ019-_.:+/ "),
    fc.constantFrom("'", '"', "\\", "&", "<", ">", "é", "\u{1F600}"),
  ),
  minLength: 1,
  maxLength: 12,
});

const scalarArb: fc.Arbitrary<PyScalar> = fc.oneof(
  fc.boolean().map((value) => ({ kind: "bool" as const, value })),
  fc.integer({ min: -1000, max: 1_000_000 }).map((value) => ({ kind: "int" as const, value })),
  textArb.map((value) => ({ kind: "str" as const, value })),
);

function servicesArb(names: fc.Arbitrary<string>): fc.Arbitrary<Array<[string, PyScalar]>> {
  return fc.uniqueArray(fc.tuple(names, scalarArb), { maxLength: MAX_ENTRIES, selector: ([k]) => k });
}

const plainServiceNameArb = fc.oneof(fc.constantFrom(...Object.keys(RENAMED_SERVICES), "internal"), textArb);

function expectServicesConvert(services: ReadonlyArray<[string, PyScalar]>): void {
  const literal = `{${services.map(([k, v]) => `${pyString(k)}: ${pyScalar(v)}`).join(", ")}}`;
  const got = work(parseQubesXmlCore2(withWorkAttrs(literal, "[]"))).features;
  // Object.fromEntries: a "__proto__" entry becomes an own key, as in the reader's null-prototype record.
  const want = Object.fromEntries(
    services.map(([k, v]) => [Object.hasOwn(RENAMED_SERVICES, k) ? RENAMED_SERVICES[k]! : k, featureValue(v)]),
  );
  expect(Object.fromEntries(Object.entries(got))).toEqual(want);
}

// ---- properties ----

describe("qubes.xml (r3): mutations", () => {
  it("byte edits of the fixtures parse or throw ERR_QUBES_XML only", () => {
    const source = fc.oneof(
      { weight: 3, arbitrary: fc.constant(GOLDEN_V3) },
      { weight: 1, arbitrary: fc.constantFrom(...OTHER_FIXTURES) },
    );
    fc.assert(
      fc.property(source, fc.array(editArb, { minLength: 1, maxLength: MAX_EDITS }), (xml, edits) => {
        parseOrXmlError(applyByteEdits(xml, edits));
      }),
      { numRuns: MUTATION_RUNS },
    );
  });

  it("random services and pcidevs literals parse or throw ERR_QUBES_XML only", () => {
    const literal = fc.oneof(
      fc.string({ unit: fc.constantFrom(...LITERAL_TOKENS), maxLength: 16 }),
      fc.string({ maxLength: 16 }),
    );
    fc.assert(
      fc.property(literal, literal, (services, pcidevs) => {
        parseOrXmlError(withWorkAttrs(services, pcidevs));
      }),
      { numRuns: LITERAL_RUNS },
    );
  });
});

describe("qubes.xml (r3): literal conversion", () => {
  it("services become features (three renamed), values True → '1', False → '', others as text", () => {
    fc.assert(fc.property(servicesArb(plainServiceNameArb), expectServicesConvert), { numRuns: CONVERSION_RUNS });
  });

  // Found by this property (and fixed): the renaming table was looked up with inherited members,
  // so a service "constructor" became the feature "function Object() { [native code] }".
  it("services named like Object.prototype members keep their names", () => {
    fc.assert(fc.property(servicesArb(fc.constantFrom(...OBJECT_PROTOTYPE_NAMES)), expectServicesConvert), {
      numRuns: CONVERSION_RUNS,
      examples: [[[["constructor", { kind: "bool", value: true }]]]],
    });
  });

  it("pcidevs become required dom0 PCI assignments, ':' → '_', repeats collapsed", () => {
    const devices = fc.array(textArb, { maxLength: MAX_ENTRIES });
    fc.assert(
      fc.property(devices, (devs) => {
        const doc = parseQubesXmlCore2(withWorkAttrs("{}", `[${devs.map(pyString).join(", ")}]`));
        const ids = [...new Set(devs.map((d) => d.replace(/:/g, "_")))];
        expect(work(doc).devices).toEqual(
          ids.map((id) => ({ class: "pci", backendDomain: ADMINVM_NAME, id, required: true, options: {} })),
        );
      }),
      { numRuns: CONVERSION_RUNS },
    );
  });
});
