/**
 * From `NAME[:VOLUME]=PATH` arguments to a backup plan: which qubes, which archived files under
 * which names, and how large each is expected to be. Nothing is read yet beyond stat().
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { validateQubeName } from "../codec/qubes-xml/index.js";
import { QbackupError, systemErrorCode } from "../errors.js";
import { dom0HomeBase, qubeBackupPath } from "../format/names.js";
import { canSeekData } from "../runtime/seek-data.js";
import { blockDeviceSize } from "./sources/block-device.js";
import { estimateTree } from "./sources/tree.js";

export interface SourceSpec {
  qube: string;
  /** Volume name for a file (default `private`), archive name for a directory (default: its basename). */
  volume?: string;
  path: string;
}

export interface PlannedVolume {
  kind: "volume";
  /** Archive name, e.g. `vm1/private.img`. */
  fileBase: string;
  volume: string;
  path: string;
  realSize: number;
  isBlockDevice: boolean;
  /**
   * How its holes are found: asked of the filesystem (a sparse file where SEEK_DATA works), or by
   * reading all of it for zero blocks (block devices, fully allocated files, other systems).
   */
  holeSearch: "filesystem" | "read";
  /** Allocated bytes (block devices: their size): what the summary shows. */
  estimate: number;
}

export interface PlannedTree {
  kind: "tree";
  fileBase: string;
  path: string;
  estimate: number;
}

export type PlannedFile = PlannedVolume | PlannedTree;

export interface PlannedQube {
  name: string;
  qid: number;
  /** `vm<qid>/`, or `dom0-home/<user>` for dom0. */
  backupPath: string;
  files: PlannedFile[];
  estimate: number;
}

export interface BackupPlan {
  qubes: PlannedQube[];
  /** The dom0 home, always archived last. */
  dom0?: PlannedQube & { user: string };
}

export const DOM0 = "dom0";
const DEFAULT_VOLUME = "private";
/** Volume and archive names become file names in the backup and on restore: keep them plain. */
const FILE_LABEL = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const DOM0_USER = /^[a-z_][a-z0-9_-]{0,31}$/;
/** Restore writes its own metadata under this name beside a qube's files. */
const RESERVED_FILE_LABELS = new Set(["qube.json"]);

/** Parse `NAME=PATH` or `NAME:VOLUME=PATH`. */
export function parseSourceSpec(arg: string): SourceSpec {
  const eq = arg.indexOf("=");
  if (eq <= 0 || eq === arg.length - 1) {
    throw new QbackupError("ERR_USAGE", `source '${arg}' is not NAME=PATH or NAME:VOLUME=PATH`);
  }
  const left = arg.slice(0, eq);
  const sourcePath = arg.slice(eq + 1);
  const colon = left.indexOf(":");
  const qube = colon < 0 ? left : left.slice(0, colon);
  const volume = colon < 0 ? undefined : left.slice(colon + 1);
  if (qube !== DOM0) validateQubeName(qube);
  if (volume !== undefined && !FILE_LABEL.test(volume)) {
    throw new QbackupError("ERR_USAGE", `volume name '${volume}' in '${arg}' must match ${FILE_LABEL.source}`);
  }
  return volume === undefined ? { qube, path: sourcePath } : { qube, volume, path: sourcePath };
}

export async function planBackup(specs: readonly SourceSpec[]): Promise<BackupPlan> {
  if (specs.length === 0) throw new QbackupError("ERR_USAGE", "nothing to back up: give at least one NAME=PATH");
  const qubes = new Map<string, PlannedQube>();
  let dom0: BackupPlan["dom0"];
  let nextQid = 1;

  for (const spec of specs) {
    const st = await statSource(spec.path);
    await assertReadable(spec.path, st.isDirectory());
    if (spec.qube === DOM0) {
      if (!st.isDirectory())
        throw new QbackupError("ERR_USAGE", `dom0 can only hold a home directory; ${spec.path} is not one`);
      if (dom0) throw new QbackupError("ERR_USAGE", "only one dom0 home directory can be backed up");
      const user = spec.volume ?? path.basename(path.resolve(spec.path));
      if (!DOM0_USER.test(user)) {
        throw new QbackupError("ERR_USAGE", `dom0 user name '${user}' must match ${DOM0_USER.source}`, {
          hint: "name it explicitly: dom0:USER=DIR",
        });
      }
      const fileBase = dom0HomeBase(user);
      const estimate = await estimateTree(spec.path);
      dom0 = {
        name: DOM0,
        qid: 0,
        user,
        backupPath: fileBase,
        estimate,
        files: [{ kind: "tree", fileBase, path: spec.path, estimate }],
      };
      continue;
    }

    let qube = qubes.get(spec.qube);
    if (!qube) {
      const qid = nextQid++;
      qube = { name: spec.qube, qid, backupPath: qubeBackupPath(qid), files: [], estimate: 0 };
      qubes.set(spec.qube, qube);
    }
    const file = await planFile(qube, spec, st);
    if (qube.files.some((f) => f.fileBase === file.fileBase)) {
      throw new QbackupError(
        "ERR_USAGE",
        `qube ${spec.qube} already has ${path.basename(file.fileBase)}; name it NAME:VOLUME=PATH`,
      );
    }
    qube.files.push(file);
    qube.estimate += file.estimate;
  }
  return dom0 ? { qubes: [...qubes.values()], dom0 } : { qubes: [...qubes.values()] };
}

async function planFile(
  qube: PlannedQube,
  spec: SourceSpec,
  st: Awaited<ReturnType<typeof fs.stat>>,
): Promise<PlannedFile> {
  if (st.isDirectory()) {
    const label = spec.volume ?? path.basename(path.resolve(spec.path));
    if (!FILE_LABEL.test(label) || RESERVED_FILE_LABELS.has(label)) {
      throw new QbackupError("ERR_USAGE", `directory name '${label}' cannot be an archive name`, {
        hint: `name it explicitly: ${spec.qube}:NAME=${spec.path}`,
      });
    }
    return {
      kind: "tree",
      fileBase: qube.backupPath + label,
      path: spec.path,
      estimate: await estimateTree(spec.path),
    };
  }
  const volume = spec.volume ?? DEFAULT_VOLUME;
  const fileBase = `${qube.backupPath}${volume}.img`;
  if (st.isFile()) {
    const allocated = Number(st.blocks) * 512;
    const sparse = allocated < Number(st.size);
    return {
      kind: "volume",
      fileBase,
      volume,
      path: spec.path,
      realSize: Number(st.size),
      isBlockDevice: false,
      holeSearch: sparse && (await canSeekData(spec.path).catch(() => false)) ? "filesystem" : "read",
      estimate: Math.min(allocated, Number(st.size)),
    };
  }
  if (st.isBlockDevice()) {
    const size = await blockDeviceSize(spec.path, Number(st.rdev));
    return {
      kind: "volume",
      fileBase,
      volume,
      path: spec.path,
      realSize: size,
      isBlockDevice: true,
      holeSearch: "read",
      estimate: size,
    };
  }
  throw new QbackupError("ERR_INPUT", `source ${spec.path} is not a regular file, block device or directory`);
}

async function statSource(p: string) {
  try {
    return await fs.stat(p, { bigint: false });
  } catch (err) {
    throw sourceError(err, p);
  }
}

/** Fail before any output exists if a source cannot even be opened. */
async function assertReadable(p: string, isDirectory: boolean): Promise<void> {
  try {
    if (isDirectory) await (await fs.opendir(p)).close();
    else await (await fs.open(p, "r")).close();
  } catch (err) {
    throw sourceError(err, p);
  }
}

export function sourceError(err: unknown, p: string): QbackupError {
  if (err instanceof QbackupError) return err;
  const code = systemErrorCode(err);
  if (code === "ENOENT" || code === "ENOTDIR")
    return new QbackupError("ERR_INPUT", `source ${p} does not exist`, { cause: err });
  if (code === "EACCES" || code === "EPERM")
    return new QbackupError("ERR_INPUT", `source ${p} is not readable (permission denied)`, { cause: err });
  const detail = err instanceof Error ? err.message : String(err);
  return new QbackupError("ERR_INPUT", `cannot read source ${p}: ${detail}`, { cause: err });
}

/**
 * The source of `plan` that holds `file` (the file itself, or a directory above it), if any. Both
 * are compared as given after `path.resolve`; callers pass real paths where links matter.
 */
export function sourceHolding(
  plan: BackupPlan,
  file: string,
  realpath: (p: string) => string = path.resolve,
): string | undefined {
  const target = realpath(file);
  const sources = [...plan.qubes, ...(plan.dom0 ? [plan.dom0] : [])].flatMap((q) => q.files.map((f) => f.path));
  return sources.find((s) => {
    const source = realpath(s);
    return target === source || target.startsWith(source.endsWith(path.sep) ? source : source + path.sep);
  });
}
