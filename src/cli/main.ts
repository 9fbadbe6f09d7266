/** The `qbackup` program: parses the command line and maps every outcome to an exit status. */
import { Command, CommanderError } from "commander";
import { createRequire } from "node:module";

import { agentCommand } from "./agent.js";
import { extractCommand, lsCommand } from "./browse.js";
import { completionCommand } from "./completion.js";
import { createCommand } from "./create.js";
import { listCommand } from "./list.js";
import { pruneCommand } from "./prune.js";
import { recoverySheetCommand } from "./recovery-sheet.js";
import { restoreCommand, verifyCommand } from "./restore.js";
import { scheduleCommand } from "./schedule.js";
import { QbackupError } from "../errors.js";
import { EXIT_OK, EXIT_SIGINT, EXIT_SIGTERM, EXIT_USAGE, exitCodeFor, messageOf, reportError } from "./exit.js";
import { installInterruptHandlers, interruptedBy } from "./interrupt.js";

const { version } = createRequire(import.meta.url)("../../package.json") as { version: string };

export function buildProgram(): Command {
  const program = new Command("qbackup")
    .description("Encrypted, authenticated Qubes OS backups (format v4) that run anywhere")
    .version(version);
  program.addCommand(createCommand());
  program.addCommand(listCommand());
  program.addCommand(verifyCommand());
  program.addCommand(restoreCommand());
  program.addCommand(lsCommand());
  program.addCommand(extractCommand());
  program.addCommand(recoverySheetCommand());
  program.addCommand(pruneCommand());
  program.addCommand(scheduleCommand());
  program.addCommand(agentCommand());
  program.addCommand(completionCommand(() => program));
  for (const cmd of [program, ...program.commands]) {
    cmd.exitOverride();
    cmd.showHelpAfterError("(run with --help for usage)");
    cmd.configureOutput({ outputError: (text, write) => write(`qbackup: error: ${text.replace(/^error: /, "")}`) });
  }
  return program;
}

export async function main(argv: string[] = process.argv): Promise<number> {
  installInterruptHandlers();
  try {
    await buildProgram().parseAsync(argv);
    return typeof process.exitCode === "number" ? process.exitCode : EXIT_OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      // help and version exit 0; everything else commander rejects is a usage error (already printed)
      if (err.exitCode === 0) return EXIT_OK;
      if (argv.includes("--json")) jsonError("ERR_USAGE", EXIT_USAGE, err.message.replace(/^error: /, ""));
      return EXIT_USAGE;
    }
    const signal = interruptedBy();
    if (signal !== undefined) {
      // the interrupt handler is cleaning up; it says what happened and exits
      return signal === "SIGINT" ? EXIT_SIGINT : EXIT_SIGTERM;
    }
    reportError(err);
    const status = exitCodeFor(err);
    if (argv.includes("--json"))
      jsonError(err instanceof QbackupError ? err.code : "ERR_INTERNAL", status, messageOf(err));
    return status;
  }
}

/** With --json, scripts reading the JSON lines learn of a failure there too (the person on stderr). */
function jsonError(code: string, exitStatus: number, message: string): void {
  process.stdout.write(`${JSON.stringify({ type: "error", code, exitStatus, message })}\n`);
}
