/** What profile-file.ts needs before any YAML is parsed: the size bound and one-line ERR_PROFILE errors. */
import { QbackupError } from "../errors.js";

/** A profile is a screenful of settings; anything larger is a mistake (or an attack on the parser). */
export const MAX_PROFILE_BYTES = 64 * 1024;

/** Control characters would break the one-line message. */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;

export function oneLine(text: string): string {
  return text.replace(CONTROL, "?");
}

export function profileError(message: string): QbackupError {
  return new QbackupError("ERR_PROFILE", oneLine(message));
}
