import { describe, it, expect } from "vitest";
import {
  dom0UserOfBackupPath,
  isValidDom0User,
  isValidQubeBackupPath,
  isValidQubeName,
  validateQubeName,
} from "./index.js";

describe("qube names (Qubes' qubes_pure_is_valid_qube_name rules)", () => {
  it("accepts ordinary names, up to 31 characters", () => {
    for (const n of ["work", "sys-net", "debian-12-xfce", "a", "A_b.c-1", "x".repeat(31), "dom0"]) {
      expect(isValidQubeName(n)).toBe(true);
      expect(() => validateQubeName(n)).not.toThrow();
    }
  });

  it.each([
    ["", /empty/],
    ["x".repeat(32), /at most 31/],
    ["1work", /start with an ASCII letter/],
    [".work", /start with an ASCII letter/],
    ["wörk", /only ASCII letters/],
    ["a b", /only ASCII letters/],
    ["a/b", /only ASCII letters/],
    ["a+b", /only ASCII letters/],
    ["none", /reserved/],
    ["default", /reserved/],
    ["Domain-0", /reserved/],
    ["sys-net-dm", /-dm/],
  ])("refuses %j with ERR_USAGE naming the rule", (name, rule) => {
    expect(isValidQubeName(name)).toBe(false);
    expect(() => validateQubeName(name)).toThrow(
      expect.objectContaining({ code: "ERR_USAGE", message: expect.stringMatching(rule) }),
    );
  });
});

describe("dom0 user names and backup paths", () => {
  it("dom0 users: ^[a-z_][a-z0-9_-]*$, at most 32", () => {
    for (const u of ["user", "_x", "a-b_1", "u".repeat(32)]) expect(isValidDom0User(u)).toBe(true);
    for (const u of ["", "User", "1x", "a.b", "../x", "u".repeat(33), "a/b"]) expect(isValidDom0User(u)).toBe(false);
  });

  it("qube backup paths are vm<digits>/ only", () => {
    for (const p of ["vm5/", "vm12/", "vm0/"]) expect(isValidQubeBackupPath(p)).toBe(true);
    for (const p of ["vm5", "vm/", "vm5//", "../vm5/", "/vm5/", "vm5/x", "VM5/", "vm12345678901/"]) {
      expect(isValidQubeBackupPath(p)).toBe(false);
    }
  });

  it("dom0 home paths are dom0-home/<user> only", () => {
    expect(dom0UserOfBackupPath("dom0-home/user")).toBe("user");
    for (const p of ["dom0-home/", "dom0-home/user/", "dom0-home/../x", "/dom0-home/user", "dom0-home/a/b"]) {
      expect(dom0UserOfBackupPath(p)).toBeUndefined();
    }
  });
});
