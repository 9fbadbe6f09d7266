/**
 * Sealing stage: every unit (the header's authenticator, each chunk) becomes one scrypt
 * container keyed by its own passphrase string and a fresh salt. Key derivation for a unit can
 * start long before its data exists (`prepare…`), so several KDFs run on the libuv pool while
 * compression fills chunks; chunks are encrypted in place, with no second copy of 100 MiB.
 * At most `maxRunning` KDFs run at once (each holds 128·r·N bytes); the others wait their turn,
 * in the order they were asked for, without holding any memory.
 */
import { randomBytes } from "node:crypto";
import { ContainerSealer, SALT_SIZE, deriveKeys } from "../codec/scrypt/index.js";
import type { ContainerKeys, ScryptParams } from "../codec/scrypt/index.js";
import { BACKUP_HEADER_HMAC_NAME, chunkPassphraseString, headerPassphraseString } from "../format/names.js";
import { ConcurrencyLimit } from "../runtime/limit.js";

interface PendingKeys {
  salt: Buffer;
  keys: Promise<ContainerKeys>;
}

const chunkId = (fileBase: string, index: number) => `${fileBase}\0${index}`;

export class ChunkSealer {
  private readonly pending = new Map<string, PendingKeys>();
  private readonly limit: ConcurrencyLimit;

  constructor(
    private readonly backupId: string,
    private readonly passphrase: string,
    private readonly params: ScryptParams,
    maxRunning = 1,
  ) {
    this.limit = new ConcurrencyLimit(maxRunning);
  }

  /** Start deriving the keys of `backup-header.hmac`. */
  prepareHeader(): void {
    this.prepareUnit(BACKUP_HEADER_HMAC_NAME, () => headerPassphraseString(this.passphrase));
  }

  /** The header's authenticator: the header itself, sealed with `backup-header!P`. */
  async sealHeader(header: Buffer): Promise<Buffer[]> {
    this.prepareHeader();
    return this.sealUnit(BACKUP_HEADER_HMAC_NAME, Buffer.from(header));
  }

  /** Start deriving the keys of chunk `index` of `fileBase`. Idempotent. */
  prepare(fileBase: string, index: number): void {
    this.prepareUnit(chunkId(fileBase, index), () =>
      chunkPassphraseString(this.backupId, fileBase, index, this.passphrase),
    );
  }

  /**
   * Start deriving the keys of chunk `index` and of up to `ahead` following chunks the file is
   * expected to have (`expectedChunks`, an upper bound), so that several KDFs run at once.
   */
  prepareAhead(fileBase: string, index: number, ahead: number, expectedChunks: number): void {
    for (let i = index; i <= index + ahead && (i === index || i < expectedChunks); i++) this.prepare(fileBase, i);
  }

  /** Encrypts `data` in place and returns the container as [header, data, mac]. */
  async seal(fileBase: string, index: number, data: Buffer): Promise<Buffer[]> {
    this.prepare(fileBase, index);
    return this.sealUnit(chunkId(fileBase, index), data);
  }

  /** Forget keys derived for chunks that never came (the file compressed better than estimated). */
  discard(fileBase: string): void {
    for (const id of this.pending.keys()) if (id.startsWith(`${fileBase}\0`)) this.pending.delete(id);
  }

  private prepareUnit(id: string, passphraseString: () => Buffer): void {
    if (this.pending.has(id)) return;
    const salt = randomBytes(SALT_SIZE);
    const keys = this.limit.run(() => deriveKeys(passphraseString(), salt, this.params));
    keys.catch(() => undefined); // observed when awaited in sealUnit(); avoid an unhandled rejection meanwhile
    this.pending.set(id, { salt, keys });
  }

  private async sealUnit(id: string, data: Buffer): Promise<Buffer[]> {
    const { salt, keys } = this.pending.get(id)!;
    this.pending.delete(id);
    const sealer = ContainerSealer.fromKeys(await keys, this.params, salt);
    const header = sealer.header();
    sealer.updateInPlace(data);
    return [header, data, sealer.final()];
  }
}
