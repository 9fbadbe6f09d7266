/**
 * Inner volume archive (spec §4.3 (b), the qubes.tarwriter form): one pax + GNU sparse 1.0 member
 * holding a volume image with its holes left out, then the end-of-archive marker.
 * Hand-written: npm tar libraries mishandle GNU sparse members, and GNU tar must restore this one
 * byte-identically with holes kept and the expanded size shown by `tar -tvv`.
 */

import { Buffer } from "node:buffer";
import { QbackupError } from "../../errors.js";
import {
  BLOCK_SIZE,
  MAX_OCTAL_11,
  MODE_MASK,
  encodeHeader,
  fitsOctal,
  paddingFor,
  ustarFallbackName,
} from "./header.js";
import { encodePaxHeader } from "./pax.js";
import type { PaxRecord } from "./pax.js";
import { checkRelativePath, splitDirBase } from "./path.js";
import { checkRegions, encodeSparseMap10 } from "./sparse.js";
import type { Region } from "./sparse.js";

export interface VolumeArchiveSpec {
  /** effective archive name, e.g. "vm5/private.img" (stored as GNU.sparse.name) */
  name: string;
  /** apparent size of the image */
  realSize: number;
  /** data regions, see HoleScanner / checkRegions */
  regions: readonly Region[];
  mode: number;
  /** seconds, integer */
  mtime: number;
}

/** Name of the pax header block, as qubes.tarwriter writes it. */
export const VOLUME_PAX_HEADER_NAME = "././@PaxHeader";
/** Directory component GNU tar puts in front of a sparse 1.0 member's stored name (pid there; fixed here). */
export const SPARSE_DIR_COMPONENT = "GNUSparseFile.0";

const END_MARKER = 2 * BLOCK_SIZE;
const MTIME_FIELD_SIZE = 12;

/** Σ region lengths: the image bytes the caller writes after the header. */
export function volumeDataSize(regions: readonly Region[]): number {
  return regions.reduce((sum, r) => sum + r.length, 0);
}

/** The ustar name GNU sparse 1.0 prescribes: "<dir>/GNUSparseFile.<n>/<base>" ("." when no dir). */
export function sparseStoredName(name: string): string {
  const { dir, base } = splitDirBase(name);
  return `${dir === "" ? "." : dir}/${SPARSE_DIR_COMPONENT}/${base}`;
}

/** Bytes of the member data: the padded map followed by every region. */
export function volumeMemberSize(spec: VolumeArchiveSpec): number {
  return encodeSparseMap10(spec.regions).length + volumeDataSize(spec.regions);
}

function checkSpec(spec: VolumeArchiveSpec): void {
  checkRelativePath(spec.name, "volume archive name");
  checkRegions(spec.regions, spec.realSize);
  if (!Number.isSafeInteger(spec.mode) || spec.mode < 0) {
    throw new QbackupError("ERR_TAR_MALFORMED", `volume archive ${spec.name}: mode ${spec.mode} is invalid`);
  }
  if (!fitsOctal(spec.mtime, MTIME_FIELD_SIZE)) {
    throw new QbackupError("ERR_TAR_MALFORMED", `volume archive ${spec.name}: mtime ${spec.mtime} is not in range`);
  }
}

/**
 * pax 'x' member (GNU.sparse.major=1, minor=0, name, realsize; plus `size` when the member data is
 * ≥ 8 GiB) + ustar header "<dir>/GNUSparseFile.0/<base>" typeflag '0' + the sparse map block(s).
 * The caller then writes the bytes of every region in order, then volumeArchiveTrailer(spec).
 */
export function volumeArchiveHeader(spec: VolumeArchiveSpec): Buffer {
  checkSpec(spec);
  const map = encodeSparseMap10(spec.regions);
  const memberSize = map.length + volumeDataSize(spec.regions);
  const records: PaxRecord[] = [
    ["GNU.sparse.major", "1"],
    ["GNU.sparse.minor", "0"],
    ["GNU.sparse.name", spec.name],
    ["GNU.sparse.realsize", String(spec.realSize)],
  ];
  const bigMember = memberSize > MAX_OCTAL_11;
  if (bigMember) records.push(["size", String(memberSize)]);
  const pax = encodePaxHeader(VOLUME_PAX_HEADER_NAME, records, { mode: 0, mtime: 0 });
  const header = encodeHeader(
    {
      name: ustarFallbackName(sparseStoredName(spec.name)),
      type: "0",
      size: memberSize,
      mode: spec.mode & MODE_MASK,
      mtime: spec.mtime,
      uid: 0,
      gid: 0,
    },
    { base256: bigMember },
  );
  return Buffer.concat([pax, header, map]);
}

/** After the region bytes: NUL padding of the member data to 512, then two zero blocks. */
export function volumeArchiveTrailer(spec: VolumeArchiveSpec): Buffer {
  checkSpec(spec);
  return Buffer.alloc(paddingFor(volumeDataSize(spec.regions)) + END_MARKER);
}
