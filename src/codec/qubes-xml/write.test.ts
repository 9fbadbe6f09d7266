import { describe, it, expect } from "vitest";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { buildQubesXml, parseQubesXml, QUBES_LABELS } from "./index.js";
import type { BackupQube, ParsedDomain, ParsedQubesXml, QubesXmlModel } from "./index.js";

const TRICKY = `<&>"'`;
/** Survives only if CR, TAB, LF and LS are written as character references. */
const WHITESPACE = "a\r\nb\tc\rd\u2028e  ";

const work: BackupQube = {
  name: "work",
  qid: 5,
  klass: "AppVM",
  label: "blue",
  template: "debian-12-xfce",
  netvm: null,
  backupPath: "vm5/",
  backupSize: 3162112,
  volumes: [{ name: "private", size: 67108864 }],
  properties: { memory: "600" },
  features: { "service.fixture": "1", note: TRICKY, ws: WHITESPACE, off: "" },
  tags: ["created-by-dom0", "fixture"],
};
const vault: BackupQube = {
  name: "vault.x_1",
  qid: 12,
  klass: "StandaloneVM",
  label: "label-8",
  netvm: null,
  backupPath: "vm12/",
  backupSize: 0,
  volumes: [
    { name: "root", size: 10737418240 },
    { name: "private", size: 2147483648 },
  ],
};
const model: QubesXmlModel = {
  qubes: [work, vault],
  dom0: { user: "user", backupSize: 28672 },
  defaultTemplate: "debian-12-xfce",
};

function domain(doc: ParsedQubesXml, name: string): ParsedDomain {
  const d = doc.domains.find((x) => x.name === name);
  if (d === undefined) throw new Error(`no domain ${name}`);
  return d;
}

describe("buildQubesXml", () => {
  it("writes the declaration first and UTF-8 text", () => {
    const out = buildQubesXml(model).toString("utf8");
    expect(out.startsWith("<?xml version='1.0' encoding='UTF-8'?>\n<qubes>\n")).toBe(true);
    expect(out.endsWith("</qubes>\n")).toBe(true);
  });

  it("writes exactly the expected document for a minimal model (spec §6.3 shape)", () => {
    const out = buildQubesXml({
      qubes: [{ ...work, properties: {}, features: {}, tags: ["created-by-dom0"] }],
      dom0: { user: "user", backupSize: 28672 },
      defaultTemplate: "debian-12-xfce",
    }).toString("utf8");
    const labels = QUBES_LABELS.map((l) => `    <label color="${l.color}" id="${l.id}">${l.name}</label>\n`).join("");
    expect(out).toBe(
      `<?xml version='1.0' encoding='UTF-8'?>
<qubes>
  <labels>
${labels}  </labels>
  <pools/>
  <properties>
    <property name="default_template">debian-12-xfce</property>
  </properties>
  <domains>
    <domain id="domain-0" class="AdminVM">
      <properties>
        <property name="label">black</property>
      </properties>
      <features>
        <feature name="backup-content">1</feature>
        <feature name="backup-path">dom0-home/user</feature>
        <feature name="backup-size">28672</feature>
      </features>
      <tags/>
    </domain>
    <domain id="domain-5" class="AppVM">
      <properties>
        <property name="label">blue</property>
        <property name="name">work</property>
        <property name="qid">5</property>
        <property name="template">debian-12-xfce</property>
        <property name="netvm"></property>
      </properties>
      <features>
        <feature name="backup-content">1</feature>
        <feature name="backup-path">vm5/</feature>
        <feature name="backup-size">3162112</feature>
      </features>
      <tags>
        <tag name="created-by-dom0"/>
      </tags>
      <volume-config>
        <volume name="private" pool="varlibqubes" rw="True" save_on_stop="True" size="67108864" vid="appvms/work/private"/>
      </volume-config>
    </domain>
  </domains>
</qubes>
`,
    );
  });

  it("escapes markup in values", () => {
    const out = buildQubesXml(model).toString("utf8");
    expect(out).toContain(`<feature name="note">&lt;&amp;&gt;"'</feature>`);
    expect(out).toContain(`<feature name="ws">a&#13;\nb\tc&#13;d&#8232;e  </feature>`);
  });

  it("round trips through the reader", () => {
    const p = parseQubesXml(buildQubesXml(model));
    expect(p.domains.map((d) => d.name)).toEqual(["dom0", "work", "vault.x_1"]);
    expect({ ...p.properties }).toEqual({ default_template: "debian-12-xfce" });
    expect(p.labels.get("label-8")).toBe("black");

    const dom0 = domain(p, "dom0");
    expect([dom0.klass, dom0.label, dom0.included, dom0.backupPath, dom0.backupSize]).toEqual([
      "AdminVM",
      "black",
      true,
      "dom0-home/user",
      28672,
    ]);

    const w = domain(p, "work");
    expect(w.klass).toBe("AppVM");
    expect(w.label).toBe("blue");
    expect(w.template).toBe("debian-12-xfce");
    expect(w.included).toBe(true);
    expect(w.backupPath).toBe("vm5/");
    expect(w.backupSize).toBe(3162112);
    expect({ ...w.properties }).toEqual({ netvm: null, memory: "600" });
    expect({ ...w.features }).toEqual({ "service.fixture": "1", note: TRICKY, ws: WHITESPACE, off: "" });
    expect(w.tags).toEqual(["created-by-dom0", "fixture"]);
    expect(w.volumes).toEqual([{ name: "private", saveOnStop: true, size: 67108864 }]);

    const v = domain(p, "vault.x_1");
    expect(v.klass).toBe("StandaloneVM");
    expect(v.label).toBe("black"); // given by id, written as the name
    expect(v.template).toBeUndefined();
    expect({ ...v.properties }).toEqual({ netvm: null });
    expect(v.backupPath).toBe("vm12/");
    expect(v.backupSize).toBe(0);
    expect(v.volumes).toEqual([
      { name: "root", saveOnStop: true, size: 10737418240 },
      { name: "private", saveOnStop: true, size: 2147483648 },
    ]);
  });

  it("always writes the AdminVM, with empty backup-content when dom0 is not backed up", () => {
    const xml = buildQubesXml({ qubes: [vault] });
    expect(xml.toString("utf8")).toContain(`<feature name="backup-content"></feature>`);
    expect(xml.toString("utf8")).toContain(`<properties/>`);
    const p = parseQubesXml(xml);
    const dom0 = domain(p, "dom0");
    expect(dom0.klass).toBe("AdminVM");
    expect(dom0.included).toBe(false);
    expect(dom0.backupPath).toBeUndefined();
    expect({ ...p.properties }).toEqual({});
  });

  it("does not invent templates the model does not contain", () => {
    const p = parseQubesXml(buildQubesXml({ qubes: [work] }));
    expect(p.domains.map((d) => d.name)).toEqual(["dom0", "work"]);
  });

  it("omits netvm when undefined", () => {
    const p = parseQubesXml(buildQubesXml({ qubes: [{ ...vault, netvm: undefined }] }));
    expect("netvm" in domain(p, "vault.x_1").properties).toBe(false);
    const q = parseQubesXml(buildQubesXml({ qubes: [{ ...vault, netvm: "sys-firewall" }] }));
    expect(domain(q, "vault.x_1").properties["netvm"]).toBe("sys-firewall");
  });
});

describe("buildQubesXml: model errors", () => {
  const usage = expect.objectContaining({ code: "ERR_USAGE" });
  const internal = expect.objectContaining({ code: "ERR_INTERNAL" });
  const build =
    (q: Partial<BackupQube>, rest: Partial<QubesXmlModel> = {}) =>
    () =>
      buildQubesXml({ qubes: [{ ...work, ...q }], ...rest });

  it("refuses names Qubes refuses, with ERR_USAGE", () => {
    expect(build({ name: "1abc" })).toThrow(usage);
    expect(build({ name: "a".repeat(32) })).toThrow(usage);
    expect(build({ name: "dom0" })).toThrow(usage); // collides with the AdminVM
    expect(build({ template: "bad name" })).toThrow(usage);
    expect(build({ netvm: "default" })).toThrow(usage);
    expect(build({}, { defaultTemplate: "none" })).toThrow(usage);
  });

  it("refuses duplicate names and qids", () => {
    expect(() => buildQubesXml({ qubes: [work, { ...work, qid: 6, backupPath: "vm6/" }] })).toThrow(usage);
    expect(() => buildQubesXml({ qubes: [work, { ...work, name: "other" }] })).toThrow(internal);
  });

  it("refuses inconsistent paths, sizes and volumes", () => {
    expect(build({ backupPath: "vm6/" })).toThrow(internal);
    expect(build({ backupSize: -1 })).toThrow(internal);
    expect(build({ backupSize: 1.5 })).toThrow(internal);
    expect(build({ volumes: [{ name: "../x", size: 1 }] })).toThrow(internal);
    expect(
      build({
        volumes: [
          { name: "root", size: 1 },
          { name: "root", size: 1 },
        ],
      }),
    ).toThrow(internal);
    expect(build({}, { dom0: { user: "../root", backupSize: 0 } })).toThrow(usage);
    expect(build({}, { dom0: { user: "user", backupSize: NaN } })).toThrow(internal);
  });

  it("refuses unknown labels, misplaced templates and writer-owned keys", () => {
    expect(build({ label: "pink" })).toThrow(usage);
    expect(build({ template: undefined })).toThrow(usage);
    expect(build({ klass: "TemplateVM" })).toThrow(usage);
    expect(build({ properties: { qid: "7" } })).toThrow(usage);
    expect(build({ properties: { "bad name": "x" } })).toThrow(usage);
    expect(build({ features: { "backup-path": "vm1/" } })).toThrow(usage);
    expect(build({ tags: ["a", "a"] })).toThrow(usage);
  });

  it("refuses characters xml cannot carry", () => {
    expect(build({ features: { x: "a\u0000b" } })).toThrow(usage);
    expect(build({ properties: { x: "\ud800" } })).toThrow(usage);
  });
});

/**
 * Interop: the reference reader uses lxml; lxml is not installed here, so read our output with
 * Python's expat-based ElementTree and the same find/findall calls REF-R makes (spec §6.2).
 */
describe("buildQubesXml: read by Python ElementTree the way REF-R reads it", () => {
  const python = spawnSync("python3", ["--version"]).status === 0;
  it.skipIf(!python)("gives the same values", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "qb-"));
    try {
      const xmlPath = path.join(dir, "qubes.xml");
      fs.writeFileSync(xmlPath, buildQubesXml(model));
      const script = `
import json, sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
labels = {}
for n in root.find('./labels').findall('label'):
    labels[n.get('id')] = n.text
    labels[n.text] = n.text
glob = {n.get('name'): n.text for n in root.find('./properties').findall('property')}
doms = []
for el in root.findall('./domains/domain'):
    props = {n.get('name'): n.text for n in el.findall('./properties/property')}
    feats = {n.get('name'): (False if n.text is None else n.text) for n in el.findall('./features/feature')}
    name = 'dom0' if el.get('class') == 'AdminVM' else props.pop('name')
    label = labels[props.pop('label')]
    template = props.pop('template', None)
    props.pop('qid', None)
    path = size = None
    if feats.pop('backup-content', False):
        path = feats.pop('backup-path', None)
        size = feats.pop('backup-size', 0)
    tags = [n.get('name') for n in el.findall('./tags/tag')]
    doms.append(dict(klass=el.get('class'), name=name, label=label, template=template,
                     props=props, feats=feats, tags=tags, path=path, size=size))
print(json.dumps(dict(glob=glob, doms=doms)))
`;
      const r = spawnSync("python3", ["-c", script, xmlPath], { encoding: "utf8" });
      expect(r.stderr).toBe("");
      expect(r.status).toBe(0);
      const got = JSON.parse(r.stdout) as unknown;
      expect(got).toEqual({
        glob: { default_template: "debian-12-xfce" },
        doms: [
          {
            klass: "AdminVM",
            name: "dom0",
            label: "black",
            template: null,
            props: {},
            feats: {},
            tags: [],
            path: "dom0-home/user",
            size: "28672",
          },
          {
            klass: "AppVM",
            name: "work",
            label: "blue",
            template: "debian-12-xfce",
            props: { netvm: null, memory: "600" },
            feats: { "service.fixture": "1", note: TRICKY, ws: WHITESPACE, off: false },
            tags: ["created-by-dom0", "fixture"],
            path: "vm5/",
            size: "3162112",
          },
          {
            klass: "StandaloneVM",
            name: "vault.x_1",
            label: "black",
            template: null,
            props: { netvm: null },
            feats: {},
            tags: [],
            path: "vm12/",
            size: "0",
          },
        ],
      });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
