/**
 * uid/gid → user/group names for tar headers, from /etc/passwd and /etc/group (read once).
 * Missing databases or unknown ids give an empty name; tar then falls back to the number.
 */
import { readFileSync } from "node:fs";

function loadNames(file: string): Map<number, string> {
  const names = new Map<number, string>();
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    return names;
  }
  for (const line of text.split("\n")) {
    const [name, , id] = line.split(":");
    const n = Number(id);
    if (name && Number.isSafeInteger(n) && !names.has(n)) names.set(n, name);
  }
  return names;
}

let users: Map<number, string> | undefined;
let groups: Map<number, string> | undefined;

export function userName(uid: number): string {
  users ??= loadNames("/etc/passwd");
  return users.get(uid) ?? "";
}

export function groupName(gid: number): string {
  groups ??= loadNames("/etc/group");
  return groups.get(gid) ?? "";
}
