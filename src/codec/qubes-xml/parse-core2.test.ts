import { describe, it, expect } from "vitest";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { MAX_QUBES_XML_BYTES, parseQubesXmlCore2 } from "./index.js";
import type { ParsedDomain, ParsedQubesXml } from "./index.js";

const here = path.dirname(fileURLToPath(import.meta.url));
/** The R3 qubes.xml stored in the golden v3 backup (test/fixtures/golden/v3/qubes.xml.plain). */
const golden = fs.readFileSync(path.join(here, "testdata", "golden-v3-qubes.xml"));

function expectReject(bytes: Uint8Array, reason: RegExp): void {
  let err: unknown;
  try {
    parseQubesXmlCore2(bytes);
  } catch (e) {
    err = e;
  }
  expect(err).toMatchObject({ code: "ERR_QUBES_XML" });
  const message = (err as Error).message;
  expect(message).toMatch(reason);
  expect(message).not.toMatch(/\n/);
}

function domain(doc: ParsedQubesXml, name: string): ParsedDomain {
  const d = doc.domains.find((x) => x.name === name);
  if (d === undefined) throw new Error(`no domain ${name}`);
  return d;
}

const TEMPLATE = `<QubesTemplateVm name="fedora-23" qid="1" label="black" template_qid="none"/>`;
const NETVM = `<QubesNetVm name="sys-net" qid="2" label="red" template_qid="1"/>`;
const DOM0 = `<QubesAdminVm name="dom0" qid="0" label="black" template_qid="none"/>`;

/** A collection with dom0, a template (qid 1) and a netvm (qid 2) plus `body`. */
function doc(body: string, rootAttrs = `default_template="1" default_netvm="2"`, base = DOM0 + TEMPLATE + NETVM) {
  return Buffer.from(`<QubesVmCollection ${rootAttrs}>\n${base}${body}\n</QubesVmCollection>\n`, "utf8");
}

function appVm(attrs: string, name = "work", qid = 5): string {
  return `<QubesAppVm name="${name}" qid="${qid}" label="blue" template_qid="1" ${attrs}/>`;
}

describe("parseQubesXmlCore2: golden R3 file", () => {
  const parsed = parseQubesXmlCore2(golden);

  it("converts every domain the way REF-R does, in document order, then the synthetic one", () => {
    const summary = parsed.domains.map((d) => ({
      name: d.name,
      klass: d.klass,
      label: d.label,
      template: d.template,
      netvm: "netvm" in d.properties ? d.properties["netvm"] : "(default)",
      included: d.included,
    }));
    expect(summary).toEqual([
      { name: "dom0", klass: "AdminVM", label: "black", template: undefined, netvm: "(default)", included: true },
      {
        name: "fedora-23",
        klass: "TemplateVM",
        label: "black",
        template: undefined,
        netvm: "(default)",
        included: false,
      },
      { name: "sys-net", klass: "AppVM", label: "red", template: "fedora-23", netvm: null, included: false },
      { name: "work", klass: "AppVM", label: "blue", template: "fedora-23", netvm: "(default)", included: true },
      { name: "disp-no-netvm", klass: "AppVM", label: "red", template: undefined, netvm: null, included: false },
    ]);
  });

  it("dom0 holds the home as dom0-home/user, work as vm5/ (so vm5/private.img is a chunk base)", () => {
    expect(domain(parsed, "dom0")).toMatchObject({ backupPath: "dom0-home/user", backupSize: 538 });
    const work = domain(parsed, "work");
    expect(work).toMatchObject({ backupPath: "vm5/", backupSize: 3151884, volumes: [], tags: [], devices: [] });
    expect({ ...work.properties }).toEqual({ memory: "600" }); // defaults dropped, netvm default
    expect({ ...work.features }).toEqual({ "service.meminfo-writer": "1" });
    expect(domain(parsed, "fedora-23").backupPath).toBeUndefined();
  });

  it("sys-net: a NetVM provides network, has no netvm, and gets a disp-no-netvm default_dispvm", () => {
    const net = domain(parsed, "sys-net");
    expect({ ...net.properties }).toEqual({
      memory: "300",
      provides_network: "True",
      netvm: null,
      default_dispvm: "disp-no-netvm",
    });
    expect({ ...net.features }).toEqual({ "service.meminfo-writer": "" });
    expect({ ...domain(parsed, "disp-no-netvm").properties }).toEqual({ netvm: null, template_for_dispvms: "True" });
  });

  it("global qids become names; labels resolve by id and name", () => {
    expect({ ...parsed.properties }).toEqual({
      default_template: "fedora-23",
      default_netvm: "sys-net",
      updatevm: "sys-net",
      clockvm: "sys-net",
      default_kernel: "4.4.14-11",
    });
    expect(parsed.labels.get("label-6")).toBe("blue");
    expect(parsed.labels.get("purple")).toBe("purple");
  });
});

describe("parseQubesXmlCore2: conversion rules", () => {
  it("R2 (no QubesAdminVm): dom0 is synthesised first, black, without data; qid 0 resolves to it", () => {
    const parsed = parseQubesXmlCore2(
      doc(
        `<QubesAppVm name="x" qid="3" template_qid="1" uses_default_netvm="False" netvm_qid="0"/>`,
        `default_template="1"`,
        TEMPLATE,
      ),
    );
    expect(parsed.domains[0]).toMatchObject({ klass: "AdminVM", name: "dom0", label: "black", included: false });
    expect(domain(parsed, "x").properties["netvm"]).toBe("dom0");
    expect(domain(parsed, "x").label).toBe("red"); // missing label → REF-R's default
  });

  it("classes: templates, standalone (template_qid none), HVMs, ProxyVM", () => {
    const parsed = parseQubesXmlCore2(
      doc(
        `<QubesTemplateHVm name="win-tpl" qid="3" label="green" template_qid="none"/>` +
          `<QubesHVm name="win" qid="4" label="green" template_qid="3"/>` +
          `<QubesHVm name="win-sa" qid="6" label="green" template_qid="None"/>` +
          appVm("", "standalone", 7).replace('template_qid="1"', 'template_qid="none"') +
          `<QubesProxyVm name="sys-firewall" qid="8" label="green" template_qid="1"/>`,
      ),
    );
    const hvm = { virt_mode: "hvm", kernel: null };
    expect(domain(parsed, "win-tpl")).toMatchObject({ klass: "TemplateVM", properties: hvm });
    expect(domain(parsed, "win")).toMatchObject({ klass: "AppVM", template: "win-tpl", properties: hvm });
    expect(domain(parsed, "win").features["linux-stubdom"]).toBe("");
    expect(domain(parsed, "win-sa")).toMatchObject({ klass: "StandaloneVM", properties: hvm });
    expect(domain(parsed, "win-sa").template).toBeUndefined();
    expect(domain(parsed, "standalone").klass).toBe("StandaloneVM");
    const fw = domain(parsed, "sys-firewall");
    expect({ ...fw.properties }).toEqual({ provides_network: "True" }); // netvm: host default
  });

  it("netvm: default, a named qube, none, or missing qid (none)", () => {
    const parsed = parseQubesXmlCore2(
      doc(
        appVm(`uses_default_netvm="True" netvm_qid="1"`, "a", 3) +
          appVm(`uses_default_netvm="False" netvm_qid="2"`, "b", 4) +
          appVm(`uses_default_netvm="False" netvm_qid="none"`, "c", 5) +
          appVm(`uses_default_netvm="False"`, "d", 6) +
          appVm(`netvm_qid="2"`, "e", 7),
      ),
    );
    expect("netvm" in domain(parsed, "a").properties).toBe(false);
    expect(domain(parsed, "b").properties["netvm"]).toBe("sys-net");
    expect(domain(parsed, "c").properties["netvm"]).toBeNull();
    expect(domain(parsed, "d").properties["netvm"]).toBeNull();
    expect("netvm" in domain(parsed, "e").properties).toBe(false);
  });

  it("dispvm netvm: disp-<netvm> default_dispvm, synthesised once, an existing qube of that name reused", () => {
    const parsed = parseQubesXmlCore2(
      doc(
        appVm(`uses_default_dispvm_netvm="False" dispvm_netvm_qid="1"`, "a", 3) +
          appVm(`uses_default_dispvm_netvm="False" dispvm_netvm_qid="1"`, "b", 4) +
          appVm(`uses_default_netvm="False" netvm_qid="none"`, "c", 5) +
          appVm(`uses_default_dispvm_netvm="False" dispvm_netvm_qid="6"`, "d", 7) +
          appVm(``, "disp-x", 6) +
          appVm(`uses_default_dispvm_netvm="False" dispvm_netvm_qid="2"`, "f", 8),
      ),
    );
    expect(domain(parsed, "a").properties["default_dispvm"]).toBe("disp-fedora-23");
    expect(domain(parsed, "b").properties["default_dispvm"]).toBe("disp-fedora-23");
    expect(domain(parsed, "c").properties["default_dispvm"]).toBe("disp-no-netvm");
    expect(domain(parsed, "d").properties["default_dispvm"]).toBe("disp-disp-x");
    expect("default_dispvm" in domain(parsed, "f").properties).toBe(false); // = the global default
    // in document order of the first qube asking (sys-net, in the base document, asks for disp-no-netvm)
    expect(parsed.domains.map((d) => d.name).slice(-3)).toEqual(["disp-no-netvm", "disp-fedora-23", "disp-disp-x"]);
    expect(domain(parsed, "disp-fedora-23").properties["netvm"]).toBe("fedora-23");
    expect(parsed.domains.filter((d) => d.name === "disp-no-netvm")).toHaveLength(1);
  });

  it("no global default_netvm: REF-R's dispvm step fails for every qube, so nothing is synthesised", () => {
    const parsed = parseQubesXmlCore2(doc(appVm(`uses_default_dispvm_netvm="False"`), `default_template="1"`));
    expect(parsed.domains.map((d) => d.name)).toEqual(["dom0", "fedora-23", "sys-net", "work"]);
  });

  it("simple attributes are kept only when they differ from R3's defaults; kernel per uses_default_*", () => {
    const parsed = parseQubesXmlCore2(
      doc(
        appVm(
          `vcpus="2" memory="400" maxmem="8000" qrexec_timeout="120" include_in_backups="True" debug="True" ` +
            `default_user="user" mac="00:16:3e:5e:6c:05" autostart="False" installed_by_rpm="True" ` +
            `kernel="4.4.14-11" uses_default_kernel="False" kernelopts="none" uses_default_kernelopts="false"`,
        ) +
          appVm(
            `kernel="4.4.14-11" uses_default_kernel="True" kernelopts="nopat" uses_default_kernelopts="TRUE"`,
            "b",
            6,
          ),
      ),
    );
    expect({ ...domain(parsed, "work").properties }).toEqual({
      maxmem: "8000",
      qrexec_timeout: "120",
      debug: "True",
      mac: "00:16:3e:5e:6c:05",
      kernel: "4.4.14-11",
      kernelopts: null,
    });
    expect({ ...domain(parsed, "b").properties }).toEqual({});
  });

  it("services become features (renamed where R4 renamed them); internal; pcidevs become dom0 PCI devices", () => {
    const parsed = parseQubesXmlCore2(
      doc(
        appVm(
          `internal="True" services="{'ntpd': True, &quot;qubes-update-check&quot;: False, 'meminfo-writer': True, ` +
            `'custom': 'x\\'y', 'n': 3,}" pcidevs="['02:00.0', &quot;03:00.1&quot;, '02:00.0']" pci_strictreset="False"`,
        ),
      ),
    );
    const work = domain(parsed, "work");
    expect({ ...work.features }).toEqual({
      internal: "1",
      "service.ntpd": "1",
      "check-updates": "",
      "service.meminfo-writer": "1",
      custom: "x'y",
      n: "3",
    });
    expect(work.devices).toEqual([
      { class: "pci", backendDomain: "dom0", id: "02_00.0", required: true, options: {} },
      { class: "pci", backendDomain: "dom0", id: "03_00.1", required: true, options: {} },
    ]);
    expect(parseQubesXmlCore2(doc(appVm(`services="{}" pcidevs="[]"`))).domains[3]!.devices).toEqual([]);
  });

  it("backup: only backup_content exactly True with a backup_path; unencrypted paths get a slash too", () => {
    const parsed = parseQubesXmlCore2(
      doc(
        appVm(`backup_content="True" backup_path="appvms/a" backup_size="10"`, "a", 3) +
          appVm(`backup_content="True" backup_path="vm4/"`, "b", 4) +
          appVm(`backup_content="true" backup_path="vm5"`, "c", 5) +
          appVm(`backup_content="True"`, "d", 6) +
          appVm(`backup_content="False" backup_path="vm7" backup_size="99"`, "e", 7) +
          `<QubesTemplateVm name="tpl" qid="8" backup_content="True" backup_path="vm-templates/tpl" template_qid="none"/>` +
          `<QubesProxyVm name="fw" qid="9" backup_content="True" backup_path="servicevms/fw" template_qid="1"/>`,
      ),
    );
    expect(domain(parsed, "a")).toMatchObject({ included: true, backupPath: "appvms/a/", backupSize: 10 });
    expect(domain(parsed, "b")).toMatchObject({ included: true, backupPath: "vm4/", backupSize: 0 });
    for (const name of ["c", "d", "e"]) {
      expect(domain(parsed, name)).toMatchObject({ included: false, backupSize: 0 });
      expect(domain(parsed, name).backupPath).toBeUndefined();
    }
    expect(domain(parsed, "tpl").backupPath).toBe("vm-templates/tpl/");
    expect(domain(parsed, "fw").backupPath).toBe("servicevms/fw/");
  });

  it("none globals, unknown elements ignored, BOM accepted", () => {
    const parsed = parseQubesXmlCore2(
      Buffer.concat([
        Buffer.from([0xef, 0xbb, 0xbf]),
        doc(
          `<QubesDisposableVm name="disp1" qid="9" template_qid="1"/><Other/>`,
          `default_template="none" default_netvm="None" updatevm="None" clockvm="2" default_kernel=""`,
        ),
      ]),
    );
    expect({ ...parsed.properties }).toEqual({
      default_template: null,
      default_netvm: null,
      updatevm: null,
      clockvm: "sys-net",
      default_kernel: null,
    });
    expect(parsed.domains.map((d) => d.name)).toEqual(["dom0", "fedora-23", "sys-net"]);
    // sys-net's netvm (none) equals the global default (none): no synthetic domain
    expect("default_dispvm" in domain(parsed, "sys-net").properties).toBe(false);
  });
});

describe("parseQubesXmlCore2: rejections (ERR_QUBES_XML)", () => {
  it("rejects a core3 document, other roots and malformed xml", () => {
    expectReject(Buffer.from(`<qubes><labels/><properties/><domains/></qubes>`), /root element is "qubes"/);
    expectReject(Buffer.from(`<QubesVmCollection default_template="1">`), /malformed xml/);
    expectReject(Buffer.from(``), /malformed xml|no root/);
    expectReject(Buffer.from(`<x:QubesVmCollection xmlns:x="urn:x"/>`), /root element/);
  });

  it("rejects DTDs and entities before expanding anything, bad encodings and oversize input", () => {
    expectReject(
      Buffer.from(`<!DOCTYPE q [<!ENTITY a "aaaa">]><QubesVmCollection default_template="none" x="&a;"/>`),
      /document type/,
    );
    expectReject(Buffer.from([0x3c, 0x51, 0xff, 0x3e]), /utf-8/);
    expectReject(Buffer.from(`<?xml version="1.0" encoding="ISO-8859-1"?><QubesVmCollection/>`), /encoding/);
    expectReject(Buffer.from(`<QubesVmCollection default_template="none" a="\u0001"/>`), /character xml/);
    expectReject(new Uint8Array(MAX_QUBES_XML_BYTES + 1), /more than the limit/);
  });

  it("rejects a missing or dangling default_template and dangling global qids", () => {
    expectReject(doc("", `default_netvm="2"`), /missing default_template/);
    expectReject(doc("", `default_template="7"`), /global default_template "7" is not the qid of any domain/);
    expectReject(doc("", `default_template="1" updatevm="x"`), /updatevm "x" is not a non-negative decimal/);
    expectReject(doc("", `default_template="1" clockvm="42"`), /clockvm "42" is not the qid/);
  });

  it("rejects missing names and qids, duplicate qids and names, and misplaced qid 0", () => {
    expectReject(doc(`<QubesAppVm qid="5" template_qid="1"/>`), /missing name attribute/);
    expectReject(doc(`<QubesAppVm name="w" template_qid="1"/>`), /missing qid attribute/);
    expectReject(doc(`<QubesAppVm name="w" qid="0x5" template_qid="1"/>`), /qid "0x5" is not/);
    expectReject(doc(appVm("", "w", 2)), /two domains have qid 2/);
    expectReject(doc(appVm("", "sys-net", 6)), /duplicate domain name "sys-net"/);
    expectReject(doc(appVm("", "dom0", 6)), /duplicate domain name "dom0"/);
    expectReject(doc(appVm("", "w", 0), `default_template="1"`, TEMPLATE), /qid 0 is dom0's/);
    expectReject(doc(DOM0.replace('qid="0"', 'qid="3"'), `default_template="1"`, TEMPLATE), /qid 0 is dom0's/);
  });

  it("rejects names Qubes forbids and labels that are not qubes labels", () => {
    expectReject(doc(appVm("", "../evil", 6)), /domain name "..\/evil"/);
    expectReject(doc(appVm("", "x".repeat(32), 6)), /at most 31/);
    expectReject(doc(appVm("").replace('label="blue"', 'label="pink"')), /label "pink" is not a qubes label/);
  });

  it("rejects a qube without template_qid or with a dangling one, and dangling netvm qids", () => {
    expectReject(doc(`<QubesAppVm name="w" qid="5"/>`), /"w": missing template_qid/);
    expectReject(doc(appVm("").replace('template_qid="1"', 'template_qid="9"')), /template_qid "9" is not the qid/);
    expectReject(doc(appVm(`uses_default_netvm="False" netvm_qid="9"`)), /netvm_qid "9" is not the qid/);
    expectReject(
      doc(appVm(`uses_default_dispvm_netvm="False" dispvm_netvm_qid="9"`)),
      /dispvm_netvm_qid "9" is not the qid/,
    );
  });

  it("rejects unsafe or foreign backup paths, shared paths and bad sizes", () => {
    for (const p of [
      "../x",
      "/vm5",
      "vm5/private",
      "vm",
      "appvms/../x",
      "appvms/",
      "home/user",
      "vm5//",
      "dom0-home/user",
    ]) {
      expectReject(doc(appVm(`backup_content="True" backup_path="${p}"`)), /backup_path .* is not vm<qid>/);
    }
    for (const p of ["vm0", "dom0-home/", "dom0-home/../root", "dom0-home/Us er"]) {
      expectReject(
        doc("", `default_template="1"`, DOM0.replace("/>", ` backup_content="True" backup_path="${p}"/>`) + TEMPLATE),
        /is not dom0-home\/<user>/,
      );
    }
    expectReject(
      doc(appVm(`backup_content="True" backup_path="vm5"`) + appVm(`backup_content="True" backup_path="vm5/"`, "b", 6)),
      /share backup_path "vm5\/"/,
    );
    expectReject(doc(appVm(`backup_content="True" backup_path="vm5" backup_size="-1"`)), /backup_size "-1"/);
    expectReject(doc(appVm(`backup_content="True" backup_path="vm5" backup_size="1e9"`)), /backup_size "1e9"/);
  });

  it("rejects services and pcidevs that are not the simple literals R3 wrote", () => {
    for (const s of [
      "{'a': True",
      "{'a' True}",
      "{a: True}",
      "{'a': maybe}",
      "{'a': True} x",
      "{'a\\n': True}",
      "['a']",
      "{'a': __import__('os')}",
    ]) {
      expectReject(doc(appVm(`services="${s.replace(/'/g, "&apos;")}"`)), /services: expected/);
    }
    for (const s of ["'02:00.0'", "['02:00.0'", "[02:00.0]", "['']", "['a',, 'b']"]) {
      expectReject(doc(appVm(`pcidevs="${s.replace(/'/g, "&apos;")}"`)), /pcidevs: (expected|empty device)/);
    }
    expectReject(doc(appVm(`services="{'${"a".repeat(70_000)}': True}"`)), /services: longer than/);
  });
});
