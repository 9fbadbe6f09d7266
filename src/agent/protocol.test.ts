import { describe, expect, it } from "vitest";
import {
  END_FRAME,
  GREETING,
  MAX_FRAME_BYTES,
  MAX_LINE_BYTES,
  ProtocolReader,
  errorLine,
  formatListEntry,
  formatPruneSpec,
  formatRequest,
  formatTrailer,
  frameHeader,
  isValidName,
  nameProblem,
  parseDuration,
  parseListEntry,
  parsePruneSpec,
  parseReply,
  parseRequest,
  parseTrailer,
  planPrune,
} from "./protocol.js";
import type { ChunkPuller } from "./protocol.js";

/** A puller over fixed chunks; `ended` false means it hangs after them (like a silent peer). */
function chunks(parts: Array<string | Uint8Array>, ended = true): ChunkPuller & { pulls: number } {
  const queue = parts.map((p) => (typeof p === "string" ? Buffer.from(p, "latin1") : Buffer.from(p)));
  const puller = {
    pulls: 0,
    next(): Promise<Uint8Array | null> {
      puller.pulls++;
      const c = queue.shift();
      if (c !== undefined) return Promise.resolve(c);
      return ended ? Promise.resolve(null) : new Promise<never>(() => undefined);
    },
  };
  return puller;
}

const reader = (p: ChunkPuller) => new ProtocolReader(p, "ERR_SOURCE", "test");
const bytewise = (b: Buffer) => [...b].map((x) => Uint8Array.of(x));

describe("names", () => {
  it("accepts one plain path component", () => {
    for (const n of ["a", "qubes-backup-2026-11-22T153000", "A.b_c-9", "x".repeat(255)]) {
      expect(isValidName(n)).toBe(true);
    }
  });
  it("refuses traversal, separators, hidden and temp names, and odd bytes", () => {
    for (const n of ["", "..", "../x", "a/b", "/abs", ".hidden", ".x.partial-1234", "a..b", "-x", "_x", "a b"]) {
      expect(nameProblem(n), n).toBeDefined();
    }
    expect(isValidName("x".repeat(256))).toBe(false);
    expect(isValidName("a\u0000b")).toBe(false);
    expect(isValidName("caf\u00e9")).toBe(false);
  });
});

describe("requests", () => {
  it("parses the five verbs", () => {
    expect(parseRequest("put b1")).toEqual({ ok: true, value: { op: "put", name: "b1" } });
    expect(parseRequest("get b1")).toEqual({ ok: true, value: { op: "get", name: "b1" } });
    expect(parseRequest("delete b1")).toEqual({ ok: true, value: { op: "delete", name: "b1" } });
    expect(parseRequest("list")).toEqual({ ok: true, value: { op: "list" } });
    expect(parseRequest("prune --keep-within 30d --keep-last 3")).toEqual({
      ok: true,
      value: { op: "prune", policy: { keepWithinMs: 30 * 86_400_000, keepLast: 3 } },
    });
  });

  it("a bad name is a refusal, a malformed request a protocol violation", () => {
    expect(parseRequest("put ../x")).toMatchObject({ ok: false, code: "ERR_NAME" });
    expect(parseRequest("get a/b")).toMatchObject({ ok: false, code: "ERR_NAME" });
    expect(parseRequest("get .hidden")).toMatchObject({ ok: false, code: "ERR_NAME" });
    for (const line of ["put", "put a b", "list x", "PUT a", "rm a", "put  a", "", "get a "]) {
      expect(parseRequest(line), line).toMatchObject({ ok: false, code: "ERR_PROTOCOL" });
    }
  });

  it("round-trips through formatRequest and refuses to format a bad name", () => {
    expect(formatRequest({ op: "put", name: "b1" })).toBe("put b1\n");
    expect(formatRequest({ op: "list" })).toBe("list\n");
    const prune = formatRequest({ op: "prune", policy: { keepWithinMs: 12 * 3_600_000, keepLast: 2 } });
    expect(prune).toBe("prune --keep-within 43200s --keep-last 2\n");
    expect(parseRequest(prune.trim())).toMatchObject({
      ok: true,
      value: { policy: { keepWithinMs: 43_200_000, keepLast: 2 } },
    });
    expect(() => formatRequest({ op: "get", name: "../x" })).toThrow(expect.objectContaining({ code: "ERR_USAGE" }));
  });
});

describe("prune specs", () => {
  it("parses durations in s, m, h, d, w", () => {
    expect(parseDuration("90s")).toBe(90_000);
    expect(parseDuration("5m")).toBe(300_000);
    expect(parseDuration("12h")).toBe(43_200_000);
    expect(parseDuration("30d")).toBe(2_592_000_000);
    expect(parseDuration("2w")).toBe(1_209_600_000);
    for (const bad of ["0d", "d", "30", "30D", "1.5d", "-1d", "30dd", "1234567890d"]) {
      expect(parseDuration(bad), bad).toBeUndefined();
    }
  });

  it("needs at least one rule, each once, never deleting everything by omission", () => {
    expect(parsePruneSpec([])).toMatchObject({ ok: false, code: "ERR_PRUNE_SPEC" });
    expect(parsePruneSpec(["--keep-last"])).toMatchObject({ ok: false });
    expect(parsePruneSpec(["--keep-last", "2", "--keep-last", "3"])).toMatchObject({ ok: false });
    expect(parsePruneSpec(["--keep-within", "soon"])).toMatchObject({ ok: false });
    expect(parsePruneSpec(["--everything", "1"])).toMatchObject({ ok: false });
    expect(parsePruneSpec(["--keep-last", "0"])).toEqual({ ok: true, value: { keepLast: 0 } });
    expect(formatPruneSpec({ keepLast: 4 })).toBe("--keep-last 4");
  });
});

describe("replies, trailers and list entries", () => {
  it("parses ok and error replies", () => {
    expect(parseReply("ok")).toEqual({ ok: true, args: [] });
    expect(parseReply("ok 12 ab")).toEqual({ ok: true, args: ["12", "ab"] });
    expect(parseReply("error ERR_EXISTS b1 already exists")).toEqual({
      ok: false,
      code: "ERR_EXISTS",
      message: "b1 already exists",
    });
    expect(parseReply("okay")).toBeUndefined();
    expect(parseReply("error lowercase")).toBeUndefined();
  });

  it("error lines stay one printable line", () => {
    expect(errorLine("ERR_IO", "bad\nthing\u00e9")).toBe("error ERR_IO bad?thing?\n");
    expect(errorLine("ERR_IO", "x".repeat(5000)).length).toBeLessThan(MAX_LINE_BYTES);
  });

  it("formats and strictly parses trailers", () => {
    const sha = "ab".repeat(32);
    expect(formatTrailer(5, sha)).toBe(`end 5 ${sha}\n`);
    expect(parseTrailer(`end 5 ${sha}`)).toEqual({ size: 5, sha256: sha });
    expect(parseTrailer(`end 0 ${sha}`)).toEqual({ size: 0, sha256: sha });
    for (const bad of [`end 05 ${sha}`, `end 5 ${sha.toUpperCase()}`, `end 5 ${sha.slice(2)}`, `end -5 ${sha}`]) {
      expect(parseTrailer(bad), bad).toBeUndefined();
    }
    expect(parseTrailer(`end 99999999999999999 ${sha}`)).toBeUndefined();
  });

  it("round-trips list entries", () => {
    const entry = { name: "b1", size: 1234, mtime: new Date("2026-11-22T15:30:00.123Z") };
    const line = formatListEntry(entry);
    expect(line).toBe("b1 1234 2026-11-22T15:30:00.123Z\n");
    expect(parseListEntry(line.trim())).toEqual(entry);
    expect(parseListEntry("../x 1 2026-11-22T15:30:00.123Z")).toBeUndefined();
    expect(parseListEntry("b1 1 yesterday")).toBeUndefined();
  });
});

describe("frames", () => {
  it("encodes the length big-endian in four bytes", () => {
    expect([...frameHeader(258)]).toEqual([0, 0, 1, 2]);
    expect([...frameHeader(MAX_FRAME_BYTES)]).toEqual([0, 0x40, 0, 0]);
    expect([...END_FRAME]).toEqual([0, 0, 0, 0]);
    expect(() => frameHeader(MAX_FRAME_BYTES + 1)).toThrow(expect.objectContaining({ code: "ERR_INTERNAL" }));
  });
});

describe("ProtocolReader", () => {
  it("reads lines and frames split at every byte", async () => {
    const wire = Buffer.concat([
      Buffer.from(`${GREETING}\nok ready\n`),
      frameHeader(3),
      Buffer.from("abc"),
      frameHeader(1),
      Buffer.from("d"),
      END_FRAME,
      Buffer.from("end 4 x\n"),
    ]);
    const r = reader(chunks(bytewise(wire)));
    expect(await r.readLine()).toBe(GREETING);
    expect(await r.readLine()).toBe("ok ready");
    expect((await r.readFrame())!.toString()).toBe("abc");
    expect((await r.readFrame())!.toString()).toBe("d");
    expect(await r.readFrame()).toBeNull();
    expect(await r.readLine()).toBe("end 4 x");
    expect(await r.readLine()).toBeNull();
    expect(await r.atEnd()).toBe(true);
  });

  it("hands out a frame spread over many chunks as one buffer", async () => {
    const payload = Buffer.alloc(300_000, 7);
    const wire = Buffer.concat([frameHeader(payload.length), payload]);
    const parts: Buffer[] = [];
    for (let i = 0; i < wire.length; i += 65_536) parts.push(wire.subarray(i, i + 65_536));
    const frame = await reader(chunks(parts)).readFrame();
    expect(frame!.equals(payload)).toBe(true);
  });

  it("refuses an oversized frame from its header alone, before waiting for or allocating its bytes", async () => {
    const header = Buffer.alloc(4);
    header.writeUInt32BE(MAX_FRAME_BYTES + 1);
    const source = chunks([header], false); // never ends: the reader must not wait for the data
    await expect(reader(source).readFrame()).rejects.toThrow(/frame of 4194305 bytes exceeds 4194304/);
    const huge = Buffer.from([0xff, 0xff, 0xff, 0xff]);
    await expect(reader(chunks([huge], false)).readFrame()).rejects.toMatchObject({ code: "ERR_SOURCE" });
  });

  it("a stream cut anywhere before the end frame is an error, even on a frame boundary", async () => {
    const whole = Buffer.concat([frameHeader(3), Buffer.from("abc")]);
    const r = reader(chunks([whole]));
    expect((await r.readFrame())!.toString()).toBe("abc");
    await expect(r.readFrame()).rejects.toThrow(/ended before the end frame/);
    await expect(reader(chunks([whole.subarray(0, 5)])).readFrame()).rejects.toThrow(/middle of a frame/);
    await expect(reader(chunks([whole.subarray(0, 2)])).readFrame()).rejects.toThrow(/middle of a frame header/);
  });

  it("bounds lines and keeps them printable ASCII", async () => {
    const long = "x".repeat(MAX_LINE_BYTES);
    await expect(reader(chunks([long], false)).readLine()).rejects.toThrow(/longer than 1024 bytes/);
    expect(await reader(chunks(["y".repeat(MAX_LINE_BYTES - 1) + "\n"])).readLine()).toHaveLength(1023);
    await expect(reader(chunks(["a\tb\n"])).readLine()).rejects.toThrow(/not printable ASCII/);
    await expect(reader(chunks([Buffer.from([0xc3, 0xa9, 0x0a])])).readLine()).rejects.toThrow(/printable/);
    await expect(reader(chunks(["no newline"])).readLine()).rejects.toThrow(/middle of a line/);
    await expect(reader(chunks([])).requireLine("the reply")).rejects.toThrow(/ended before the reply/);
  });
});

describe("planPrune", () => {
  const day = 86_400_000;
  const now = 100 * day;
  const entries = [10, 20, 30, 40, 50, 95, 99].map((d) => ({ name: `b${d}`, mtimeMs: d * day }));

  it("keep-last keeps the N newest", () => {
    expect(planPrune(entries, { keepLast: 2 }, now)).toEqual(["b10", "b20", "b30", "b40", "b50"]);
    expect(planPrune(entries, { keepLast: 0 }, now)).toHaveLength(7);
  });

  it("keep-within keeps everything young enough, however many there are", () => {
    expect(planPrune(entries, { keepWithinMs: 60 * day }, now)).toEqual(["b10", "b20", "b30"]);
    const flood = Array.from({ length: 50 }, (_, i) => ({ name: `junk${i}`, mtimeMs: now - i * 1000 }));
    expect(planPrune([...entries, ...flood], { keepWithinMs: 60 * day }, now)).toEqual(["b10", "b20", "b30"]);
    // the same flood pushes every good backup out of a keep-last window
    expect(planPrune([...entries, ...flood], { keepLast: 10 }, now)).toEqual(
      expect.arrayContaining(entries.map((e) => e.name)),
    );
  });

  it("both rules together keep the union; files from the future are kept", () => {
    expect(planPrune(entries, { keepWithinMs: 10 * day, keepLast: 4 }, now)).toEqual(["b10", "b20", "b30"]);
    expect(planPrune([{ name: "f", mtimeMs: now + day }], { keepWithinMs: day }, now)).toEqual([]);
  });
});
