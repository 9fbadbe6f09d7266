/**
 * How progress is shown: live bars on a terminal, a plain line every so often in a log, JSON-lines
 * events for scripts, or nothing (-q). All of them read the same ProgressTracker snapshots.
 */
import { formatBytes } from "../runtime/units.js";
import { durationOf, formatDuration, fraction } from "./progress.js";
import type { ItemProgress, ProgressSnapshot } from "./progress.js";

export interface ProgressView {
  /** The numbers changed; the view decides whether, and how often, to show them. */
  update(snapshot: ProgressSnapshot, detail: string): void;
  /** An item (a qube) is complete. */
  itemDone(item: ItemProgress, detail: string): void;
  /** A line for stderr that must not be torn by the live display (a warning, a note). */
  message(line: string): void;
  /** The run ended (either way): remove anything live. */
  close(): void;
}

/** Redraws of the live bars at most this often. */
const TTY_REDRAW_MS = 100;
const BAR_WIDTH = 24;

function bar(done: number, total: number): string {
  const filled = Math.round(fraction(done, total) * BAR_WIDTH);
  return `[${"#".repeat(filled)}${".".repeat(BAR_WIDTH - filled)}]`;
}

function percent(done: number, total: number): string {
  return `${Math.floor(fraction(done, total) * 100)}%`.padStart(4);
}

function eta(s: ProgressSnapshot): string {
  return s.etaSeconds === undefined ? "ETA -:--" : `ETA ${formatDuration(s.etaSeconds)}`;
}

/** Two live lines on a terminal: the current qube's bar and the total's; finished qubes scroll above. */
export class TerminalView implements ProgressView {
  private height = 0;
  private lastDraw = 0;
  private nameWidth: number;

  constructor(
    private readonly stream: NodeJS.WriteStream,
    names: readonly string[],
    private readonly verb: string,
  ) {
    this.nameWidth = Math.min(Math.max(5, ...names.map((n) => n.length)), 31);
  }

  update(s: ProgressSnapshot, detail: string): void {
    const now = Date.now();
    if (now - this.lastDraw < TTY_REDRAW_MS) return;
    this.lastDraw = now;
    const lines: string[] = [];
    if (s.current) {
      const c = s.current;
      lines.push(
        `${c.name.padEnd(this.nameWidth)} ${bar(c.done, c.total)} ${percent(c.done, c.total)}  ` +
          `${formatBytes(c.done)} of ~${formatBytes(Math.max(c.total, c.done))} ${this.verb}`,
      );
    }
    lines.push(
      `${"total".padEnd(this.nameWidth)} ${bar(s.done, s.total)} ${percent(s.done, s.total)}  ` +
        `${formatBytes(s.done)} of ~${formatBytes(s.total)} ${this.verb}  ${formatBytes(s.rate)}/s  ${eta(s)}` +
        (detail ? `  ${detail}` : ""),
    );
    this.draw(lines);
  }

  itemDone(item: ItemProgress, detail: string): void {
    const seconds = durationOf(item);
    this.message(
      `${item.name.padEnd(this.nameWidth)} done: ${formatBytes(item.done)} ${this.verb} in ${formatDuration(seconds)}` +
        (detail ? `, ${detail}` : ""),
    );
  }

  message(line: string): void {
    this.erase();
    this.stream.write(`${line}\n`);
    this.lastDraw = 0;
  }

  close(): void {
    this.erase();
  }

  private draw(lines: string[]): void {
    const width = (this.stream.columns || 100) - 1;
    this.erase();
    this.stream.write(lines.map((l) => `\x1b[K${l.slice(0, width)}`).join("\n"));
    this.height = lines.length;
  }

  private erase(): void {
    if (this.height === 0) return;
    this.stream.write(`\r${this.height > 1 ? `\x1b[${this.height - 1}A` : ""}\x1b[J`);
    this.height = 0;
  }
}

/** For logs (stderr not a terminal): one line every `intervalMs`, and one when a qube is done. */
export class PlainView implements ProgressView {
  private lastLine: number;

  constructor(
    private readonly stream: NodeJS.WritableStream,
    private readonly intervalMs: number,
    private readonly verb: string,
  ) {
    this.lastLine = Date.now();
  }

  update(s: ProgressSnapshot, detail: string): void {
    const now = Date.now();
    if (now - this.lastLine < this.intervalMs) return;
    this.lastLine = now;
    const current = s.current
      ? `; ${s.current.name} ${percent(s.current.done, s.current.total).trim()} of ~${formatBytes(s.current.total)}`
      : "";
    this.stream.write(
      `qbackup: progress: ${percent(s.done, s.total).trim()} (${formatBytes(s.done)} of ~${formatBytes(s.total)} ${this.verb}), ` +
        `${formatBytes(s.rate)}/s, ${eta(s)}${detail ? `, ${detail}` : ""}${current}\n`,
    );
  }

  itemDone(item: ItemProgress, detail: string): void {
    const seconds = durationOf(item);
    this.stream.write(
      `qbackup: ${item.name} done: ${formatBytes(item.done)} ${this.verb} in ${formatDuration(seconds)}${detail ? `, ${detail}` : ""}\n`,
    );
  }

  message(line: string): void {
    this.stream.write(`${line}\n`);
  }

  close(): void {}
}

/**
 * Scripts (--json): `{"type":"progress",…}` at most every `intervalMs`, `{"type":"qube-done",…}` per
 * qube; `units` says what the byte counts count.
 */
export class JsonView implements ProgressView {
  private lastEvent = 0;

  constructor(
    private readonly stderr: NodeJS.WritableStream,
    private readonly emit: (event: Record<string, unknown>) => void,
    private readonly intervalMs: number,
    private readonly units: string,
  ) {}

  update(s: ProgressSnapshot): void {
    const now = Date.now();
    if (now - this.lastEvent < this.intervalMs) return;
    this.lastEvent = now;
    this.emit({
      type: "progress",
      units: this.units,
      done: s.done,
      total: s.total,
      bytesPerSecond: Math.round(s.rate),
      etaSeconds: s.etaSeconds === undefined ? null : Math.round(s.etaSeconds),
      elapsedSeconds: Math.round(s.elapsedSeconds * 10) / 10,
      qube: s.current?.name ?? null,
      qubeDone: s.current?.done ?? null,
      qubeTotal: s.current?.total ?? null,
    });
  }

  itemDone(item: ItemProgress): void {
    const seconds = durationOf(item);
    this.emit({ type: "qube-done", qube: item.name, bytes: item.done, seconds: Math.round(seconds * 10) / 10 });
  }

  message(line: string): void {
    this.stderr.write(`${line}\n`);
  }

  close(): void {}
}

/** -q: no progress; warnings still get through. */
export class SilentView implements ProgressView {
  constructor(private readonly stderr: NodeJS.WritableStream) {}
  update(): void {}
  itemDone(): void {}
  message(line: string): void {
    this.stderr.write(`${line}\n`);
  }
  close(): void {}
}
