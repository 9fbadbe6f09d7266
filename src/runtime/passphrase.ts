/**
 * Where the passphrase comes from: a file (or stdin), a command's stdout (a vault qube, `pass`,
 * a keyring), or a prompt on the controlling terminal with echo off. The passphrase is never put
 * into argv or the environment of any child process.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs/promises";
import { openSync } from "node:fs";
import * as tty from "node:tty";
import { read } from "read";
import { QbackupError } from "../errors.js";

/** Generous: a passphrase is at most 1 KiB; a larger source is a mistake (a key file, a disk image). */
export const MAX_PASSPHRASE_SOURCE_BYTES = 64 * 1024;

export type PassphraseSource =
  | { kind: "file"; path: string } // "-" = stdin
  | { kind: "command"; command: string }
  | { kind: "prompt"; confirm: boolean }
  /** Already at hand (a profile's `passphrase`); `origin` names it in messages. */
  | { kind: "value"; passphrase: string; origin: string };

/** First line, trailing whitespace stripped: what qvm-backup-restore does with --passphrase-file. */
export function passphraseFromText(bytes: Buffer, origin: string): string {
  const text = bytes.toString("utf8");
  const firstLine = text.split(/\r?\n/, 1)[0] ?? "";
  const passphrase = firstLine.replace(/\s+$/u, "");
  if (passphrase === "") throw new QbackupError("ERR_PASSPHRASE_SOURCE", `${origin} gave an empty passphrase`);
  return passphrase;
}

export async function readPassphrase(source: PassphraseSource): Promise<string> {
  switch (source.kind) {
    case "file":
      return passphraseFromText(await readBounded(source.path), source.path === "-" ? "stdin" : source.path);
    case "command":
      return passphraseFromText(await runPassphraseCommand(source.command), "the passphrase command");
    case "prompt":
      return promptPassphrase(source.confirm);
    case "value":
      return passphraseFromText(Buffer.from(source.passphrase, "utf8"), source.origin);
  }
}

async function readBounded(file: string): Promise<Buffer> {
  const origin = file === "-" ? "stdin" : `passphrase file ${file}`;
  try {
    const handle = file === "-" ? undefined : await fs.open(file, "r");
    try {
      const chunks: Buffer[] = [];
      let total = 0;
      const stream = handle ? handle.createReadStream({ autoClose: false }) : process.stdin;
      for await (const piece of stream as AsyncIterable<Buffer>) {
        total += piece.length;
        if (total > MAX_PASSPHRASE_SOURCE_BYTES) {
          throw new QbackupError(
            "ERR_PASSPHRASE_SOURCE",
            `${origin} is larger than ${MAX_PASSPHRASE_SOURCE_BYTES} bytes`,
          );
        }
        chunks.push(piece);
        // one line is all we need
        if (piece.includes(0x0a)) break;
      }
      return Buffer.concat(chunks);
    } finally {
      await handle?.close();
    }
  } catch (err) {
    if (err instanceof QbackupError) throw err;
    const detail = err instanceof Error ? err.message : String(err);
    throw new QbackupError("ERR_PASSPHRASE_SOURCE", `cannot read ${origin}: ${detail}`, { cause: err });
  }
}

/** Runs `sh -c COMMAND`; its stdout is the passphrase. stderr passes through (so it can prompt). */
async function runPassphraseCommand(command: string): Promise<Buffer> {
  const child = spawn("/bin/sh", ["-c", command], { stdio: ["ignore", "pipe", "inherit"] });
  const chunks: Buffer[] = [];
  let total = 0;
  let tooLarge = false;
  child.stdout.on("data", (d: Buffer) => {
    total += d.length;
    if (total > MAX_PASSPHRASE_SOURCE_BYTES) {
      tooLarge = true;
      child.kill("SIGKILL");
    } else chunks.push(d);
  });
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (c) => resolve(c));
  }).catch((err: unknown) => {
    throw new QbackupError("ERR_PASSPHRASE_SOURCE", `passphrase command could not be started`, { cause: err });
  });
  if (tooLarge) {
    throw new QbackupError(
      "ERR_PASSPHRASE_SOURCE",
      `passphrase command printed more than ${MAX_PASSPHRASE_SOURCE_BYTES} bytes`,
    );
  }
  if (code !== 0) throw new QbackupError("ERR_PASSPHRASE_SOURCE", `passphrase command exited with status ${code}`);
  return Buffer.concat(chunks);
}

/** Prompt on the controlling terminal with echo off; with `confirm`, ask twice and compare. */
async function promptPassphrase(confirm: boolean): Promise<string> {
  let fdIn: number;
  let fdOut: number;
  try {
    fdIn = openSync("/dev/tty", "r");
    fdOut = openSync("/dev/tty", "w");
  } catch {
    throw new QbackupError("ERR_PASSPHRASE_SOURCE", "no terminal to ask for the passphrase", {
      hint: "use --passphrase-file FILE (or - for stdin) or --passphrase-command CMD",
    });
  }
  const input = new tty.ReadStream(fdIn);
  const output = new tty.WriteStream(fdOut);
  try {
    const ask = (prompt: string) => read({ prompt, silent: true, replace: "", input, output, terminal: true });
    const first = await ask("Backup passphrase: ");
    if (confirm) {
      const second = await ask("Enter again for verification: ");
      if (first !== second) throw new QbackupError("ERR_PASSPHRASE_MISMATCH", "the passphrases do not match");
    }
    return first;
  } finally {
    input.destroy();
    output.destroy();
  }
}
