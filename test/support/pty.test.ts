/** Tests of the pty harness itself: a real terminal, echo, sizes, exit status, steps, timeouts. */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { plainText, runInPty, runQbackupInPty, shQuote } from "./pty.js";

const sh = (script: string) => ["/bin/sh", "-c", script];
const node = (code: string) => [process.execPath, "-e", code];

/** Alive means present and not a zombie (an orphan's zombie may wait for a lazy init to reap it). */
function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

describe("runInPty", () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "qb-"));
  });
  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("gives the child a terminal on stdin, stdout and stderr, of the requested size", async () => {
    const code =
      "console.log('tty=' + JSON.stringify([process.stdin.isTTY, process.stdout.isTTY, process.stderr.isTTY," +
      " process.stderr.columns, process.stdout.rows, require('node:fs').existsSync('/dev/tty')]))";
    const run = await runInPty(node(code), { columns: 93, rows: 31 });
    expect(run).toMatchObject({ status: 0, signal: null });
    expect(plainText(run.transcript)).toContain("tty=[true,true,true,93,31,true]");
    expect(run.transcript).toContain("\r\n"); // the line discipline's ONLCR: a real terminal
  });

  it("defaults to 80x24 and TERM=xterm-256color, and hands the caller's SHELL back", async () => {
    const run = await runInPty(sh('stty size; echo "term=$TERM shell=${SHELL-unset}"'), {
      env: { SHELL: "/bin/my shell" },
    });
    expect(plainText(run.transcript)).toBe("24 80\nterm=xterm-256color shell=/bin/my shell\n");
  });

  it("passes every argument through verbatim", async () => {
    const words = ["a b", "it's", "$HOME", '"q"', "\\", "*", "-e", "", "ünï\tcode", "`id`"];
    const run = await runInPty(["printf", "[%s]", ...words]);
    expect(plainText(run.transcript)).toBe(words.map((w) => `[${w}]`).join(""));
    expect(shQuote("it's")).toBe(`'it'\\''s'`);
  });

  it("does not show input typed while echo is off, and sends only after the prompt", async () => {
    // A step sent before `stty -echo` would be echoed: the sleep leaves room for such a bug to show.
    const script = 'echo ready; sleep 0.2; stty -echo; printf "Secret: "; read x; stty echo; echo; echo "got:$x"';
    const run = await runInPty(sh(script), { steps: [{ waitFor: /Secret: /, send: "hunter2\r" }] });
    expect(run.status).toBe(0);
    expect(plainText(run.transcript)).toBe("ready\nSecret: \ngot:hunter2\n");
    expect(run.transcript.split("hunter2")).toHaveLength(2);
  });

  it("shows typed input when echo is on", async () => {
    const run = await runInPty(sh('printf "Name: "; read x; echo "hello $x"'), {
      steps: [{ waitFor: /Name: /, send: "alice\r" }],
    });
    expect(plainText(run.transcript)).toBe("Name: alice\nhello alice\n");
  });

  it("matches each step only after the previous step's match (same prompt twice)", async () => {
    const run = await runInPty(sh('printf "P: "; read a; printf "P: "; read b; echo "$a-$b"'), {
      steps: [
        { waitFor: /P: /, send: "one\r" },
        { waitFor: /P: /, send: "two\r" },
      ],
    });
    expect(plainText(run.transcript)).toBe("P: one\nP: two\none-two\n");
  });

  it("keeps stdin open after the last step until the program exits", async () => {
    const run = await runInPty(sh('read a; sleep 0.3; if read b; then echo "b=$b"; else echo "eof"; fi'), {
      steps: [{ waitFor: /^/, send: "x\r" }],
      timeoutMs: 1_000,
    }).catch((e: unknown) => e);
    // The second read blocks (no EOF typed): the run times out waiting for the exit.
    expect(run).toBeInstanceOf(Error);
    expect((run as Error).message).toMatch(/waiting for the program to exit after the last step/);
    expect((run as Error).message).not.toContain("eof");
  });

  it("reports exit statuses and signals apart, even 128+N", async () => {
    expect(await runInPty(sh("exit 3"))).toMatchObject({ status: 3, signal: null });
    expect(await runInPty(sh("exit 130"))).toMatchObject({ status: 130, signal: null });
    expect(await runInPty(sh("kill -TERM $$"))).toMatchObject({ status: null, signal: "SIGTERM" });
  });

  it("delivers a typed Ctrl-C to the program as SIGINT", async () => {
    const run = await runInPty(sh("echo ready; exec sleep 5"), { steps: [{ waitFor: /ready/, send: "\x03" }] });
    expect(run).toMatchObject({ status: null, signal: "SIGINT" });
  });

  it("rejects if the program ends before a step matched", async () => {
    const err = await runInPty(sh("echo bye; exit 4"), { steps: [{ waitFor: /Passphrase:/, send: "x\r" }] }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/ended \(status 4\) before step 1\/1 \(waitFor \/Passphrase:\/\)/);
    expect((err as Error).message).toContain("bye");
  });

  it("on timeout, names the step, quotes the output, and kills every process it started", async () => {
    const pids = path.join(dir, "pids");
    // Ignoring HUP and TERM: only SIGKILL of each process (not a hangup of the pty) ends these.
    const script = `trap "" HUP TERM; echo $$ > ${shQuote(pids)}; echo $PPID >> ${shQuote(pids)}; sleep 30 & echo $! >> ${shQuote(pids)}; printf '\\033[1mworking\\033[0m\\n'; wait`;
    const started = Date.now();
    const err = await runInPty(sh(script), {
      steps: [
        { waitFor: /working/, send: "" },
        { waitFor: /never shown/, send: "x\r" },
      ],
      timeoutMs: 800,
    }).catch((e: unknown) => e);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(err).toBeInstanceOf(Error);
    const message = (err as Error).message;
    expect(message).toMatch(/timed out after 800 ms waiting for step 2\/2 \(waitFor \/never shown\/\)/);
    expect(message).toContain("\nworking\n");
    expect(message).not.toContain("\x1b");
    const ids = fs.readFileSync(pids, "utf8").trim().split("\n").map(Number);
    expect(ids).toHaveLength(3); // sh, the launcher, sleep
    for (let i = 0; i < 50 && ids.some(alive); i++) await new Promise((r) => setTimeout(r, 20));
    expect(ids.filter(alive)).toEqual([]);
  });
});

describe("plainText", () => {
  it("drops ANSI escapes and carriage returns", () => {
    const raw =
      "\x1b[?25l\r\x1b[K 10% [##   ]\r\x1b[K100% [#####]\x1b[0m\r\n\x1b]0;title\x07\x1b(Bdone\x1b[1;32m!\x1b[m\r\n";
    expect(plainText(raw)).toBe(" 10% [##   ]100% [#####]\ndone!\n");
  });
});

describe("runQbackupInPty", () => {
  it("runs the built qbackup in a terminal", async () => {
    const run = await runQbackupInPty(["--version"]);
    expect(run).toMatchObject({ status: 0, signal: null });
    expect(plainText(run.transcript)).toMatch(/^\d+\.\d+\.\d+\n$/);
  });
});
