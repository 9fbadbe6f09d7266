import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  REMOTE_EXISTS_STATUS,
  describeRemote,
  isRemoteSpec,
  openRemoteSource,
  parseRemote,
  rcloneArgv,
  remoteSh,
  shellQuote,
  sshArgv,
  sshCatScript,
  sshPublishScript,
  sshRemoveScript,
  sshUploadScript,
  tempPathFor,
  withDefaultName,
} from "./remote.js";
import { spawnSource } from "./source.js";

/** Run a remote command string the way sshd does: the login shell gets it as one `-c` argument. */
function remote(command: string, input?: string) {
  const r = spawnSync("/bin/sh", ["-c", command], { input });
  return { status: r.status, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

describe("parseRemote", () => {
  it("parses ssh, ssh+agent and rclone names", () => {
    expect(isRemoteSpec("ssh://h/x")).toBe(true);
    expect(isRemoteSpec("/srv/x")).toBe(false);
    expect(parseRemote("ssh://backup@store.example:2222/srv/b/x.bin")).toEqual({
      kind: "ssh",
      target: { user: "backup", host: "store.example", port: 2222 },
      path: "/srv/b/x.bin",
    });
    expect(parseRemote("ssh://store/~/b/x")).toEqual({ kind: "ssh", target: { host: "store" }, path: "b/x" });
    expect(parseRemote("ssh://[::1]:22/x")).toEqual({ kind: "ssh", target: { host: "::1", port: 22 }, path: "/x" });
    expect(parseRemote("ssh+agent://laptop@store/b1")).toEqual({
      kind: "agent",
      target: { user: "laptop", host: "store" },
      name: "b1",
    });
    expect(parseRemote("ssh+agent://store/")).toMatchObject({ kind: "agent", name: "" });
    expect(parseRemote("rclone:s3 store:bucket/dir/x.bin")).toEqual({
      kind: "rclone",
      remote: "s3 store",
      path: "bucket/dir/x.bin",
    });
  });

  it("refuses what could become an option, a second path component for the agent, or control characters", () => {
    for (const bad of [
      "ssh://-oProxyCommand=x/y",
      "ssh://-x@host/y",
      "ssh://host",
      "ssh://host:99999/x",
      "ssh://host/x\ny",
      "ssh+agent://host/a/b",
      "ssh+agent://host/../x",
      "ssh+agent://host/.hidden",
      "rclone:nocolon",
      "rclone:-flag:x",
    ]) {
      expect(() => parseRemote(bad), bad).toThrow(expect.objectContaining({ code: "ERR_USAGE" }));
    }
  });

  it("fills in the dated name for a directory and describes itself", () => {
    const now = new Date(2026, 10, 22, 15, 30, 0);
    expect(withDefaultName(parseRemote("ssh://h/srv/b/"), now)).toMatchObject({
      path: "/srv/b/qubes-backup-2026-11-22T153000",
    });
    expect(withDefaultName(parseRemote("ssh+agent://h/"), now)).toMatchObject({
      name: "qubes-backup-2026-11-22T153000",
    });
    expect(withDefaultName(parseRemote("rclone:r:"), now)).toMatchObject({ path: "qubes-backup-2026-11-22T153000" });
    expect(withDefaultName(parseRemote("ssh://h/srv/x"), now)).toMatchObject({ path: "/srv/x" });
    expect(describeRemote(parseRemote("ssh://u@h:2/~/x"))).toBe("ssh://u@h:2/~/x");
    expect(describeRemote(parseRemote("ssh://h/srv/x"))).toBe("ssh://h/srv/x");
    expect(describeRemote(parseRemote("rclone:r:a/b"))).toBe("rclone:r:a/b");
    expect(describeRemote(parseRemote("ssh+agent://[::1]/b"))).toBe("ssh+agent://[::1]/b");
  });
});

describe("argv and remote scripts", () => {
  let dir: string;
  beforeAll(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), "qb-remote-"))));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("quotes anything for a POSIX shell", () => {
    expect(shellQuote("it's")).toBe(`'it'\\''s'`);
    for (const weird of ["it's", "$(rm -rf /)", "a b\tc", "`x`", "\\", "'", "-n", "*"]) {
      expect(remote(`printf %s ${shellQuote(weird)}`).stdout).toBe(weird);
      expect(remote(remoteSh(`printf %s ${shellQuote(weird)}`)).stdout).toBe(weird);
    }
  });

  it("builds ssh and rclone argv with nothing left to a local shell", () => {
    expect(sshArgv({ user: "u", host: "h", port: 2222 }, "qbackup agent")).toEqual([
      "ssh",
      "-o",
      "BatchMode=yes",
      "-p",
      "2222",
      "--",
      "u@h",
      "qbackup agent",
    ]);
    expect(sshArgv({ host: "h" }, "x", ["ssh", "-i", "k"])).toEqual([
      "ssh",
      "-i",
      "k",
      "-o",
      "BatchMode=yes",
      "--",
      "h",
      "x",
    ]);
    expect(rcloneArgv("rcat", "r", ["a/b c"])).toEqual(["rclone", "rcat", "r:a/b c"]);
    expect(tempPathFor("/srv/b/x.bin", "abc")).toBe("/srv/b/.x.bin.partial-abc");
    expect(tempPathFor("x.bin", "abc")).toBe(".x.bin.partial-abc");
    expect(tempPathFor("d/x", "abc")).toBe("d/.x.partial-abc");
  });

  it("uploads to a temp file, refuses a taken name, and publishes only with ln", () => {
    const file = path.join(dir, "it's here.bin");
    const temp = tempPathFor(file, "0123");
    const up = remote(remoteSh(sshUploadScript(file, temp)), "payload");
    expect(up.status).toBe(0);
    expect(fs.existsSync(file)).toBe(false);
    expect(fs.readFileSync(temp, "utf8")).toBe("payload");
    expect(fs.statSync(temp).mode & 0o777).toBe(0o600);
    expect(remote(remoteSh(sshUploadScript(file, temp)), "again").status).not.toBe(0); // set -C: no clobbering
    expect(remote(remoteSh(sshPublishScript(temp, file))).status).toBe(0);
    expect(fs.readFileSync(file, "utf8")).toBe("payload");
    expect(fs.existsSync(temp)).toBe(false);
    expect(remote(remoteSh(sshCatScript(file))).stdout).toBe("payload");

    const again = remote(remoteSh(sshUploadScript(file, tempPathFor(file, "4567"))), "other");
    expect(again.status).toBe(REMOTE_EXISTS_STATUS);
    expect(again.stderr).toBe(`${file} already exists\n`);

    const temp2 = tempPathFor(file, "89ab");
    fs.writeFileSync(temp2, "late");
    expect(remote(remoteSh(sshPublishScript(temp2, file))).status).toBe(REMOTE_EXISTS_STATUS);
    expect(fs.existsSync(temp2)).toBe(false);
    expect(fs.readFileSync(file, "utf8")).toBe("payload");

    fs.writeFileSync(temp2, "x");
    expect(remote(remoteSh(sshRemoveScript(temp2))).status).toBe(0);
    expect(fs.existsSync(temp2)).toBe(false);
  });

  it("a dangling symlink counts as taken", () => {
    const link = path.join(dir, "dangling");
    fs.symlinkSync(path.join(dir, "nowhere"), link);
    expect(remote(remoteSh(sshUploadScript(link, tempPathFor(link, "1"))), "x").status).toBe(REMOTE_EXISTS_STATUS);
    expect(fs.existsSync(path.join(dir, "nowhere"))).toBe(false);
  });

  it("reads a program's stdout as a source and reports its failure with the stderr line", async () => {
    const ok = spawnSource(["/bin/sh", "-c", "printf hello"], "test", "reader", 5000);
    expect((await ok.read(100)).toString()).toBe("hello");
    expect(ok.bytesRead).toBe(5);
    await ok.close();
    const bad = spawnSource(["/bin/sh", "-c", "printf ab; echo 'cat: x: No such file' >&2; exit 1"], "t", "ssh", 5000);
    await expect(bad.read(100)).rejects.toMatchObject({
      code: "ERR_SOURCE",
      message: "ssh exited with status 1: cat: x: No such file",
    });
    const stalled = spawnSource(["sleep", "30"], "t", "ssh", 300);
    await expect(stalled.read(1)).rejects.toMatchObject({ code: "ERR_SOURCE", message: /ssh stalled/ });
    await stalled.close(true);
    expect(() => openRemoteSource(parseRemote("ssh://h/dir/"), 1000)).toThrow(
      expect.objectContaining({ code: "ERR_USAGE" }),
    );
  });
});
