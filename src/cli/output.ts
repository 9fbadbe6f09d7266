/**
 * What `qbackup create` shows a person: the summary table before it starts (like qvm-backup),
 * a progress line on a terminal, warnings, and the final result. All on stderr: stdout may be
 * the backup itself.
 */
import type { BackupPlan, CreateEvent, CreateResult } from "../create/index.js";
import { formatBytes } from "./units.js";

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
  rows.push(["", "", "total", formatBytes(total)]);
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  const line = (r: string[]) =>
    r.map((cell, c) => (c === r.length - 1 ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!))).join("  ");
  const rule = widths.map((w) => "-".repeat(w)).join("  ");
  return [line(rows[0]!), rule, ...rows.slice(1, -1).map(line), rule, line(rows[rows.length - 1]!)].join("\n") + "\n";
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
