/**
 * What `qbackup create` shows a person: the summary table before it starts (like qvm-backup),
 * a progress line on a terminal, warnings, and the final result. All on stderr: stdout may be
 * the backup itself.
 */
import type { BackupPlan, CreateEvent, CreateResult } from "../create/index.js";
import type { RestoreEvent, RestoreReport } from "../restore/index.js";
import { formatBytes } from "./units.js";

/** Rows as aligned columns; the first row is the heading, `right` lists right-aligned columns. */
export function renderTable(rows: readonly string[][], right: readonly number[] = [], footer?: string[]): string {
  const all = footer ? [...rows, footer] : rows;
  const widths = all[0]!.map((_, c) => Math.max(...all.map((r) => (r[c] ?? "").length)));
  const line = (r: readonly string[]) =>
    r
      .map((cell, c) => (right.includes(c) ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!)))
      .join("  ")
      .trimEnd();
  const rule = widths.map((w) => "-".repeat(w)).join("  ");
  const body = [line(rows[0]!), rule, ...rows.slice(1).map(line)];
  if (footer) body.push(rule, line(footer));
  return body.join("\n") + "\n";
}

export function summaryTable(plan: BackupPlan): string {
  const rows: string[][] = [["qube", "archived as", "type", "size"]];
  let total = 0;
  const qubes = plan.dom0 ? [...plan.qubes, plan.dom0] : plan.qubes;
  for (const qube of qubes) {
    for (const file of qube.files) {
      const type = qube === plan.dom0 ? "home" : file.kind === "volume" ? "volume" : "directory";
      rows.push([qube.name, file.fileBase, type, formatBytes(file.estimate)]);
      total += file.estimate;
    }
  }
  return renderTable(rows, [3], ["", "", "total", formatBytes(total)]);
}

/** A single self-updating line on a TTY, redrawn at most every 200 ms; nothing otherwise. */
export class CreateProgress {
  private file = "";
  private read = 0;
  private scanned = 0;
  private written = 0;
  private readonly started = Date.now();
  private lastDraw = 0;

  constructor(private readonly stream: NodeJS.WriteStream) {}

  get live(): boolean {
    return this.stream.isTTY === true;
  }

  onEvent(e: CreateEvent): void {
    switch (e.type) {
      case "file-start":
        this.file = `${e.qube}: ${e.file}`;
        break;
      case "read":
        this.read += e.bytes;
        break;
      case "scanned":
        this.scanned += e.bytes;
        break;
      case "member":
        this.written += e.size;
        break;
      case "warning":
        this.clear();
        this.stream.write(`qbackup: warning: ${e.message}\n`);
        break;
      default:
        return;
    }
    this.draw();
  }

  private draw(): void {
    if (!this.live) return;
    const now = Date.now();
    if (now - this.lastDraw < 200) return;
    this.lastDraw = now;
    const seconds = Math.max((now - this.started) / 1000, 0.001);
    const text =
      `${this.file}  data ${formatBytes(this.read)} (scanned ${formatBytes(this.scanned)})` +
      `  written ${formatBytes(this.written)}  ${formatBytes(this.read / seconds)}/s`;
    const width = this.stream.columns || 100;
    this.stream.write(`\r\x1b[K${text.slice(0, width - 1)}`);
  }

  clear(): void {
    if (this.live && this.lastDraw > 0) this.stream.write("\r\x1b[K");
  }
}

export function resultLine(r: CreateResult, seconds: number): string {
  return (
    `qbackup: backup ${r.backupId} written to ${r.location}: ${formatBytes(r.bytesWritten)}, ` +
    `${r.members} members, ${seconds.toFixed(1)} s\n`
  );
}

/** Restore/verify progress per qube: bytes, rate and ETA against the qube's recorded size. */
export class RestoreProgress {
  private qube = "";
  private qubeBytes = 0;
  private qubeSize = 0;
  private qubeStarted = Date.now();
  private lastDraw = 0;

  constructor(private readonly stream: NodeJS.WriteStream) {}

  onEvent(e: RestoreEvent): void {
    if (!this.stream.isTTY) return;
    if (e.type === "qube-start") {
      this.qube = e.qube;
      this.qubeBytes = 0;
      this.qubeSize = e.backupSize;
      this.qubeStarted = Date.now();
    } else if (e.type === "chunk") {
      this.qubeBytes += e.bytes;
    } else if (e.type === "qube-done") {
      this.clear();
      return;
    } else return;
    const now = Date.now();
    if (now - this.lastDraw < 200) return;
    this.lastDraw = now;
    const rate = this.qubeBytes / Math.max((now - this.qubeStarted) / 1000, 0.001);
    const left = Math.max(this.qubeSize - this.qubeBytes, 0);
    const eta = rate > 0 ? `ETA ${Math.ceil(left / rate)} s` : "";
    const text = `${this.qube}: ${formatBytes(this.qubeBytes)} of ~${formatBytes(this.qubeSize)}  ${formatBytes(rate)}/s  ${eta}`;
    this.stream.write(`\r\x1b[K${text.slice(0, (this.stream.columns || 100) - 1)}`);
  }

  clear(): void {
    if (this.stream.isTTY && this.lastDraw > 0) this.stream.write("\r\x1b[K");
  }
}

/** `backup 20261122T…-123 (format v4)`; v3 backups have no id. */
export function backupTitle(backupId: string | null, version?: number): string {
  const format = version === undefined ? "" : ` (format v${version})`;
  return backupId === null ? `backup without id${format || " (format v3)"}` : `backup ${backupId}${format}`;
}

export function restoreReportTable(report: RestoreReport): string {
  const rows = [["qube", "result", "files", "stored", "where / problems"]];
  for (const q of report.qubes) {
    if (q.status === "not selected") continue;
    const files = q.files.map((f) => f.name).join(", ") || "-";
    const detail = [q.location, ...q.problems].filter((x): x is string => x !== undefined).join("; ") || "-";
    rows.push([q.name, q.status, files, formatBytes(q.storedBytes), detail]);
  }
  return renderTable(rows, [3]);
}
