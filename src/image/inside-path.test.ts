import { describe, expect, it } from "vitest";
import { baseName, parseInsideSpec } from "./inside-path.js";

describe("parseInsideSpec", () => {
  it("normalises the path and keeps the qube", () => {
    expect(parseInsideSpec("work")).toEqual({ qube: "work", path: "" });
    expect(parseInsideSpec("work:/")).toEqual({ qube: "work", path: "" });
    expect(parseInsideSpec("work:/home//user/./Documents/")).toEqual({ qube: "work", path: "home/user/Documents" });
    expect(parseInsideSpec("work:home/user/a:b.txt")).toEqual({ qube: "work", path: "home/user/a:b.txt" });
    expect(baseName("home/user/a.txt")).toBe("a.txt");
    expect(baseName("")).toBe("");
  });

  it("refuses .., NUL and an empty qube", () => {
    for (const bad of ["work:../etc", "work:/home/../../x", ":home", "work:a\0b"]) {
      expect(() => parseInsideSpec(bad), bad).toThrow(expect.objectContaining({ code: "ERR_USAGE" }));
    }
  });
});
