/**
 * Outer archive stage: each member framed as its own small tar archive, the way the reference
 * writer's one-`tar`-run-per-member output looks (spec §2.1, §2.7), written to the sink in order.
 */
import { outerMemberHeader, outerMemberTrailer, validateOuterMemberName } from "../codec/tar/index.js";
import { QbackupError } from "../errors.js";
import type { BackupSink } from "../transport/sink.js";

export class OuterArchiveWriter {
  private written = 0;
  private readonly names = new Set<string>();

  constructor(
    private readonly sink: BackupSink,
    private readonly mtime: number,
  ) {}

  get bytesWritten(): number {
    return this.written;
  }

  /** Writes one member; returns its data size. */
  async member(name: string, parts: readonly Uint8Array[]): Promise<number> {
    validateOuterMemberName(name);
    if (this.names.has(name)) throw new QbackupError("ERR_INTERNAL", `duplicate outer member ${name}`);
    this.names.add(name);
    const size = parts.reduce((n, p) => n + p.length, 0);
    await this.write(outerMemberHeader(name, size, this.mtime));
    for (const part of parts) await this.write(part);
    await this.write(outerMemberTrailer(size));
    return size;
  }

  private async write(data: Uint8Array): Promise<void> {
    if (data.length === 0) return;
    await this.sink.write(data);
    this.written += data.length;
  }
}
