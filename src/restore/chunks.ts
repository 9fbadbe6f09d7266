/**
 * How a backup format stores the chunks of an archived file, seen from the restore loop:
 *   v4  `<file>.NNN.enc`, each a scrypt container (authenticate.ts, kdf-ahead.ts)
 *   v3  `<file>.NNN` followed by `<file>.NNN.hmac`, the pieces of one `openssl enc` stream (v3.ts)
 * Either way the loop gets each chunk's bytes only once they are authenticated, and the file's
 * stream (decrypted where v3 needs it) goes on to decompression and the inner tar reader.
 */
import { chunkMemberName, chunkPassphraseString, parseChunkMemberName } from "../format/names.js";
import { openSealedMemberPieces } from "./authenticate.js";
import type { KeyDerivation } from "./kdf-ahead.js";
import type { OuterMember, OuterReader } from "./outer-reader.js";

export interface ChunkId {
  /** The archived file, e.g. `vm5/private.img` or `dom0-home/user`. */
  base: string;
  index: number;
}

export interface StoredChunks {
  /** The file and chunk number a data member holds; ERR_TAR_MALFORMED for a name the format never writes. */
  chunkOf(memberName: string): ChunkId;
  /** The name chunk `index` of `base` has (for messages). */
  memberName(base: string, index: number): string;
  /**
   * Reads the current member (and what authenticates it) and yields its bytes once they are
   * authenticated, in one or more pieces.
   */
  open(reader: OuterReader, member: OuterMember, chunk: ChunkId): AsyncIterable<Buffer>;
  /** Skips the current member, and what authenticates it, without authenticating anything. */
  skip(reader: OuterReader, member: OuterMember): Promise<void>;
  /** A file's authenticated chunks, in order → its (compressed) inner archive. */
  fileStream(chunks: AsyncIterable<Buffer>, what: string): AsyncIterable<Buffer>;
  /** Which files' chunks are worth work ahead of the reader (v4: early KDFs), and how far ahead. */
  lookAhead(wanted: (base: string) => boolean, members: number): void;
  /** Starts that work for the members after the reader's position. */
  fill(): Promise<void>;
}

/** Format v4: every chunk is a scrypt container keyed by `<backup-id>!<file>.NNN!P`. */
export class SealedChunks implements StoredChunks {
  constructor(
    private readonly backupId: string,
    private readonly passphrase: string,
    private readonly keys: KeyDerivation,
  ) {}

  chunkOf(memberName: string): ChunkId {
    return parseChunkMemberName(memberName);
  }

  memberName(base: string, index: number): string {
    return chunkMemberName(base, index);
  }

  open(reader: OuterReader, member: OuterMember, { base, index }: ChunkId): AsyncIterable<Buffer> {
    return openSealedMemberPieces(
      reader,
      member,
      chunkPassphraseString(this.backupId, base, index, this.passphrase),
      this.keys,
    );
  }

  async skip(reader: OuterReader, member: OuterMember): Promise<void> {
    this.keys.forget(member.name);
    await reader.skipRest();
  }

  fileStream(chunks: AsyncIterable<Buffer>): AsyncIterable<Buffer> {
    return chunks;
  }

  lookAhead(wanted: (base: string) => boolean, members: number): void {
    this.keys.target((name) => {
      const pass = chunkPassphrase(this.backupId, name, this.passphrase);
      return pass !== undefined && wanted(parseChunkMemberName(name).base) ? pass : undefined;
    }, members);
  }

  fill(): Promise<void> {
    return this.keys.fill();
  }
}

/** The passphrase string of a v4 chunk member of backup `backupId`; undefined for other members. */
export function chunkPassphrase(backupId: string, memberName: string, passphrase: string): Buffer | undefined {
  try {
    const { base, index } = parseChunkMemberName(memberName);
    return chunkPassphraseString(backupId, base, index, passphrase);
  } catch {
    return undefined; // not a chunk name: the reader reports it when it gets there
  }
}
