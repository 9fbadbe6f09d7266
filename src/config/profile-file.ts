/**
 * Profile files: loadProfile reads one (bounded, not through a symlink when it holds a passphrase,
 * which must then be private) and saveProfile writes one atomically (0600, never replacing).
 */
import { randomBytes } from "node:crypto";
import { constants as fsConstants } from "node:fs";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { QbackupError, systemErrorCode } from "../errors.js";
import { MAX_PROFILE_BYTES, oneLine, profileError } from "./profile-errors.js";
import type { LoadedProfile, Profile } from "./profile.js";
import { profileNameOf, profilePath } from "./profile-path.js";

const PROFILE_MODE = 0o600;
const PROFILE_DIR_MODE = 0o700;
const GROUP_OTHER_BITS = 0o077;
const TEMP_RANDOM_BYTES = 6;

/**
 * The parser needs yaml and zod: ~7 MB of heap and ~0.2 s to load, which every command would
 * otherwise pay (and every garbage collection of a long backup would mark). Loaded only when a
 * profile is read or written.
 */
const profileCodec = () => import("./profile.js");

function octalMode(mode: number): string {
  return `0${(mode & 0o777).toString(8).padStart(3, "0")}`;
}

/** Reads profilePath(nameOrPath), checks it (a passphrase inside needs a private, real file), parses it. */
export async function loadProfile(nameOrPath: string, env: NodeJS.ProcessEnv = process.env): Promise<LoadedProfile> {
  const file = profilePath(nameOrPath, env);
  let handle: fs.FileHandle;
  let symlink = false;
  try {
    try {
      handle = await fs.open(file, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
    } catch (err) {
      if (systemErrorCode(err) !== "ELOOP") throw err;
      symlink = true;
      handle = await fs.open(file, fsConstants.O_RDONLY);
    }
  } catch (err) {
    const code = systemErrorCode(err);
    if (code === "ENOENT") throw profileError(`profile ${nameOrPath} not found (looked for ${file})`);
    throw new QbackupError("ERR_PROFILE", oneLine(`${file}: cannot read profile (${code ?? String(err)})`), {
      cause: err,
    });
  }
  let text: string;
  let mode: number;
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw profileError(`${file}: not a regular file`);
    if (st.size > MAX_PROFILE_BYTES) throw profileError(`${file}: profile larger than ${MAX_PROFILE_BYTES} bytes`);
    mode = st.mode;
    const buffer = Buffer.alloc(MAX_PROFILE_BYTES + 1);
    let length = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, null);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length > MAX_PROFILE_BYTES) throw profileError(`${file}: profile larger than ${MAX_PROFILE_BYTES} bytes`);
    }
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(buffer.subarray(0, length));
    } catch {
      throw profileError(`${file}: not UTF-8 text`);
    }
  } finally {
    await handle.close();
  }

  const home = env["HOME"] !== undefined && path.isAbsolute(env["HOME"]) ? env["HOME"] : os.homedir();
  const { parseProfile } = await profileCodec();
  const profile = parseProfile(text, file, { home });
  if (profile.passphrase !== undefined) {
    if (symlink) {
      throw profileError(
        `${file}: holds a passphrase in plain text but is a symbolic link; put the file itself there, mode 600`,
      );
    }
    if ((mode & GROUP_OTHER_BITS) !== 0) {
      throw profileError(
        `${file}: holds a passphrase in plain text but is readable by others (mode ${octalMode(mode)}); run chmod 600 ${file}`,
      );
    }
  }
  return { name: profileNameOf(file), file, profile };
}

/**
 * Writes profilePath(name) (creating directories, mode 0700 dirs / 0600 file) atomically: temp name in
 * the same dir then link/rename; refuses an existing file unless overwrite (ERR_DEST_EXISTS). Returns the path.
 */
export async function saveProfile(
  nameOrPath: string,
  profile: Profile,
  opts: { overwrite?: boolean; env?: NodeJS.ProcessEnv } = {},
): Promise<string> {
  const file = profilePath(nameOrPath, opts.env);
  const { parseProfile, renderProfile } = await profileCodec();
  const text = renderProfile(profile);
  parseProfile(text, file); // never write a profile that would not load
  const dir = path.dirname(file);
  await fs.mkdir(dir, { recursive: true, mode: PROFILE_DIR_MODE });
  const temp = path.join(dir, `.${path.basename(file)}.${randomBytes(TEMP_RANDOM_BYTES).toString("hex")}.tmp`);
  let published = false;
  try {
    const handle = await fs.open(temp, "wx", PROFILE_MODE);
    try {
      await handle.writeFile(text, "utf8");
      await handle.chmod(PROFILE_MODE);
      await handle.sync();
    } finally {
      await handle.close();
    }
    if (opts.overwrite === true) {
      await fs.rename(temp, file);
      published = true;
    } else {
      try {
        await fs.link(temp, file);
      } catch (err) {
        if (systemErrorCode(err) === "EEXIST") {
          throw new QbackupError("ERR_DEST_EXISTS", oneLine(`profile ${file} already exists`), { cause: err });
        }
        throw err;
      }
    }
  } catch (err) {
    if (err instanceof QbackupError) throw err;
    const detail = systemErrorCode(err) ?? (err instanceof Error ? err.message : String(err));
    throw new QbackupError("ERR_PROFILE", oneLine(`${file}: cannot write profile (${detail})`), { cause: err });
  } finally {
    if (!published) await fs.rm(temp, { force: true });
  }
  return file;
}
