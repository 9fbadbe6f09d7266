/** The checks both qubes.xml readers make across all domains, whatever the document's dialect. */
import type { ParsedDomain } from "./model.js";
import { quote } from "./names.js";

/**
 * Every domain name once, every backup path at most once (two qubes restored from the same
 * files would be a confusion an attacker could steer). `pathKey` names the path as the document
 * does (`backup-path` in core3, `backup_path` in core2).
 */
export function checkDomainSet(
  domains: readonly ParsedDomain[],
  pathKey: string,
  fail: (message: string) => never,
): void {
  const names = new Set<string>();
  const paths = new Map<string, string>();
  for (const d of domains) {
    if (names.has(d.name)) fail(`duplicate domain name ${quote(d.name)}`);
    names.add(d.name);
    if (d.backupPath === undefined) continue;
    const other = paths.get(d.backupPath);
    if (other !== undefined) {
      fail(`domains ${quote(other)} and ${quote(d.name)} share ${pathKey} ${quote(d.backupPath)}`);
    }
    paths.set(d.backupPath, d.name);
  }
}
