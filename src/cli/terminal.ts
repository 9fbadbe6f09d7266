/** Yes/no questions on the controlling terminal (never on stdin, which may carry data). */
import { openSync } from "node:fs";
import * as readline from "node:readline/promises";
import * as tty from "node:tty";
import { QbackupError } from "../errors.js";

export async function confirm(question: string): Promise<boolean> {
  let input: tty.ReadStream;
  let output: tty.WriteStream;
  try {
    input = new tty.ReadStream(openSync("/dev/tty", "r"));
    output = new tty.WriteStream(openSync("/dev/tty", "w"));
  } catch {
    throw new QbackupError("ERR_USAGE", "cannot ask for confirmation without a terminal", {
      hint: "pass -y/--yes to proceed without asking",
    });
  }
  const rl = readline.createInterface({ input, output });
  try {
    const answer = await rl.question(`${question} [y/N] `);
    return /^y(es)?$/i.test(answer.trim());
  } finally {
    rl.close();
    input.destroy();
    output.destroy();
  }
}
