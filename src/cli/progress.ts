/**
 * Progress of a run, in the units its work is measured in (source bytes for create, restored data
 * bytes for restore), per item (a qube) and in total, with a rate over the last seconds and an ETA.
 * Pure bookkeeping: views (progress-view.ts) decide how it is shown.
 */

/** The rate is measured over about this much recent time, so it follows a run that speeds up or slows. */
const RATE_WINDOW_MS = 10_000;
/** Samples kept for the rate; one per update at most every this many ms. */
const SAMPLE_INTERVAL_MS = 250;
/** Before this much time has passed there is no rate (and no ETA) worth showing. */
const MIN_RATE_SPAN_MS = 500;

export interface ItemProgress {
  name: string;
  done: number;
  total: number;
  state: "waiting" | "running" | "done";
  startedMs?: number;
  endedMs?: number;
}

export interface ProgressSnapshot {
  /** The item being worked on, if any. */
  current: ItemProgress | undefined;
  done: number;
  total: number;
  /** Bytes of work per second over the last RATE_WINDOW_MS or so; 0 until it can be measured. */
  rate: number;
  /** Seconds until the end at the current rate; undefined while unknown. */
  etaSeconds: number | undefined;
  elapsedSeconds: number;
}

export class ProgressTracker {
  private readonly items = new Map<string, ItemProgress>();
  private current: ItemProgress | undefined;
  private doneTotal = 0;
  private readonly startedMs: number;
  private readonly samples: Array<{ at: number; done: number }> = [];

  constructor(
    items: ReadonlyArray<{ name: string; total: number }>,
    private readonly now: () => number = Date.now,
  ) {
    for (const i of items) this.items.set(i.name, { name: i.name, done: 0, total: i.total, state: "waiting" });
    this.startedMs = now();
    this.samples.push({ at: this.startedMs, done: 0 });
  }

  get total(): number {
    let total = 0;
    for (const i of this.items.values()) total += i.state === "done" ? i.done : Math.max(i.total, i.done);
    return total;
  }

  start(name: string): ItemProgress {
    let item = this.items.get(name);
    if (item === undefined) {
      item = { name, done: 0, total: 0, state: "waiting" };
      this.items.set(name, item);
    }
    item.state = "running";
    item.startedMs = this.now();
    this.current = item;
    return item;
  }

  advance(bytes: number): void {
    if (this.current === undefined) return;
    this.current.done += bytes;
    this.doneTotal += bytes;
    const at = this.now();
    const last = this.samples[this.samples.length - 1]!;
    if (at - last.at >= SAMPLE_INTERVAL_MS) {
      this.samples.push({ at, done: this.doneTotal });
      while (this.samples.length > 2 && at - this.samples[1]!.at > RATE_WINDOW_MS) this.samples.shift();
    }
  }

  /** The item is complete: its total becomes what it really took (estimates are estimates). */
  finish(name: string): ItemProgress | undefined {
    const item = this.items.get(name);
    if (item === undefined) return undefined;
    item.state = "done";
    item.endedMs = this.now();
    if (this.current === item) this.current = undefined;
    return item;
  }

  snapshot(): ProgressSnapshot {
    const at = this.now();
    const first = this.samples[0]!;
    const span = at - first.at;
    const rate = span >= MIN_RATE_SPAN_MS ? ((this.doneTotal - first.done) * 1000) / span : 0;
    const total = this.total;
    const left = Math.max(total - this.doneTotal, 0);
    return {
      current: this.current,
      done: this.doneTotal,
      total,
      rate,
      etaSeconds: rate > 0 ? left / rate : undefined,
      elapsedSeconds: (at - this.startedMs) / 1000,
    };
  }
}

/** Seconds a finished item took. */
export function durationOf(item: ItemProgress): number {
  return ((item.endedMs ?? 0) - (item.startedMs ?? 0)) / 1000;
}

/** `0:42`, `12:05`, `3:02:10`. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

/** A fraction in [0, 1] of done over total (1 when there is nothing to do). */
export function fraction(done: number, total: number): number {
  if (total <= 0) return 1;
  return Math.min(Math.max(done / total, 0), 1);
}
