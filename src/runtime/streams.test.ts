import { describe, expect, it } from "vitest";
import { ByteQueue } from "./streams.js";

describe("ByteQueue", () => {
  it("hands out the bytes in order, in the lengths asked for, across pieces", () => {
    const q = new ByteQueue();
    q.push(Buffer.from("abc"));
    q.push(Buffer.from("defg"));
    expect(q.length).toBe(7);
    expect(q.take(2).toString()).toBe("ab");
    expect(q.take(4).toString()).toBe("cdef");
    expect(q.length).toBe(1);
    expect(q.take(10).toString()).toBe("g");
    expect(q.take(1).length).toBe(0);
  });
});
