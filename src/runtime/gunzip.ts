/**
 * gunzip of a whole gzip stream (one archived file's inner archive), off the event loop.
 *
 * qbackup writes a stream of independent members of at most 1 MiB each (parallel-gzip.ts), and
 * libdeflate (libdeflate.ts) decompresses such a member in one call about twice as fast as zlib's
 * streaming inflate. So members are taken one at a time from a staging buffer by libdeflate, the
 * next one decompressing on koffi's thread while the caller handles the last; the first member it
 * does not take whole (larger than that, with optional header fields, corrupt or truncated, the
 * stock writer's single member, trailing bytes) sends everything from there on to node:zlib's
 * streaming Gunzip, behind an empty member so that zlib reads those bytes exactly as it would
 * have after the members before them. zlib's rules and errors therefore apply to every byte
 * libdeflate did not accept, and where libdeflate is missing zlib does it all.
 */
import { gunzipSync, gzipSync, createGunzip } from "node:zlib";
import { DECOMPRESS_SUCCESS, LIBDEFLATE_NAMES, bindLibdeflate } from "./libdeflate.js";
import type { Handle, Libdeflate } from "./libdeflate.js";
import { through } from "./streams.js";

/** The largest output of a member libdeflate is asked for: qbackup's blocks (GZIP_BLOCK_SIZE). */
export const MAX_MEMBER_OUTPUT = 1024 * 1024;
/** The most a member of such a block can take, stored: 5 bytes per 16 KiB, header, trailer, margin. */
const MAX_MEMBER_INPUT = MAX_MEMBER_OUTPUT + 64 * 1024;
/** Holds a member being decompressed and the next one arriving; compacted when full. */
const STAGING_SIZE = 4 * MAX_MEMBER_INPUT;
/** zlib's output pieces (its default is 16 KiB: one threadpool round trip per 16 KiB). */
const ZLIB_CHUNK = 1024 * 1024;

export interface GunzipStats {
  /** Members libdeflate decompressed. */
  members: number;
  /** Set when zlib took over: the offset in the stream it took over at. */
  zlibFrom?: number;
}

export interface GunzipOptions {
  /** The one-call decompressor; null: zlib only. Default: libdeflate where it is here and sound. */
  members?: MemberGunzip | null;
  stats?: GunzipStats;
}

/** The decompressed stream of the gzip stream `input`. */
export function gunzip(input: AsyncIterable<Buffer>, options: GunzipOptions = {}): AsyncIterable<Buffer> {
  const members = options.members === undefined ? memberGunzip() : options.members;
  const stats = options.stats ?? { members: 0 };
  return members === null ? zlibGunzip(input) : byMembers(input, members, stats);
}

function zlibGunzip(input: AsyncIterable<Buffer>): AsyncIterable<Buffer> {
  return through(input, createGunzip({ chunkSize: ZLIB_CHUNK }));
}

/** What an empty input gzips to: put before the bytes zlib takes over after a member. */
const EMPTY_MEMBER = gzipSync(Buffer.alloc(0));

async function* byMembers(input: AsyncIterable<Buffer>, members: MemberGunzip, stats: GunzipStats) {
  const source = input[Symbol.asyncIterator]();
  /** Input not yet copied into the staging buffer. */
  const queue: Buffer[] = [];
  let ended = false;
  const staging = Buffer.allocUnsafe(STAGING_SIZE);
  let off = 0; // the next member starts here
  let end = 0;
  let consumed = 0; // stream offset of `off`
  let inflight: Promise<{ output: Buffer; used: number } | null> | undefined;
  let handedOver = false;

  /** Copies input into staging until `want` bytes are there past `off` (or the input ended). */
  const fill = async (want: number, compact: boolean) => {
    while (end - off < want) {
      if (queue.length === 0) {
        if (ended) return;
        const next = await source.next();
        if (next.done === true) ended = true;
        else if (next.value.length > 0) queue.push(next.value);
        continue;
      }
      if (end === staging.length) {
        if (!compact) return;
        staging.copyWithin(0, off, end);
        end -= off;
        off = 0;
      }
      const piece = queue[0]!;
      const n = Math.min(piece.length, staging.length - end);
      piece.copy(staging, end, 0, n);
      end += n;
      if (n === piece.length) queue.shift();
      else queue[0] = piece.subarray(n);
    }
  };
  /** Starts decompressing the member at `off`, if it looks like one qbackup writes. */
  const start = () => {
    const view = staging.subarray(off, end);
    inflight = plainMemberHeader(view) ? members.decompress(view) : Promise.resolve(null);
  };

  try {
    await fill(MAX_MEMBER_INPUT, true);
    if (end > off) start();
    while (inflight !== undefined) {
      // the next member arrives while this one decompresses; staging is only appended to meanwhile
      // (the library is reading it), compacted after
      await fill(2 * MAX_MEMBER_INPUT, false);
      const member = await inflight;
      inflight = undefined;
      if (member === null) break;
      off += member.used;
      consumed += member.used;
      stats.members++;
      await fill(MAX_MEMBER_INPUT, true);
      if (end > off) start();
      yield member.output;
    }
    if (end === off && queue.length === 0 && ended && stats.members > 0) return;
    // zlib from here on: what is left in staging, then the queue, then the rest of the input
    stats.zlibFrom = consumed;
    handedOver = true;
    const rest = staging.subarray(off, end);
    const before = stats.members > 0 ? [EMPTY_MEMBER] : [];
    yield* zlibGunzip(concatSources([...before, rest, ...queue], source));
  } finally {
    await inflight?.catch(() => undefined); // the library may still be reading staging
    if (!handedOver) await source.return?.();
  }
}

async function* concatSources(first: Buffer[], rest: AsyncIterator<Buffer>): AsyncGenerator<Buffer> {
  try {
    for (const piece of first) if (piece.length > 0) yield piece;
    for (let next = await rest.next(); next.done !== true; next = await rest.next()) yield next.value;
  } finally {
    await rest.return?.();
  }
}

/** ID1 ID2 CM=deflate, and no optional fields (FLG = 0): what qbackup's and zlib's writers put. */
function plainMemberHeader(bytes: Buffer): boolean {
  return bytes.length >= 18 && bytes[0] === 0x1f && bytes[1] === 0x8b && bytes[2] === 8 && bytes[3] === 0;
}

/** One whole member → its output and the input bytes it took; null for anything it will not take. */
export interface MemberGunzip {
  readonly name: string;
  decompress(bytes: Buffer): Promise<{ output: Buffer; used: number } | null>;
}

/** libdeflate's decompressor, one per member in flight, kept for the next. */
class LibdeflateMemberGunzip implements MemberGunzip {
  readonly name: string;
  constructor(
    private readonly lib: Libdeflate,
    private readonly idle: Handle[] = [],
  ) {
    this.name = `libdeflate (${lib.file})`;
  }

  async decompress(bytes: Buffer): Promise<{ output: Buffer; used: number } | null> {
    const d = this.idle.pop() ?? this.lib.allocDecompressor();
    if (d === null) return null;
    try {
      const output = Buffer.allocUnsafe(MAX_MEMBER_OUTPUT);
      const r = await this.lib.gzipDecompressAsync(d, bytes, output);
      const sound =
        r.result === DECOMPRESS_SUCCESS &&
        r.inputUsed > 0 &&
        r.inputUsed <= bytes.length &&
        r.outputUsed <= output.length;
      return sound ? { output: output.subarray(0, r.outputUsed), used: r.inputUsed } : null;
    } finally {
      this.idle.push(d);
    }
  }
}

/**
 * libdeflate as a MemberGunzip, from the first of `names` that loads and reads node:zlib's
 * members back (and refuses a corrupt one); null when none does.
 */
export function loadLibdeflateGunzip(names: readonly string[] = LIBDEFLATE_NAMES): MemberGunzip | null {
  const input = Buffer.from("qbackup known answer: node:zlib against libdeflate. ".repeat(900));
  const member = gzipSync(input, { level: 6 });
  const corrupt = Buffer.from(member);
  corrupt[corrupt.length - 5]! ^= 1; // the CRC
  for (const file of names) {
    const lib = bindLibdeflate(file);
    const d = lib?.allocDecompressor();
    if (lib === null || d === null || d === undefined) continue;
    try {
      const out = Buffer.alloc(input.length + 1);
      const good = lib.gzipDecompress(d, Buffer.concat([member, member]), out);
      const whole =
        good.result === DECOMPRESS_SUCCESS &&
        good.inputUsed === member.length &&
        out.subarray(0, good.outputUsed).equals(gunzipSync(member));
      if (whole && lib.gzipDecompress(d, corrupt, out).result !== DECOMPRESS_SUCCESS) {
        return new LibdeflateMemberGunzip(lib, [d]);
      }
    } catch {
      // not the library we think
    }
  }
  return null;
}

let chosen: MemberGunzip | null | undefined;

/** libdeflate where it is here and sound, else null (zlib only); chosen on first use. */
export function memberGunzip(): MemberGunzip | null {
  if (chosen === undefined) chosen = loadLibdeflateGunzip();
  return chosen;
}
