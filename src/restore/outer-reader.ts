/**
 * The outer archive reader: the one parser that sees bytes before anything is authenticated, so
 * it is small and strict, in the spirit of Qubes' own tar2qfile (spec §2.4). 512-byte blocks;
 * a header needs the "ustar" magic and a checksum equal to the unsigned byte sum; the name comes
 * from the ustar name/prefix fields only and must be a plain relative ASCII path; the size is
 * octal only and bounded by what the member can legitimately be; only regular members ('0')
 * are returned, pax headers ('x', 'g') are skipped by their bounded size; zero blocks between the
 * concatenated per-member archives are skipped; a name seen twice is an error.
 */
import { BLOCK_SIZE, headerChecksum, isAllZero } from "../codec/tar/index.js";
import { QbackupError } from "../errors.js";
import type { ByteSource } from "../transport/source.js";

/** pax headers of the outer archive only carry times; anything larger is not from a writer we know. */
const MAX_OUTER_PAX_BYTES = 64 * 1024;
const MAX_NAME_BYTES = 256;

export interface OuterMember {
  name: string;
  size: number;
  /** Offset of the member's data in the outer stream. */
  offset: number;
}

/** How large a member may be, by its name; decided before its data is read. */
export type MemberSizeLimit = (name: string) => number;

export class OuterReader {
  private position = 0;
  private current: { member: OuterMember; remaining: number; padding: number } | undefined;
  private readonly seen = new Set<string>();
  private finished = false;

  constructor(
    private readonly source: ByteSource,
    private readonly sizeLimit: MemberSizeLimit,
  ) {}

  /** The next regular member, or null at the end of the archive. Unread data of the previous one is skipped. */
  async next(): Promise<OuterMember | null> {
    if (this.current) await this.skipRest();
    if (this.finished) return null;
    for (;;) {
      const block = await this.source.read(BLOCK_SIZE);
      if (block.length === 0) {
        this.finished = true;
        return null;
      }
      if (block.length < BLOCK_SIZE) throw missing(`backup ends inside a tar block at byte ${this.position}`);
      const at = this.position;
      this.position += BLOCK_SIZE;
      if (isAllZero(block)) continue;

      const header = parseOuterHeader(block, at);
      if (header.type === "x" || header.type === "g") {
        if (header.size > MAX_OUTER_PAX_BYTES) throw malformed(`pax header of ${header.size} bytes at byte ${at}`);
        await this.skipExactly(header.size + padding(header.size), at);
        continue;
      }
      if (header.type !== "0") {
        throw malformed(
          `member ${JSON.stringify(header.name)} has tar type '${header.type}'; a v4 backup holds only regular files`,
        );
      }
      validateMemberName(header.name);
      if (this.seen.has(header.name)) throw malformed(`member ${header.name} appears twice`);
      this.seen.add(header.name);
      const limit = this.sizeLimit(header.name);
      if (header.size > limit) {
        throw new QbackupError(
          "ERR_TAR_MALFORMED",
          `member ${header.name} is ${header.size} bytes, more than the ${limit} it may be`,
        );
      }
      const member = { name: header.name, size: header.size, offset: this.position };
      this.current = { member, remaining: header.size, padding: padding(header.size) };
      return member;
    }
  }

  /** Up to `length` bytes of the current member's data; an early end of the backup is an error. */
  async read(length: number): Promise<Buffer> {
    const cur = this.current;
    if (!cur) throw new QbackupError("ERR_INTERNAL", "outer read without a current member");
    const want = Math.min(length, cur.remaining);
    if (want === 0) return Buffer.alloc(0);
    const data = await this.source.read(want);
    this.position += data.length;
    cur.remaining -= data.length;
    if (data.length < want) throw missing(`backup ends inside member ${cur.member.name}`);
    return data;
  }

  /**
   * Up to `count` members after the current one, found with positional reads (seekable sources
   * only) without moving the reader. Best effort: stops quietly at anything unusual, which the
   * reader itself will report when it gets there.
   */
  async peekAhead(count: number): Promise<OuterMember[]> {
    const pread = this.source.pread;
    if (!pread || !this.current) return [];
    const found: OuterMember[] = [];
    let at = this.current.member.offset + this.current.member.size + this.current.padding;
    while (found.length < count) {
      const block = await pread(at, BLOCK_SIZE);
      if (block.length < BLOCK_SIZE) break;
      if (isAllZero(block)) {
        at += BLOCK_SIZE;
        continue;
      }
      let header: OuterHeader;
      try {
        header = parseOuterHeader(block, at);
      } catch {
        break;
      }
      if ((header.type === "x" || header.type === "g") && header.size <= MAX_OUTER_PAX_BYTES) {
        at += BLOCK_SIZE + header.size + padding(header.size);
        continue;
      }
      if (header.type !== "0" || header.size > this.sizeLimit(header.name)) break;
      found.push({ name: header.name, size: header.size, offset: at + BLOCK_SIZE });
      at += BLOCK_SIZE + header.size + padding(header.size);
    }
    return found;
  }

  /** True when members can be read again by position (a file, not a stream). */
  get rereadable(): boolean {
    return this.source.pread !== undefined;
  }

  /**
   * `length` bytes of `member`'s data from `offset`, by position; the reader does not move. With
   * `into` (at least `length` bytes), the result is a view of it.
   */
  async reread(member: OuterMember, offset: number, length: number, into?: Buffer): Promise<Buffer> {
    const pread = this.source.pread;
    if (!pread || offset < 0 || offset + length > member.size) {
      throw new QbackupError("ERR_INTERNAL", `reread of ${member.name} outside the member or the source`);
    }
    const data = await pread(member.offset + offset, length, into);
    if (data.length < length) throw missing(`backup ends inside member ${member.name} (read again)`);
    return data;
  }

  /** Positional read of a member's data (see peekAhead). */
  async peekData(member: OuterMember, length: number): Promise<Buffer | undefined> {
    return this.source.pread?.(member.offset, Math.min(length, member.size));
  }

  /** Skips `length` bytes of the current member's data (seeking where the source allows). */
  async skip(length: number): Promise<void> {
    const cur = this.current;
    if (!cur || length > cur.remaining) throw new QbackupError("ERR_INTERNAL", "outer skip past the current member");
    await this.skipExactly(length, cur.member.offset, cur.member.name);
    cur.remaining -= length;
  }

  /** Skip what is left of the current member (seeking where the source allows). */
  async skipRest(): Promise<void> {
    const cur = this.current;
    if (!cur) return;
    this.current = undefined;
    await this.skipExactly(cur.remaining + cur.padding, cur.member.offset, cur.member.name);
  }

  private async skipExactly(length: number, at: number, name?: string): Promise<void> {
    const n = await this.source.skip(length);
    this.position += n;
    if (n < length)
      throw missing(name ? `backup ends inside member ${name}` : `backup ends inside a pax header at byte ${at}`);
  }
}

/** The backup stopped early: the storage lost or cut it. */
function missing(message: string): QbackupError {
  return new QbackupError("ERR_MISSING", `outer archive: ${message}`);
}

function malformed(message: string): QbackupError {
  return new QbackupError("ERR_TAR_MALFORMED", `outer archive: ${message}`);
}

function padding(size: number): number {
  return (BLOCK_SIZE - (size % BLOCK_SIZE)) % BLOCK_SIZE;
}

interface OuterHeader {
  name: string;
  size: number;
  type: string;
}

/** tar2qfile's rules, made explicit: magic, unsigned checksum, ustar name fields, octal size. */
export function parseOuterHeader(block: Buffer, at: number): OuterHeader {
  if (block[0] === 0) throw malformed(`header at byte ${at} has an empty name`);
  if (block.toString("latin1", 257, 262) !== "ustar")
    throw malformed(`block at byte ${at} is not a tar header (no ustar magic)`);
  const recorded = parseOctal(block, 148, 8);
  if (recorded !== headerChecksum(block)) throw malformed(`header at byte ${at} has a bad checksum`);
  const name = field(block, 0, 100);
  const prefix = field(block, 345, 155);
  const size = parseOctal(block, 124, 12);
  if (size === undefined) throw malformed(`header at byte ${at} has a size that is not octal`);
  const typeByte = block[156]!;
  return {
    name: prefix ? `${prefix}/${name}` : name,
    size,
    type: typeByte === 0 ? "\\0" : String.fromCharCode(typeByte),
  };
}

function field(block: Buffer, offset: number, length: number): string {
  const raw = block.subarray(offset, offset + length);
  const nul = raw.indexOf(0);
  return raw.toString("latin1", 0, nul < 0 ? length : nul);
}

/** Octal digits after optional leading spaces, ended by NUL, space or the field's end. */
function parseOctal(block: Buffer, offset: number, length: number): number | undefined {
  let i = offset;
  const end = offset + length;
  while (i < end && block[i] === 0x20) i++;
  let value = 0;
  let digits = 0;
  for (; i < end; i++) {
    const c = block[i]!;
    if (c === 0 || c === 0x20) break;
    if (c < 0x30 || c > 0x37) return undefined;
    value = value * 8 + (c - 0x30);
    digits++;
  }
  for (; i < end; i++) if (block[i] !== 0 && block[i] !== 0x20) return undefined;
  return digits > 0 ? value : undefined;
}

/** Printable ASCII, relative, no empty, `.` or `..` components (spec §2.2, §2.4). */
export function validateMemberName(name: string): void {
  const bad = (why: string) =>
    new QbackupError("ERR_UNSAFE_PATH", `outer archive: member name ${JSON.stringify(name)} ${why}`);
  if (name.length === 0 || name.length > MAX_NAME_BYTES) throw bad("has a bad length");
  if (!/^[\x21-\x7e]+$/.test(name)) throw bad("is not printable ASCII without spaces");
  if (name.startsWith("/")) throw bad("is absolute");
  for (const part of name.split("/")) {
    if (part === "" || part === "." || part === "..") throw bad("has an empty, '.' or '..' component");
  }
}
