import { describe, expect, it } from "vitest";
import { ConcurrencyLimit } from "./limit.js";

describe("ConcurrencyLimit", () => {
  it("never runs more than max tasks and starts them in order", async () => {
    const limit = new ConcurrencyLimit(2);
    let running = 0;
    let peak = 0;
    const started: number[] = [];
    const task = (i: number) =>
      limit.run(async () => {
        started.push(i);
        running++;
        peak = Math.max(peak, running);
        await new Promise((r) => setTimeout(r, 5));
        running--;
        return i;
      });
    expect(await Promise.all([0, 1, 2, 3, 4].map(task))).toEqual([0, 1, 2, 3, 4]);
    expect(peak).toBe(2);
    expect(started).toEqual([0, 1, 2, 3, 4]);
  });

  it("starts an urgent task before the ones already waiting", async () => {
    const limit = new ConcurrencyLimit(1);
    const started: string[] = [];
    const task = (name: string, urgent = false) =>
      limit.run(async () => {
        started.push(name);
        await new Promise((r) => setTimeout(r, 2));
      }, urgent);
    await Promise.all([task("running"), task("ahead 1"), task("ahead 2"), task("needed now", true)]);
    expect(started).toEqual(["running", "needed now", "ahead 1", "ahead 2"]);
  });

  it("frees the slot of a task that fails", async () => {
    const limit = new ConcurrencyLimit(1);
    await expect(limit.run(() => Promise.reject(new Error("boom")))).rejects.toThrow("boom");
    expect(await limit.run(() => Promise.resolve("next"))).toBe("next");
  });

  it("refuses a limit below 1", () => {
    expect(() => new ConcurrencyLimit(0)).toThrow(RangeError);
  });
});
