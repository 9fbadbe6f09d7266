/**
 * Sealing stage: each chunk becomes one scrypt container keyed by its own passphrase string
 * (`backup-id!path.NNN!P`) and a fresh salt. Key derivation for a chunk starts as soon as the
 * chunk's first byte exists (`prepare`), so the KDF runs on the libuv pool while compression fills
 * the chunk. The chunk is encrypted in place: no second copy of a 100 MiB buffer.
 */
import { randomBytes } from "node:crypto";
import { ContainerSealer, SALT_SIZE, deriveKeys } from "../codec/scrypt/index.js";
import type { ContainerKeys, ScryptParams } from "../codec/scrypt/index.js";
import { chunkPassphraseString } from "../format/names.js";

interface PendingKeys {
  salt: Buffer;
  keys: Promise<ContainerKeys>;
}

export class ChunkSealer {
  private readonly pending = new Map<string, PendingKeys>();

  /** KDFs started for chunks that never came (the file compressed better than estimated). */
  discard(fileBase: string): void {
    for (const id of this.pending.keys()) if (id.startsWith(`${fileBase}\0`)) this.pending.delete(id);
  }

  constructor(
    private readonly backupId: string,
    private readonly passphrase: string,
    private readonly params: ScryptParams,
  ) {}

  /**
   * Start deriving the keys of chunk `index` of `fileBase`, and of up to `ahead` following
   * chunks the file is expected to have (`expectedChunks`), so that several KDFs run at once.
   */
  prepareAhead(fileBase: string, index: number, ahead: number, expectedChunks: number): void {
    for (let i = index; i <= index + ahead && (i === index || i < expectedChunks); i++) this.prepare(fileBase, i);
  }

  /** Start deriving the keys of chunk `index` of `fileBase`. Idempotent. */
  prepare(fileBase: string, index: number): void {
    const id = `${fileBase}\0${index}`;
    if (this.pending.has(id)) return;
    const salt = randomBytes(SALT_SIZE);
    const keys = deriveKeys(chunkPassphraseString(this.backupId, fileBase, index, this.passphrase), salt, this.params);
    keys.catch(() => undefined); // observed when awaited in seal(); avoid an unhandled rejection meanwhile
    this.pending.set(id, { salt, keys });
  }

  /** Encrypts `data` in place and returns the container as [header, data, mac]. */
  async seal(fileBase: string, index: number, data: Buffer): Promise<[Buffer, Buffer, Buffer]> {
    this.prepare(fileBase, index);
    const id = `${fileBase}\0${index}`;
    const { salt, keys } = this.pending.get(id)!;
    this.pending.delete(id);
    const sealer = ContainerSealer.fromKeys(await keys, this.params, salt);
    const header = sealer.header();
    sealer.updateInPlace(data);
    return [header, data, sealer.final()];
  }
}
