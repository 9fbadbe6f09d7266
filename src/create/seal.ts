/**
 * Sealing stage: every unit (the header's authenticator, each chunk) becomes one scrypt
 * container keyed by its own passphrase string and a fresh salt. Key derivation for a unit can
 * start long before its data exists (`prepare…`), so several KDFs run on the libuv pool while
 * compression fills chunks; a chunk is either sealed whole (encrypted in place, with no second
 * copy of 100 MiB) or opened to be streamed as its bytes arrive.
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
  /** Set once `keys` has settled. */
  settled: boolean;
}

const chunkId = (fileBase: string, index: number) => `${fileBase}\0${index}`;

export class ChunkSealer {
  private readonly pending = new Map<string, PendingKeys>();
  /** Units whose keys were handed out (and forgotten). */
  private readonly used = new Set<string>();
  private started = 0;
  private readonly limit: ConcurrencyLimit;

  constructor(
    private readonly backupId: string,
    private readonly passphrase: string,
    private readonly params: ScryptParams,
    maxRunning = 1,
  ) {
    this.limit = new ConcurrencyLimit(maxRunning);
  }

  /** Key derivations started so far (each costs 128·r·N bytes and seconds of a core). */
  get derivations(): number {
    return this.started;
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

  /** Whether the keys of chunk `index` of `fileBase` are derived (or failed): open() will not wait. */
  ready(fileBase: string, index: number): boolean {
    return this.pending.get(chunkId(fileBase, index))?.settled ?? false;
  }

  /** A sealer for chunk `index` of `fileBase`, to stream its container: header(), update()…, final(). */
  async open(fileBase: string, index: number): Promise<ContainerSealer> {
    this.prepare(fileBase, index);
    return this.openUnit(chunkId(fileBase, index));
  }

  /** Forget the file's keys: used ones, and those derived for chunks that never came (it compressed better than estimated). */
  discard(fileBase: string): void {
    const ofFile = (id: string) => id.startsWith(`${fileBase}\0`);
    for (const id of this.pending.keys()) if (ofFile(id)) this.pending.delete(id);
    for (const id of this.used) if (ofFile(id)) this.used.delete(id);
  }

  private prepareUnit(id: string, passphraseString: () => Buffer): void {
    if (this.pending.has(id) || this.used.has(id)) return;
    const salt = randomBytes(SALT_SIZE);
    this.started++;
    const keys = this.limit.run(() => deriveKeys(passphraseString(), salt, this.params));
    const entry: PendingKeys = { salt, keys, settled: false };
    // observed when awaited in openUnit(); avoid an unhandled rejection meanwhile
    keys.then(
      () => (entry.settled = true),
      () => (entry.settled = true),
    );
    this.pending.set(id, entry);
  }

  private async openUnit(id: string): Promise<ContainerSealer> {
    const { salt, keys } = this.pending.get(id)!;
    this.pending.delete(id);
    this.used.add(id); // a later prepare() of the same chunk must not derive its keys again
    return ContainerSealer.fromKeys(await keys, this.params, salt);
  }

  private async sealUnit(id: string, data: Buffer): Promise<Buffer[]> {
    const sealer = await this.openUnit(id);
    const header = sealer.header();
    sealer.updateInPlace(data);
    return [header, data, sealer.final()];
  }
}
