/**
 * What a command tells its user, in one place: `-q` (errors and warnings only), normal, `-v` (more
 * detail), and `--json` (JSON-lines events and one final `summary` on stdout; people's lines stay on
 * stderr). Progress goes to a view chosen by where stderr goes (progress-view.ts).
 */
import type { Command } from "commander";
import { QbackupError } from "../errors.js";
import { ProgressTracker } from "./progress.js";
import type { ItemProgress } from "./progress.js";
import { JsonView, PlainView, SilentView, TerminalView } from "./progress-view.js";
import type { ProgressView } from "./progress-view.js";

export type Verbosity = "quiet" | "normal" | "verbose";

export interface OutputFlags {
  json?: boolean;
  quiet?: boolean;
  verbose?: boolean;
}

/** Plain progress lines in a log, by default every this many seconds (QBACKUP_PROGRESS_INTERVAL overrides). */
const DEFAULT_PLAIN_INTERVAL_S = 10;
/** JSON progress events at most every this many ms. */
const JSON_PROGRESS_INTERVAL_MS = 1000;

export function addOutputOptions(cmd: Command, json = true): Command {
  cmd.option("-q, --quiet", "print only warnings and errors").option("-v, --verbose", "print more detail");
  if (json) cmd.option("--json", "JSON lines on stdout: progress events, then one summary object (README)");
  return cmd;
}

export class Reporter {
  readonly verbosity: Verbosity;
  readonly json: boolean;
  /** The progress display while one is live: lines go through it so it is not torn. */
  private live: Progress | undefined;

  constructor(
    flags: OutputFlags,
    private readonly stderr: NodeJS.WriteStream = process.stderr,
    private readonly stdout: NodeJS.WritableStream = process.stdout,
  ) {
    if (flags.quiet && flags.verbose)
      throw new QbackupError("ERR_USAGE", "-q/--quiet and -v/--verbose exclude each other");
    this.verbosity = flags.quiet ? "quiet" : flags.verbose ? "verbose" : "normal";
    this.json = flags.json === true;
  }

  /** A line for people, unless -q. */
  info(line: string): void {
    if (this.verbosity !== "quiet") this.line(line);
  }

  /** A line only with -v. */
  detail(line: string): void {
    if (this.verbosity === "verbose") this.line(line);
  }

  /** Always on stderr; also an event with --json. */
  warn(message: string): void {
    this.line(`qbackup: warning: ${message}`);
    this.event({ type: "warning", message });
  }

  private line(text: string): void {
    if (this.live) this.live.message(text);
    else this.stderr.write(`${text}\n`);
  }

  /** A JSON-lines event (only with --json). */
  event(event: Record<string, unknown>): void {
    if (this.json) this.stdout.write(`${JSON.stringify(event)}\n`);
  }

  /** The one summary object a --json run ends with. */
  summary(command: string, fields: Record<string, unknown>): void {
    this.event({ type: "summary", command, ...fields });
  }

  /**
   * A live progress display for the items (qubes) and their total, until its close(). `verb` says
   * what the bytes are to people ("read"); `units` says it to scripts ("source bytes read").
   */
  progress(items: ReadonlyArray<{ name: string; total: number }>, verb: string, units: string): Progress {
    const view = this.viewFor(
      items.map((i) => i.name),
      verb,
      units,
    );
    const progress: Progress = new Progress(new ProgressTracker(items), view, () => {
      if (this.live === progress) this.live = undefined;
    });
    this.live = progress;
    return progress;
  }

  private viewFor(names: readonly string[], verb: string, units: string): ProgressView {
    if (this.json) return new JsonView(this.stderr, (e) => this.event(e), JSON_PROGRESS_INTERVAL_MS, units);
    if (this.verbosity === "quiet") return new SilentView(this.stderr);
    if (this.stderr.isTTY) return new TerminalView(this.stderr, names, verb);
    const configured = Number(process.env["QBACKUP_PROGRESS_INTERVAL"]);
    const seconds = Number.isFinite(configured) && configured > 0 ? configured : DEFAULT_PLAIN_INTERVAL_S;
    return new PlainView(this.stderr, seconds * 1000, verb);
  }
}

/** A tracker and its view, driven by a command's pipeline events. */
export class Progress {
  private detailText = "";

  constructor(
    private readonly tracker: ProgressTracker,
    private readonly view: ProgressView,
    private readonly onClose: () => void,
  ) {}

  start(name: string): void {
    this.tracker.start(name);
    this.view.update(this.tracker.snapshot(), this.detailText);
  }

  advance(bytes: number): void {
    this.tracker.advance(bytes);
    this.view.update(this.tracker.snapshot(), this.detailText);
  }

  /** Extra text after the total (e.g. bytes written, compressed). */
  detail(text: string): void {
    this.detailText = text;
  }

  finish(name: string, detail = ""): ItemProgress | undefined {
    const item = this.tracker.finish(name);
    if (item) this.view.itemDone(item, detail);
    return item;
  }

  message(line: string): void {
    this.view.message(line);
  }

  close(): void {
    this.view.close();
    this.onClose();
  }
}
