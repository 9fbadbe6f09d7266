/**
 * Outer archive stage: each member framed as its own small tar archive, the way the reference
 * writer's one-`tar`-run-per-member output looks (spec §2.1, §2.7), written to the sink in order.
 * On a seekable sink a member can also be written before its size is known (beginMember): its
 * header goes in as a placeholder and is written over when the member ends.
 */
import { outerMemberHeader, outerMemberTrailer, validateOuterMemberName } from "../codec/tar/index.js";
import { QbackupError } from "../errors.js";
import type { BackupSink } from "../transport/sink.js";

export interface OpenMember {
  write(data: Uint8Array): Promise<void>;
  /** Ends the member; returns its data size. */
  end(): Promise<number>;
}

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

  /** Whether beginMember() can be used: the sink can write over its placeholders. */
  get seekable(): boolean {
    return this.sink.writeAt !== undefined;
  }

  /** Writes one member; returns its data size. */
  async member(name: string, parts: readonly Uint8Array[]): Promise<number> {
    this.claim(name);
    const size = parts.reduce((n, p) => n + p.length, 0);
    await this.write(outerMemberHeader(name, size, this.mtime));
    for (const part of parts) await this.write(part);
    await this.write(outerMemberTrailer(size));
    return size;
  }

  /**
   * Starts a member whose size is known only at its end (seekable sinks). Write its data with
   * write(), then end() writes the padding and puts the real header over the placeholder.
   */
  async beginMember(name: string): Promise<OpenMember> {
    const writeAt = this.sink.writeAt?.bind(this.sink);
    if (writeAt === undefined) throw new QbackupError("ERR_INTERNAL", "beginMember() needs a seekable sink");
    this.claim(name);
    const headerAt = this.written;
    const placeholder = outerMemberHeader(name, 0, this.mtime);
    await this.write(placeholder);
    let size = 0;
    let ended = false;
    return {
      write: async (data) => {
        if (ended) throw new QbackupError("ERR_INTERNAL", `write to ended member ${name}`);
        await this.write(data);
        size += data.length;
      },
      end: async () => {
        if (ended) throw new QbackupError("ERR_INTERNAL", `member ${name} ended twice`);
        ended = true;
        await this.write(outerMemberTrailer(size));
        const header = outerMemberHeader(name, size, this.mtime);
        if (header.length !== placeholder.length)
          throw new QbackupError("ERR_INTERNAL", `header of ${name} changed size`);
        await writeAt(headerAt, header);
        return size;
      },
    };
  }

  private claim(name: string): void {
    validateOuterMemberName(name);
    if (this.names.has(name)) throw new QbackupError("ERR_INTERNAL", `duplicate outer member ${name}`);
    this.names.add(name);
  }

  private async write(data: Uint8Array): Promise<void> {
    if (data.length === 0) return;
    await this.sink.write(data);
    this.written += data.length;
  }
}
