/**
 * Key derivation for the restore side, ahead of the reader where the source allows it.
 *
 * Every container's KDF runs through one limit of `jobs` at a time (each holds 128·r·N bytes).
 * From a seekable backup, the members after the reader's position are looked at with positional
 * reads (their tar header and 96-byte container header) and their KDFs started early, so several
 * cores derive keys while the current chunk is authenticated, decrypted and placed. The bytes
 * looked at are not trusted: the main pass reads each header again and requires it to equal the
 * one its KDF was started from, so a source that answers the look-ahead differently gains nothing
 * (and a container's own signature and MAC still decide whether its key is right).
 */
import { CONTAINER_HEADER_SIZE, ContainerOpener } from "../codec/scrypt/index.js";
import type { KdfLimits } from "../codec/scrypt/index.js";
import { QbackupError } from "../errors.js";
import { ConcurrencyLimit } from "../runtime/limit.js";
import type { OuterReader } from "./outer-reader.js";

/** The passphrase string of a member worth a KDF, or undefined to leave it alone. */
export type PassphraseFor = (memberName: string) => Buffer | undefined;

interface Started {
  header: Buffer;
  passphrase: Buffer;
  opener: Promise<ContainerOpener>;
}

export class KeyDerivation {
  private readonly limit: ConcurrencyLimit;
  private readonly started = new Map<string, Started>();
  private passphraseFor: PassphraseFor = () => undefined;

  /** `lookAhead`: how many following members to start KDFs for (0: none; streams: never). */
  constructor(
    private readonly reader: OuterReader,
    private readonly kdfLimits: KdfLimits,
    jobs: number,
    private lookAhead: number,
  ) {
    this.limit = new ConcurrencyLimit(jobs);
  }

  /** Runs other KDF work (the header's container) within the same limit. */
  run<T>(work: () => Promise<T>): Promise<T> {
    return this.limit.run(work);
  }

  /** Which members are worth a KDF from now on, and with which passphrase string. */
  target(passphraseFor: PassphraseFor, lookAhead = this.lookAhead): void {
    this.passphraseFor = passphraseFor;
    this.lookAhead = lookAhead;
  }

  /** Starts the KDFs of the next members the reader will reach (seekable sources only). */
  async fill(): Promise<void> {
    if (this.lookAhead <= 0) return;
    for (const member of await this.reader.peekAhead(this.lookAhead)) {
      if (this.started.has(member.name)) continue;
      const passphrase = this.passphraseFor(member.name);
      if (passphrase === undefined) continue;
      const header = await this.reader.peekData(member, CONTAINER_HEADER_SIZE);
      if (header === undefined || header.length < CONTAINER_HEADER_SIZE) continue;
      const opener = this.limit.run(() => ContainerOpener.create(header, passphrase, this.kdfLimits));
      opener.catch(() => undefined); // awaited, and its error reported, when the reader gets there
      this.started.set(member.name, { header, passphrase, opener });
    }
  }

  /**
   * The opener of the member being read, whose container header was just read: the one started
   * ahead if it was started from these very bytes and passphrase, otherwise a new KDF.
   */
  opener(memberName: string, header: Buffer, passphrase: Buffer): Promise<ContainerOpener> {
    const early = this.started.get(memberName);
    this.started.delete(memberName);
    if (early !== undefined && early.passphrase.equals(passphrase)) {
      if (!early.header.equals(header)) {
        return Promise.reject(changedWhileRead(memberName));
      }
      return early.opener;
    }
    // the reader waits for this one: it goes before the look-ahead's
    return this.limit.run(() => ContainerOpener.create(header, passphrase, this.kdfLimits), true);
  }

  /** The reader passed a member without opening it: forget its KDF. */
  forget(memberName: string): void {
    this.started.delete(memberName);
  }
}

/** A member read twice (look-ahead and reader, or two passes) gave different bytes. */
export function changedWhileRead(memberName: string): QbackupError {
  return new QbackupError("ERR_CHUNK_AUTH", `member ${memberName} changed while it was being read`, {
    hint: "the backup source returned different bytes for the same member",
  });
}
