/**
 * `qbackup ls BACKUP QUBE[:PATH]` and `qbackup extract BACKUP QUBE:PATH... -C DESTDIR`: files inside a
 * qube's disk image, without restoring the qube or mounting anything. The image goes through the
 * normal restore (every chunk authenticated first) into a sparse temporary file, which a userspace
 * ext2/3/4 reader opens (src/image/); the temporary file is removed afterwards, also on Ctrl-C.
 */
import { Command } from "commander";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { QbackupError } from "../errors.js";
import { ExtImage } from "../image/ext-image.js";
import type { ExtEntry } from "../image/ext-image.js";
import { extractEntry, refuseExisting } from "../image/extract.js";
import { baseName, parseInsideSpec } from "../image/inside-path.js";
import { restoreBackup } from "../restore/index.js";
import { formatBytes, parseInteger } from "../runtime/units.js";
import type { ByteSource } from "../transport/source.js";
import { EXIT_OK } from "./exit.js";
import { onInterrupt } from "./interrupt.js";
import { addReadOptions, openOptionsFrom, openSource } from "./read-options.js";
import type { ReadFlags } from "./read-options.js";
import { RestoreEvents } from "./restore.js";
import { Reporter, addOutputOptions } from "./reporter.js";
import type { OutputFlags } from "./reporter.js";

interface BrowseFlags extends ReadFlags, OutputFlags {
  volume: string;
  tmpDir?: string;
  jobs: string;
  recursive?: boolean;
  directory?: string;
}

const VOLUME_NAME = /^[a-z][a-z0-9_-]{0,30}$/;

function addImageOptions(cmd: Command): Command {
  cmd
    .option("--volume <name>", "the qube's volume to look into (root for templates and standalone qubes)", "private")
    .option("--tmp-dir <dir>", "where the image is restored while it is read (needs its allocated size)")
    .option("-j, --jobs <n>", "containers whose keys are derived at once", "2");
  addOutputOptions(cmd);
  return addReadOptions(cmd);
}

export function lsCommand(): Command {
  const cmd = new Command("ls")
    .description("list a directory inside a qube's disk image (ext2/3/4), with type, size, mode and mtime")
    .usage("[options] BACKUP QUBE[:PATH]   (with --source-command: QUBE[:PATH])")
    .argument("<args...>")
    .option("-R, --recursive", "list the whole tree below PATH");
  addImageOptions(cmd).addHelpText(
    "after",
    `
A Qubes AppVM's private volume holds what the qube sees under /rw: its home directory is
home/user. Nothing is mounted; the image is restored (authenticated) to a temporary sparse file
and read by a userspace ext2/3/4 reader, then removed.

Examples:
  qbackup ls -p ~/.backup-pass /mnt/backups/qubes-backup-2026-11-22T153000 work:home/user
  qbackup ls -R --json backup.bin work:home/user/Documents | jq -r 'select(.type == "entry") | .path'
  qbackup ls --volume root backup.bin debian-12:etc`,
  );
  return cmd.action(async (args: string[], flags: BrowseFlags) => {
    const reporter = new Reporter(flags);
    const [backup, specs] = splitArgs(args, flags);
    if (specs.length !== 1) throw new QbackupError("ERR_USAGE", "ls takes one QUBE[:PATH]");
    const { qube, path: inside } = parseInsideSpec(specs[0]!);
    await withImage(backup, qube, flags, reporter, async (image) => {
      const top = await image.stat(inside);
      const entries = top.type === "directory" ? await listTree(image, inside, flags.recursive === true) : [top];
      for (const e of entries) {
        if (reporter.json) reporter.event({ type: "entry", ...entryJson(e) });
        else process.stdout.write(`${entryLine(e)}\n`);
      }
      reporter.summary("ls", { qube, volume: flags.volume, path: inside, entries: entries.length });
    });
    process.exitCode = EXIT_OK;
  });
}

export function extractCommand(): Command {
  const cmd = new Command("extract")
    .description("copy files or directories out of a qube's disk image (ext2/3/4), keeping modes, mtimes and links")
    .usage("[options] BACKUP QUBE:PATH... [-C DESTDIR]   (with --source-command: QUBE:PATH...)")
    .argument("<args...>")
    .option("-C, --directory <dir>", "write into DIR (default: the current directory)");
  addImageOptions(cmd).addHelpText(
    "after",
    `
Each PATH becomes DESTDIR/<its last name> (like cp -a), built under a temporary name and renamed
only when complete; nothing that exists is replaced. Symlinks stay links (never followed), holes
stay holes, setuid/setgid bits are dropped; devices, FIFOs and sockets are skipped with a warning.

Examples:
  qbackup extract -p ~/.backup-pass backup.bin work:home/user/Documents/thesis.odt -C ~/recovered
  qbackup extract backup.bin work:home/user/.ssh work:home/user/.gnupg -C /tmp/keys`,
  );
  return cmd.action(async (args: string[], flags: BrowseFlags) => {
    const reporter = new Reporter(flags);
    const [backup, specs] = splitArgs(args, flags);
    if (specs.length === 0) throw new QbackupError("ERR_USAGE", "extract what? give QUBE:PATH");
    const parsed = specs.map(parseInsideSpec);
    const qube = parsed[0]!.qube;
    if (parsed.some((p) => p.qube !== qube)) throw new QbackupError("ERR_USAGE", "extract from one qube at a time");
    const destDir = path.resolve(flags.directory ?? ".");
    const st = await fs.stat(destDir).catch(() => undefined);
    if (!st?.isDirectory()) throw new QbackupError("ERR_DEST", `destination directory ${destDir} does not exist`);
    await withImage(backup, qube, flags, reporter, async (image) => {
      // everything asked for must be there before anything is written
      const entries = [];
      for (const p of parsed) entries.push(await image.stat(p.path));
      const names = entries.map((e) => baseName(e.path) || `${qube}-${flags.volume}`);
      if (new Set(names).size !== names.length) {
        throw new QbackupError("ERR_USAGE", "two PATHs end in the same name; extract them one at a time");
      }
      for (const name of names) await refuseExisting(path.join(destDir, name));
      const extracted = [];
      for (const [i, entry] of entries.entries()) {
        const counts = await extractEntry(image, entry, destDir, names[i]!);
        for (const s of counts.skipped) reporter.warn(`skipped ${s}: not a file, directory or symlink`);
        const to = path.join(destDir, names[i]!);
        reporter.info(
          `qbackup: extracted /${entry.path} to ${to}: ${counts.files} files (${formatBytes(counts.bytes)}), ` +
            `${counts.directories} directories, ${counts.symlinks} symlinks`,
        );
        extracted.push({ path: entry.path, to, ...counts });
      }
      reporter.summary("extract", { qube, volume: flags.volume, extracted });
    });
    process.exitCode = EXIT_OK;
  });
}

/** BACKUP then the specs, or only the specs with --source-command. */
function splitArgs(args: string[], flags: BrowseFlags): [string | undefined, string[]] {
  if (flags.sourceCommand !== undefined) return [undefined, args];
  if (args.length < 2) throw new QbackupError("ERR_USAGE", "give BACKUP and QUBE[:PATH]");
  return [args[0], args.slice(1)];
}

/** Restores the qube into a private temporary directory, opens its volume, runs `use`, removes it all. */
async function withImage(
  backup: string | undefined,
  qube: string,
  flags: BrowseFlags,
  reporter: Reporter,
  use: (image: ExtImage) => Promise<void>,
): Promise<void> {
  if (!VOLUME_NAME.test(flags.volume))
    throw new QbackupError("ERR_USAGE", `--volume '${flags.volume}' is not a volume name`);
  const open = await openOptionsFrom(flags, backup);
  const source: ByteSource = await openSource(backup, flags);
  const tmp = await fs.mkdtemp(path.join(flags.tmpDir ?? os.tmpdir(), "qbackup-image-"));
  let image: ExtImage | undefined;
  const cleanup = async () => {
    await image?.close();
    await source.close(true);
    await fs.rm(tmp, { recursive: true, force: true });
  };
  const forget = onInterrupt(cleanup);
  try {
    const events = new RestoreEvents(reporter, "restored");
    let volumes: string[] | undefined;
    let report;
    try {
      report = await restoreBackup(source, {
        ...open,
        include: [qube],
        onlyFiles: [`${flags.volume}.img`],
        destDir: tmp,
        jobs: parseInteger(flags.jobs, "--jobs", 1, 64),
        onEvent: (e) => {
          if (e.type === "opened") volumes = e.selected.find((q) => q.name === qube)?.volumes;
          events.on(e);
        },
      });
    } finally {
      events.close();
    }
    const result = report.qubes.find((q) => q.name === qube);
    if (result === undefined || volumes === undefined) {
      throw new QbackupError("ERR_NOT_FOUND", `there is no qube ${qube} in this backup`);
    }
    const volumeFile = `${flags.volume}.img`;
    if (!volumes.includes(volumeFile)) {
      throw new QbackupError(
        "ERR_NOT_FOUND",
        `qube ${qube} has no volume ${flags.volume} in this backup` +
          (volumes.length > 0 ? ` (it has ${volumes.join(", ")}; choose with --volume)` : " (it holds no disk image)"),
      );
    }
    if (!report.ok) {
      throw new QbackupError("ERR_MISSING", `qube ${qube} is ${result.status}: ${result.problems.join("; ")}`);
    }
    const file = path.join(tmp, qube, volumeFile);
    image = await ExtImage.open(file, `${qube}: ${flags.volume}.img`);
    reporter.detail(`qbackup: ${image.what}: ${image.located.kind} in the ${image.located.where}`);
    await use(image);
  } finally {
    forget();
    await cleanup();
  }
}

/** The entries below `dir` (the whole tree with `recursive`), depth first, by name. */
async function listTree(image: ExtImage, dir: string, recursive: boolean): Promise<ExtEntry[]> {
  const out: ExtEntry[] = [];
  for (const e of await image.list(dir)) {
    out.push(e);
    if (recursive && e.type === "directory") out.push(...(await listTree(image, e.path, true)));
  }
  return out;
}

const TYPE_CHAR: Record<ExtEntry["type"], string> = {
  file: "-",
  directory: "d",
  symlink: "l",
  fifo: "p",
  socket: "s",
  "char-device": "c",
  "block-device": "b",
};

/** `-rw-r-----  1000 1000      6  2026-11-22 20:57  home/user/docs/a.txt`, as ls -l would. */
function entryLine(e: ExtEntry): string {
  const bits = "rwxrwxrwx"
    .split("")
    .map((c, i) => (e.mode & (0o400 >> i) ? c : "-"))
    .join("");
  const mtime = e.mtime.toISOString().slice(0, 16).replace("T", " ");
  const link = e.target === undefined ? "" : ` -> ${e.target}`;
  return `${TYPE_CHAR[e.type]}${bits} ${String(e.uid).padStart(5)} ${String(e.gid).padStart(5)} ${String(e.size).padStart(12)}  ${mtime}  ${e.path}${link}`;
}

function entryJson(e: ExtEntry): Record<string, unknown> {
  return {
    path: e.path,
    kind: e.type,
    size: e.size,
    mode: `0${e.mode.toString(8).padStart(3, "0")}`,
    mtime: e.mtime.toISOString(),
    uid: e.uid,
    gid: e.gid,
    ...(e.target === undefined ? {} : { target: e.target }),
  };
}
