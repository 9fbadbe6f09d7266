import { describe, it, expect } from "vitest";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { MAX_QUBES_XML_BYTES, parseQubesXml } from "./index.js";
import type { ParsedDomain } from "./index.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const golden = fs.readFileSync(path.join(here, "testdata", "golden-v4-qubes.xml"));
const minimal = fs.readFileSync(path.join(here, "testdata", "minimal-spec-6.3.xml"));

/** Parsing must fail with ERR_QUBES_XML and a one-line message matching `reason`. */
function expectReject(bytes: Uint8Array, reason: RegExp): void {
  let err: unknown;
  try {
    parseQubesXml(bytes);
  } catch (e) {
    err = e;
  }
  expect(err).toMatchObject({ code: "ERR_QUBES_XML" });
  const message = (err as Error).message;
  expect(message).toMatch(reason);
  expect(message).not.toMatch(/\n/);
}

function domain(doc: ReturnType<typeof parseQubesXml>, name: string): ParsedDomain {
  const d = doc.domains.find((x) => x.name === name);
  if (d === undefined) throw new Error(`no domain ${name}`);
  return d;
}

/** The golden file with one textual substitution (must hit exactly once). */
function goldenWith(from: string, to: string): Buffer {
  const s = golden.toString("utf8");
  expect(s.split(from).length).toBe(2);
  return Buffer.from(s.replace(from, to), "utf8");
}

/** A small valid document with caller-supplied domains (AdminVM added unless told not to). */
function doc(domains: string, opts: { adminVm?: boolean; labels?: boolean; globals?: boolean } = {}): Buffer {
  const admin =
    opts.adminVm === false
      ? ""
      : `<domain id="domain-0" class="AdminVM"><properties><property name="label">black</property></properties>` +
        `<features><feature name="backup-content"></feature></features><tags/></domain>`;
  return Buffer.from(
    `<?xml version='1.0' encoding='UTF-8'?>\n<qubes>` +
      (opts.labels === false ? "" : `<labels><label id="label-8" color="0x000000">black</label></labels>`) +
      `<pools/>` +
      (opts.globals === false ? "" : `<properties/>`) +
      `<domains>${admin}${domains}</domains></qubes>\n`,
    "utf8",
  );
}

function appVm(name: string, features: string, extra = ""): string {
  return (
    `<domain id="domain-9" class="AppVM"><properties><property name="name">${name}</property>` +
    `<property name="label">black</property>${extra}</properties><features>${features}</features></domain>`
  );
}

const included = (p: string, size = "1") =>
  `<feature name="backup-content">1</feature><feature name="backup-path">${p}</feature>` +
  `<feature name="backup-size">${size}</feature>`;

describe("parseQubesXml: golden R4 file", () => {
  const parsed = parseQubesXml(golden);

  it("reads the label table by id and by name", () => {
    expect(parsed.labels.get("label-6")).toBe("blue");
    expect(parsed.labels.get("blue")).toBe("blue");
    expect(parsed.labels.size).toBe(16);
  });

  it("reads global properties, empty element as null", () => {
    expect({ ...parsed.properties }).toEqual({
      default_template: "debian-12-xfce",
      default_netvm: null,
      updatevm: "dom0",
    });
  });

  it("AdminVM is dom0, included with dom0-home/user and 28672", () => {
    const d = domain(parsed, "dom0");
    expect(d.klass).toBe("AdminVM");
    expect(d.label).toBe("black");
    expect(d.included).toBe(true);
    expect(d.backupPath).toBe("dom0-home/user");
    expect(d.backupSize).toBe(28672);
    expect({ ...d.features }).toEqual({});
    expect({ ...d.properties }).toEqual({});
  });

  it("TemplateVM debian-12-xfce is described but not included (empty backup-content)", () => {
    const d = domain(parsed, "debian-12-xfce");
    expect(d.klass).toBe("TemplateVM");
    expect(d.included).toBe(false);
    expect(d.backupPath).toBeUndefined();
    expect(d.backupSize).toBe(0);
    expect(d.template).toBeUndefined();
    expect({ ...d.features }).toEqual({ qrexec: "1" });
    expect(d.volumes).toEqual([
      { name: "root", saveOnStop: true, size: 10737418240 },
      { name: "private", saveOnStop: true, size: 2147483648 },
      { name: "volatile", saveOnStop: false, size: 10737418240 },
    ]);
  });

  it("AppVM work is included: vm5/, 3162112, template, tags, features without backup-*, volumes", () => {
    const d = domain(parsed, "work");
    expect(d.klass).toBe("AppVM");
    expect(d.label).toBe("blue");
    expect(d.included).toBe(true);
    expect(d.backupPath).toBe("vm5/");
    expect(d.backupSize).toBe(3162112);
    expect(d.template).toBe("debian-12-xfce");
    // name/label/template/qid/uuid are taken aside; the empty netvm is null
    expect({ ...d.properties }).toEqual({ memory: "600", netvm: null });
    expect({ ...d.features }).toEqual({ "service.fixture": "1" });
    expect(d.tags).toEqual(["created-by-dom0", "fixture"]);
    expect(d.devices).toEqual([]);
    expect(d.volumes).toEqual([
      { name: "root", saveOnStop: false, size: 10737418240 },
      { name: "private", saveOnStop: true, size: 67108864 },
      { name: "volatile", saveOnStop: false, size: 10737418240 },
    ]);
  });

  it("lists the domains in document order", () => {
    expect(parsed.domains.map((d) => d.name)).toEqual(["dom0", "debian-12-xfce", "work"]);
  });
});

describe("parseQubesXml: other accepted input", () => {
  it("parses the minimal example of spec §6.3", () => {
    const p = parseQubesXml(minimal);
    expect(p.domains.map((d) => [d.name, d.klass, d.included, d.backupPath, d.backupSize])).toEqual([
      ["dom0", "AdminVM", true, "dom0-home/user", 28672],
      ["work", "AppVM", true, "vm5/", 3162112],
    ]);
    const work = domain(p, "work");
    expect(work.template).toBe("debian-12-xfce");
    expect(work.label).toBe("blue");
    expect(work.volumes).toEqual([{ name: "private", saveOnStop: true, size: 67108864 }]);
    expect(p.properties["default_template"]).toBe("debian-12-xfce");
  });

  it('counts backup-content "0" and "False" as included (REF-R quirk)', () => {
    // REF-R does `if vm.features.pop('backup-content', False):` on the raw text, and any
    // non-empty Python string is truthy, so "0" and "False" both mean *included* (spec §6.2).
    for (const value of ["0", "False"]) {
      const p = parseQubesXml(
        doc(
          appVm("work", `<feature name="backup-content">${value}</feature><feature name="backup-path">vm5/</feature>`),
        ),
      );
      const d = domain(p, "work");
      expect(d.included).toBe(true);
      expect(d.backupPath).toBe("vm5/");
      expect(d.backupSize).toBe(0); // backup-size absent → default 0
    }
  });

  it("backup-content without backup-path is not included", () => {
    const p = parseQubesXml(doc(appVm("work", `<feature name="backup-content">1</feature>`)));
    expect(domain(p, "work").included).toBe(false);
  });

  it("reads device assignments; required defaults to yes, the mode attribute is ignored", () => {
    const dev =
      `<devices class="pci"><device backend-domain="dom0" id="00_14.0" mode="ask-to-attach">` +
      `<option name="no-strict-reset">True</option></device>` +
      `<device backend-domain="dom0" id="00_1f.6" required="no"/></devices>`;
    const xml = doc(appVm("work", "", "").replace("</features>", `</features>${dev}`));
    expect(domain(parseQubesXml(xml), "work").devices).toEqual([
      { class: "pci", backendDomain: "dom0", id: "00_14.0", required: true, options: { "no-strict-reset": "True" } },
      { class: "pci", backendDomain: "dom0", id: "00_1f.6", required: false, options: {} },
    ]);
  });

  it("accepts a UTF-8 BOM and non-ASCII values", () => {
    const body = doc(appVm("work", `<feature name="note">Grüße ✓</feature>`));
    const p = parseQubesXml(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), body]));
    expect(domain(p, "work").features["note"]).toBe("Grüße ✓");
  });

  it("keeps __proto__ as an ordinary feature name", () => {
    const p = parseQubesXml(doc(appVm("work", `<feature name="__proto__">x</feature>`)));
    const f = domain(p, "work").features;
    expect(Object.keys(f)).toEqual(["__proto__"]);
    expect(f["__proto__"]).toBe("x");
  });
});

describe("parseQubesXml: rejections (ERR_QUBES_XML)", () => {
  it("rejects a DOCTYPE with an entity bomb before expanding anything", () => {
    const lol = ["<!ENTITY lol0 'lol'>"];
    for (let i = 1; i < 10; i++) lol.push(`<!ENTITY lol${i} '${`&lol${i - 1};`.repeat(10)}'>`);
    const bomb = Buffer.from(
      `<?xml version="1.0"?>\n<!DOCTYPE qubes [\n${lol.join("\n")}\n]>\n<qubes><labels>&lol9;</labels></qubes>`,
    );
    const t0 = performance.now();
    expectReject(bomb, /document type/);
    expect(performance.now() - t0).toBeLessThan(500);
  });

  it("rejects a bare DOCTYPE and an external entity", () => {
    expectReject(Buffer.from(`<!DOCTYPE qubes><qubes/>`), /document type/);
    const xxe = `<!DOCTYPE q [<!ENTITY x SYSTEM "file:///etc/passwd">]><qubes>&x;</qubes>`;
    expectReject(Buffer.from(xxe), /document type/);
  });

  it("rejects malformed xml", () => {
    expectReject(goldenWith("</domains>", "</domain>"), /malformed xml: .*tag mismatch/);
    expectReject(Buffer.from(""), /malformed xml/);
    expectReject(Buffer.from("<qubes><labels></qubes>"), /malformed xml/);
    expectReject(Buffer.from("<qubes>&undefined;</qubes>"), /malformed xml: .*entity/);
    expectReject(Buffer.from("<qubes/><qubes/>"), /malformed xml/);
    expectReject(Buffer.from(`<qubes a="1" a="2"/>`), /malformed xml/);
  });

  it("rejects invalid utf-8, other encodings and characters xml forbids", () => {
    expectReject(Buffer.concat([doc(""), Buffer.from([0xff])]), /utf-8/);
    expectReject(Buffer.from(`<?xml version='1.0' encoding='ISO-8859-1'?><qubes/>`), /encoding/);
    expectReject(Buffer.from("\ufeff<q/>", "utf16le"), /utf-8/);
    expectReject(doc(appVm("work", `<feature name="x">\u0001</feature>`)), /character xml does not allow/);
    expectReject(doc(appVm("work", `<feature name="x">&#0;</feature>`)), /malformed xml|character xml does not allow/);
  });

  it("rejects a missing labels element", () => {
    expectReject(doc("", { labels: false }), /missing labels/);
  });

  it("rejects a missing global properties element", () => {
    expectReject(doc("", { globals: false }), /missing global properties/);
  });

  it("rejects a label that does not resolve", () => {
    expectReject(goldenWith(`"label">blue<`, `"label">pink<`), /label "pink" does not resolve/);
  });

  it("rejects a domain without a label, and a label table with duplicates", () => {
    expectReject(goldenWith(`<property name="label">blue</property>`, ""), /no label/);
    expectReject(goldenWith(`id="label-2">orange`, `id="label-1">orange`), /duplicate label/);
  });

  it("rejects a document without an AdminVM", () => {
    expectReject(doc(appVm("work", ""), { adminVm: false }), /no AdminVM/);
  });

  it("rejects a non-AdminVM domain without a name, or with a name Qubes forbids", () => {
    expectReject(goldenWith(`<property name="name">work</property>`, ""), /without a name/);
    expectReject(doc(appVm("", "")), /without a name/);
    expectReject(doc(appVm("../etc", "")), /must start with an ASCII letter/);
    expectReject(doc(appVm("sys-net-dm", "")), /-dm/);
    expectReject(doc(appVm("a\nb", "")), /may contain only/);
  });

  it("rejects duplicate domain names", () => {
    expectReject(doc(appVm("work", "") + appVm("work", "")), /duplicate domain name "work"/);
    // a qube named like the AdminVM collides with it
    expectReject(doc(appVm("dom0", "")), /duplicate domain name "dom0"/);
  });

  it("rejects backup-path ../x/", () => {
    expectReject(goldenWith(">vm5/<", ">../x/<"), /backup-path "\.\.\/x\/"/);
  });

  it("rejects an absolute backup-path", () => {
    expectReject(goldenWith(">vm5/<", ">/abs/<"), /backup-path "\/abs\/"/);
  });

  it("rejects a qube backup-path without the trailing slash", () => {
    expectReject(goldenWith(">vm5/<", ">vm5<"), /backup-path "vm5" is not vm<digits>\//);
  });

  it("rejects other unsafe backup-paths", () => {
    for (const p of ["vm5/../vm6/", "vm5//", "vmx/", "dom0-home/user", "", "vm5/&#10;"]) {
      expectReject(doc(appVm("work", included(p))), /backup-path/);
    }
    for (const p of ["dom0-home/../root", "dom0-home/", "dom0-home/user/", "/home/user", "vm0/", "dom0-home/User"]) {
      expectReject(goldenWith(">dom0-home/user<", `>${p}<`), /backup-path .* is not dom0-home\/<user>/);
    }
  });

  it("rejects two domains sharing one backup-path", () => {
    const xml = doc(appVm("work", included("vm5/")) + appVm("personal", included("vm5/")));
    expectReject(xml, /"work" and "personal" share backup-path "vm5\/"/);
  });

  it("rejects a bad backup-size", () => {
    for (const s of ["-1", "1.5", "", "0x10", " 1", "1e3", "99999999999999999999"]) {
      expectReject(goldenWith(">3162112<", `>${s}<`), /backup-size .* is not a non-negative decimal integer/);
    }
  });

  it("rejects oversize input without looking at it", () => {
    const big = Buffer.alloc(MAX_QUBES_XML_BYTES + 1, 0x20);
    expectReject(big, /67108865 bytes is more than the limit of 67108864/);
  });

  it("rejects duplicate properties and features, and nameless ones", () => {
    expectReject(doc(appVm("work", `<feature name="a">1</feature><feature name="a">2</feature>`)), /duplicate/);
    expectReject(doc(appVm("work", `<feature>1</feature>`)), /missing name/);
    expectReject(doc(appVm("work", "", `<property name="label">black</property>`)), /duplicate property "label"/);
  });

  it("rejects a bad device assignment", () => {
    const bad = (dev: string) =>
      doc(appVm("work", "").replace("</features>", `</features><devices class="pci">${dev}</devices>`));
    expectReject(bad(`<device id="x"/>`), /missing backend-domain/);
    expectReject(bad(`<device backend-domain="dom0" id="x" required="maybe"/>`), /not a boolean/);
  });

  it("rejects a missing or odd domain class", () => {
    expectReject(goldenWith(` class="AppVM"`, ""), /missing class/);
    expectReject(goldenWith(` class="AppVM"`, ` class="App VM"`), /not a class name/);
  });
});
