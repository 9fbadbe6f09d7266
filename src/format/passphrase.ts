/**
 * Which user passphrases a backup may be made with. The reference tools carry the passphrase
 * through a terminal in canonical mode and strip trailing whitespace from passphrase files, so
 * anything else would derive different keys there than here (spec §4.6).
 */
import { QbackupError } from "../errors.js";

export const MIN_PASSPHRASE_BYTES = 1;
export const MAX_PASSPHRASE_BYTES = 1024;

// C0 controls, DEL and C1 controls: a terminal in canonical mode edits or drops them.
// eslint-disable-next-line no-control-regex
const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f]/u;
const LONE_SURROGATE = /\p{Cs}/u;

/** Throws ERR_PASSPHRASE_INVALID naming the rule the passphrase breaks. */
export function validatePassphrase(passphrase: string): void {
  const fail = (why: string) =>
    new QbackupError("ERR_PASSPHRASE_INVALID", `passphrase rejected: ${why}`, {
      hint: "Qubes' own restore and the emergency procedure could not reproduce it",
    });
  const bytes = Buffer.byteLength(passphrase, "utf8");
  if (bytes < MIN_PASSPHRASE_BYTES) throw fail("it is empty");
  if (bytes > MAX_PASSPHRASE_BYTES) throw fail(`it is ${bytes} bytes, at most ${MAX_PASSPHRASE_BYTES} are allowed`);
  // A lone surrogate cannot be encoded; U+FFFD is what decoding invalid UTF-8 from a file produced.
  if (LONE_SURROGATE.test(passphrase) || passphrase.includes("\ufffd")) throw fail("it is not valid UTF-8 text");
  if (CONTROL_CHARS.test(passphrase)) throw fail("it contains a control character (newline, tab, NUL, …)");
  if (passphrase.trim() !== passphrase) throw fail("it starts or ends with whitespace");
}
