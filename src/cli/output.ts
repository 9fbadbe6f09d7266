/**
 * The tables and lines the commands show a person: create's summary before it starts (like
 * qvm-backup) and its result, restore's report. Progress is in progress-view.ts.
 */
import type { BackupPlan, CreateResult } from "../create/index.js";
import type { RestoreReport } from "../restore/index.js";
import { formatBytes } from "../runtime/units.js";

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

export function resultLine(r: CreateResult, seconds: number): string {
  return (
    `qbackup: backup ${r.backupId} written to ${r.location}: ${formatBytes(r.bytesWritten)}, ` +
    `${r.members} members, ${seconds.toFixed(1)} s\n`
  );
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
