import { describe, expect, it } from "vitest";
import { ProgressTracker, formatDuration, fraction } from "./progress.js";

/** A tracker on a clock the test moves. */
function tracked(items: Array<{ name: string; total: number }>) {
  let now = 1_000_000;
  const tracker = new ProgressTracker(items, () => now);
  return { tracker, tick: (ms: number) => (now += ms) };
}

describe("ProgressTracker", () => {
  it("measures the rate over recent time and the ETA from what is left", () => {
    const { tracker, tick } = tracked([
      { name: "work", total: 1000 },
      { name: "docs", total: 1000 },
    ]);
    tracker.start("work");
    expect(tracker.snapshot()).toMatchObject({ done: 0, total: 2000, rate: 0, etaSeconds: undefined });
    for (let i = 0; i < 4; i++) {
      tick(250);
      tracker.advance(25); // 100 bytes per second
    }
    const s = tracker.snapshot();
    expect(s.rate).toBeCloseTo(100, 5);
    expect(s.etaSeconds).toBeCloseTo(19, 5);
    expect(s.current).toMatchObject({ name: "work", done: 100, total: 1000, state: "running" });
  });

  it("a finished item counts what it really took; a running one at least what it did", () => {
    const { tracker, tick } = tracked([
      { name: "work", total: 1000 },
      { name: "docs", total: 500 },
    ]);
    tracker.start("work");
    tracker.advance(1500); // more than estimated
    expect(tracker.total).toBe(2000);
    tick(2000);
    expect(tracker.finish("work")).toMatchObject({ done: 1500, state: "done", endedMs: 1_002_000 });
    tracker.start("docs");
    tracker.advance(100);
    tracker.finish("docs"); // less than estimated
    expect(tracker.snapshot()).toMatchObject({ done: 1600, total: 1600, current: undefined });
  });

  it("the rate follows a slowdown: old samples leave the window", () => {
    const { tracker, tick } = tracked([{ name: "work", total: 1e9 }]);
    tracker.start("work");
    for (let i = 0; i < 40; i++) {
      tick(250);
      tracker.advance(250_000); // 1 MB/s for 10 s
    }
    for (let i = 0; i < 80; i++) {
      tick(250);
      tracker.advance(2500); // then 10 kB/s for 20 s
    }
    expect(tracker.snapshot().rate).toBeLessThan(20_000);
  });
});

describe("formatting", () => {
  it("durations and fractions", () => {
    expect(formatDuration(0)).toBe("0:00");
    expect(formatDuration(42.4)).toBe("0:42");
    expect(formatDuration(725)).toBe("12:05");
    expect(formatDuration(10_930)).toBe("3:02:10");
    expect(fraction(5, 10)).toBe(0.5);
    expect(fraction(15, 10)).toBe(1);
    expect(fraction(0, 0)).toBe(1);
  });
});
