import { describe, expect, it } from "vitest";
import {
  chunkMemberName,
  chunkPassphraseString,
  headerPassphraseString,
  newBackupId,
  parseChunkMemberName,
  parseChunkName,
} from "./names.js";
import { isValidBackupId } from "../codec/backup-header/index.js";

describe("v4 names", () => {
  it("numbers chunks like printf %03d, growing past 999", () => {
    expect(chunkMemberName("vm5/private.img", 0)).toBe("vm5/private.img.000.enc");
    expect(chunkMemberName("vm5/private.img", 42)).toBe("vm5/private.img.042.enc");
    expect(chunkMemberName("vm5/private.img", 999)).toBe("vm5/private.img.999.enc");
    expect(chunkMemberName("vm5/private.img", 1000)).toBe("vm5/private.img.1000.enc");
  });

  it("reads chunk member names back, refusing anything printf %03d would not have written", () => {
    for (const index of [0, 7, 999, 1000, 123456]) {
      expect(parseChunkMemberName(chunkMemberName("vm5/private.img", index))).toEqual({
        base: "vm5/private.img",
        index,
      });
    }
    for (const bad of [
      "vm5/private.img.00.enc",
      "vm5/private.img.0001.enc",
      "vm5/private.img.000",
      "x.abc.enc",
      ".000.enc",
    ]) {
      expect(() => parseChunkMemberName(bad)).toThrow(expect.objectContaining({ code: "ERR_TAR_MALFORMED" }));
    }
  });

  it("reads v3 chunk names (no suffix) by the same rules, a template's `vm1/..000` included", () => {
    expect(parseChunkName("vm5/private.img.003", "", "v3")).toEqual({ base: "vm5/private.img", index: 3 });
    expect(parseChunkName("vm1/..000", "", "v3")).toEqual({ base: "vm1/.", index: 0 });
    // a number too large to be exact is malformed input, not an internal error
    for (const bad of ["vm5/private.img.99999999999999999999", "vm5/private.img.03", "vm5/private.img.000.enc"]) {
      expect(() => parseChunkName(bad, "", "v3")).toThrow(expect.objectContaining({ code: "ERR_TAR_MALFORMED" }));
    }
  });

  it("binds backup id, file, chunk number and passphrase (spec 4.6 example)", () => {
    expect(chunkPassphraseString("20161020T123455-1234", "vm5/private.img", 3, "P").toString()).toBe(
      "20161020T123455-1234!vm5/private.img.003!P",
    );
    expect(headerPassphraseString("pässword").toString("utf8")).toBe("backup-header!pässword");
  });

  it("refuses a passphrase string the stock scrypt CLI would truncate", () => {
    expect(() => chunkPassphraseString("x", "vm1/a.img", 0, "p".repeat(2047))).toThrow(
      expect.objectContaining({ code: "ERR_PASSPHRASE_INVALID" }),
    );
  });

  it("makes fresh, valid, distinct backup ids in the reference form", () => {
    const id = newBackupId(new Date(2026, 10, 22, 15, 4, 5));
    expect(id).toMatch(/^20261122T150405-\d{9}$/);
    expect(isValidBackupId(id)).toBe(true);
    expect(new Set(Array.from({ length: 50 }, () => newBackupId())).size).toBeGreaterThan(45);
  });
});
