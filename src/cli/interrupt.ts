/**
 * SIGINT/SIGTERM: run every registered cleanup (remove partial outputs), say so on one line, and
 * exit 130/143. Installed once, before any output exists, so no signal can slip between opening
 * a partial file and registering its cleanup.
 */
import { EXIT_SIGINT, EXIT_SIGTERM } from "./exit.js";

type Cleanup = () => Promise<void>;
const cleanups = new Set<Cleanup>();
let interrupted: NodeJS.Signals | undefined;

/** The signal that interrupted this run, if one did: errors after it are consequences, not news. */
export function interruptedBy(): NodeJS.Signals | undefined {
  return interrupted;
}

/** Register a cleanup; call the returned function once it is no longer needed. */
export function onInterrupt(cleanup: Cleanup): () => void {
  cleanups.add(cleanup);
  return () => cleanups.delete(cleanup);
}

export function installInterruptHandlers(beforeExit: () => void = () => undefined): void {
  const handle = (signal: NodeJS.Signals) => {
    if (interrupted) return;
    interrupted = signal;
    beforeExit();
    void Promise.allSettled([...cleanups].map((c) => c())).then(() => {
      process.stderr.write(`qbackup: error: interrupted by ${signal}; nothing was left behind\n`);
      process.exit(signal === "SIGINT" ? EXIT_SIGINT : EXIT_SIGTERM);
    });
  };
  process.on("SIGINT", handle);
  process.on("SIGTERM", handle);
}
