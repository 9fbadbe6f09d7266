import { describe, expect, it } from "vitest";
import { validatePassphrase } from "./passphrase.js";

describe("validatePassphrase", () => {
  it.each([
    "a",
    "correct horse battery staple",
    "ünïcödé 日本 🔑",
    "with\\backslash and $dollar !bang",
    "x".repeat(1024),
  ])("accepts %j", (p) => expect(() => validatePassphrase(p)).not.toThrow());

  it.each([
    ["", /empty/],
    ["x".repeat(1025), /1025 bytes/],
    ["é".repeat(513), /1026 bytes/],
    ["tab\there", /control character/],
    ["new\nline", /control character/],
    ["nul\u0000", /control character/],
    ["del\u007f", /control character/],
    ["c1\u0085", /control character/],
    [" leading", /whitespace/],
    ["trailing ", /whitespace/],
    ["lone \ud800 surrogate", /UTF-8/],
    ["replacement \ufffd", /UTF-8/],
  ])("rejects %j", (p, why) => {
    expect(() => validatePassphrase(p)).toThrow(
      expect.objectContaining({ code: "ERR_PASSPHRASE_INVALID", message: expect.stringMatching(why) }),
    );
  });
});
