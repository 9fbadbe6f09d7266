/**
 * Where the fields of a 512-byte tar header block are (spec Appendix A), shared by the writer
 * (header.ts) and the reader (decode.ts), plus the old-GNU sparse fields (GNU tar's tar.h).
 */
export const F_NAME = 0;
export const F_MODE = 100;
export const F_UID = 108;
export const F_GID = 116;
export const F_SIZE = 124;
export const F_MTIME = 136;
export const F_CHKSUM = 148;
export const F_TYPEFLAG = 156;
export const F_LINKNAME = 157;
export const F_MAGIC = 257;
export const F_VERSION = 263;
export const F_UNAME = 265;
export const F_GNAME = 297;
export const F_DEVMAJOR = 329;
export const F_DEVMINOR = 337;
export const F_PREFIX = 345;
export const OWNER_FIELD_SIZE = 32;
/** mode, uid, gid, devmajor, devminor */
export const SMALL_NUMERIC_FIELD = 8;
/** size, mtime */
export const LARGE_NUMERIC_FIELD = 12;
export const CHKSUM_FIELD_SIZE = 8;
