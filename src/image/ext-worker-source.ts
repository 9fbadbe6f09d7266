/**
 * The code of the worker thread that runs libext2fs (the `ext2fs` package, e2fsprogs compiled to
 * WebAssembly). It is a string run with `eval` because the worker must load the same way from
 * dist/ and from the TypeScript sources under the test runner, and because it isolates what the
 * emscripten module does to its process (it installs global uncaughtException/unhandledRejection
 * handlers): the main thread can always terminate it, so a filesystem that makes the library spin
 * costs a timeout, never a hang.
 *
 * Protocol (one message at a time): {id, op, ...args} → {id, ok: true, value} or
 * {id, ok: false, message, errno, code}. The image file is opened read-only.
 */
export const EXT_WORKER_SOURCE = String.raw`
"use strict";
const { parentPort, workerData } = require("node:worker_threads");
const fs = require("node:fs");
const ext2fs = require(workerData.ext2fsPath);

/**
 * The image file as libext2fs's disk: reads inside the filesystem's bounds only. libext2fs writes
 * (an inode's access time, when a file is read): those go to a bounded in-memory overlay of
 * 512-byte sectors, so the image is never changed and later reads see them.
 */
const SECTOR = 512;
class ImageDisk {
  constructor(fd, size, maxOverlay) { this.fd = fd; this.size = size; this.overlay = new Map(); this.maxOverlay = maxOverlay; }
  checkRange(position, length) {
    if (!Number.isSafeInteger(position) || !Number.isSafeInteger(length) || position < 0 || length < 0 || position + length > this.size) {
      throw new Error("access outside the filesystem");
    }
  }
  async read(buffer, bufferOffset, length, position) {
    this.checkRange(position, length);
    let done = 0;
    while (done < length) {
      const n = fs.readSync(this.fd, buffer, bufferOffset + done, length - done, position + done);
      if (n === 0) break; // past the end of a sparse file: zeros
      done += n;
    }
    buffer.fill(0, bufferOffset + done, bufferOffset + length);
    if (this.overlay.size > 0) {
      for (let s = Math.floor(position / SECTOR); s * SECTOR < position + length; s++) {
        const sector = this.overlay.get(s);
        if (!sector) continue;
        const from = Math.max(s * SECTOR, position);
        const to = Math.min((s + 1) * SECTOR, position + length);
        sector.copy(buffer, bufferOffset + from - position, from - s * SECTOR, to - s * SECTOR);
      }
    }
    return { bytesRead: length, buffer };
  }
  async write(buffer, bufferOffset, length, position) {
    this.checkRange(position, length);
    for (let s = Math.floor(position / SECTOR); s * SECTOR < position + length; s++) {
      let sector = this.overlay.get(s);
      if (!sector) {
        if (this.overlay.size >= this.maxOverlay) throw new Error("too many writes");
        sector = Buffer.alloc(SECTOR);
        await this.read(sector, 0, Math.min(SECTOR, this.size - s * SECTOR), s * SECTOR);
        this.overlay.set(s, sector);
      }
      const from = Math.max(s * SECTOR, position);
      const to = Math.min((s + 1) * SECTOR, position + length);
      Buffer.from(buffer.buffer, buffer.byteOffset, buffer.length).copy(sector, from - s * SECTOR, bufferOffset + from - position, bufferOffset + to - position);
    }
    return { bytesWritten: length, buffer };
  }
  async flush() {}
  async discard() {}
}

let mounted;
let fd;
const files = new Map();
let nextFile = 1;

function statOf(st) {
  return { mode: st.mode, size: st.size, mtimeMs: st.mtime.getTime(), uid: st.uid, gid: st.gid, ino: st.ino, nlink: st.nlink };
}

const ops = {
  async mount({ path, offset, size }) {
    fd = fs.openSync(path, "r");
    mounted = await ext2fs.mount(new ImageDisk(fd, offset + size, workerData.maxOverlaySectors), offset);
    return null;
  },
  async readdir({ path }) { return await mounted.promises.readdir(path); },
  async lstat({ path }) { return statOf(await mounted.promises.lstat(path)); },
  async readlink({ path }) { return await mounted.promises.readlink(path); },
  async open({ path }) {
    const handle = await mounted.promises.open(path, "r");
    const id = nextFile++;
    files.set(id, handle);
    return id;
  },
  async read({ file, position, length }) {
    const handle = files.get(file);
    const buffer = Buffer.alloc(length);
    const { bytesRead } = await handle.read(buffer, 0, length, position);
    return buffer.subarray(0, bytesRead);
  },
  async close({ file }) {
    const handle = files.get(file);
    files.delete(file);
    if (handle) await handle.close();
    return null;
  },
  async umount() {
    for (const handle of files.values()) await handle.close().catch(() => {});
    files.clear();
    if (mounted) await ext2fs.umount(mounted).catch(() => {});
    mounted = undefined;
    if (fd !== undefined) fs.closeSync(fd);
    fd = undefined;
    return null;
  },
};

parentPort.on("message", async (request) => {
  try {
    const value = await ops[request.op](request);
    parentPort.postMessage({ id: request.id, ok: true, value });
  } catch (error) {
    const message = error && error.message ? String(error.message) : String(error);
    const errno = error && typeof error.errno === "number" ? error.errno : null;
    parentPort.postMessage({ id: request.id, ok: false, message, errno, code: error && error.code ? String(error.code) : null });
  }
});
`;
