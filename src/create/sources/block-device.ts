/**
 * Size of a block device (LVM thin volumes are how Qubes stores most volumes). stat() reports 0
 * for devices; Linux publishes the size in 512-byte sectors under /sys/dev/block/MAJ:MIN/size.
 */
import * as fs from "node:fs/promises";
import { QbackupError } from "../../errors.js";

/** glibc's encoding of dev_t (gnu_dev_major / gnu_dev_minor). */
export function splitDeviceNumber(rdev: number): { major: number; minor: number } {
  const dev = BigInt(rdev);
  const major = Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn));
  const minor = Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn));
  return { major, minor };
}

export async function blockDeviceSize(devicePath: string, rdev: number): Promise<number> {
  const { major, minor } = splitDeviceNumber(rdev);
  const sysfs = `/sys/dev/block/${major}:${minor}/size`;
  const text = await fs.readFile(sysfs, "utf8").catch(() => {
    throw new QbackupError("ERR_INPUT", `cannot determine the size of block device ${devicePath} (no ${sysfs})`);
  });
  const sectors = Number(text.trim());
  if (!Number.isSafeInteger(sectors) || sectors < 0) {
    throw new QbackupError("ERR_INPUT", `unexpected size '${text.trim()}' in ${sysfs}`);
  }
  return sectors * 512;
}
