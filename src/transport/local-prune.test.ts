import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { RECOVERY_SHEET_SUFFIX } from "../format/recovery-sheet.js";
import { datedBackups, pruneDirectory } from "./local-prune.js";

const DAY_MS = 86_400_000;
const NOW = new Date("2026-11-22T12:00:00Z");

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "qb-prune-"));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A backup file (and its sheet) received `daysAgo` days before NOW. */
function backup(name: string, daysAgo: number, sheet = true): void {
  const at = new Date(NOW.getTime() - daysAgo * DAY_MS);
  fs.writeFileSync(path.join(dir, name), name);
  fs.utimesSync(path.join(dir, name), at, at);
  if (sheet) fs.writeFileSync(path.join(dir, `${name}${RECOVERY_SHEET_SUFFIX}`), "sheet");
}

describe("pruneDirectory", () => {
  it("deletes the dated backups no rule keeps, with their sheets, and nothing else", async () => {
    backup("qubes-backup-2026-11-21T010000", 1);
    backup("qubes-backup-2026-11-15T010000", 7);
    backup("qubes-backup-2026-10-01T010000", 52);
    backup("qubes-backup-2026-09-01T010000", 82, false);
    backup("my-precious-backup", 300);
    fs.writeFileSync(path.join(dir, "notes.txt"), "keep");
    fs.mkdirSync(path.join(dir, "qubes-backup-2020-01-01T000000"));
    fs.symlinkSync("/etc/passwd", path.join(dir, "qubes-backup-2020-01-02T000000"));

    const deleted = await pruneDirectory(dir, { keepWithinMs: 10 * DAY_MS, keepLast: 1 }, NOW);
    expect(deleted).toEqual(["qubes-backup-2026-09-01T010000", "qubes-backup-2026-10-01T010000"]);
    expect(fs.readdirSync(dir).sort()).toEqual([
      "my-precious-backup",
      "my-precious-backup.RESTORE-INSTRUCTIONS.txt",
      "notes.txt",
      "qubes-backup-2020-01-01T000000",
      "qubes-backup-2020-01-02T000000",
      "qubes-backup-2026-11-15T010000",
      `qubes-backup-2026-11-15T010000${RECOVERY_SHEET_SUFFIX}`,
      "qubes-backup-2026-11-21T010000",
      `qubes-backup-2026-11-21T010000${RECOVERY_SHEET_SUFFIX}`,
    ]);
  });

  it("keep-last counts backups, not their sheets", async () => {
    backup("qubes-backup-2026-11-21T010000", 1);
    backup("qubes-backup-2026-11-20T010000", 2);
    backup("qubes-backup-2026-11-19T010000", 3);
    expect(await pruneDirectory(dir, { keepLast: 2 }, NOW)).toEqual(["qubes-backup-2026-11-19T010000"]);
    expect((await datedBackups(dir)).map((b) => b.name)).toEqual([
      "qubes-backup-2026-11-20T010000",
      "qubes-backup-2026-11-21T010000",
    ]);
  });

  it("a directory that cannot be listed is a destination error", async () => {
    await expect(pruneDirectory(path.join(dir, "absent"), { keepLast: 1 }, NOW)).rejects.toThrow(
      expect.objectContaining({ code: "ERR_DEST" }),
    );
  });
});
