/** At most `max` tasks at once; the others wait their turn, first come first served unless urgent. */
export class ConcurrencyLimit {
  private running = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(readonly max: number) {
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`concurrency limit must be a positive integer: ${max}`);
  }

  /** `urgent`: ahead of every task still waiting (the caller is blocked on it; the others are speculative). */
  async run<T>(work: () => Promise<T>, urgent = false): Promise<T> {
    if (this.running >= this.max) {
      await new Promise<void>((resolve) => (urgent ? this.waiting.unshift(resolve) : this.waiting.push(resolve)));
    }
    this.running++;
    try {
      return await work();
    } finally {
      this.running--;
      this.waiting.shift()?.();
    }
  }
}
