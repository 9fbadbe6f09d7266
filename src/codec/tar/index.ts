/**
 * tar codecs. Writer side: ustar header blocks, pax records, GNU sparse 1.0 maps and hole
 * detection, outer member framing (spec §2), inner volume archives (§4.3) and directory trees (§7).
 * Reader side: header/pax decoding, sparse maps, and the streaming inner-archive reader.
 * All pure: bytes in, bytes out.
 */

export * from "./header.js";
export * from "./pax.js";
export * from "./path.js";
export * from "./sparse.js";
export * from "./outer.js";
export * from "./volume.js";
export * from "./tree.js";
export * from "./decode.js";
export * from "./sparse-read.js";
export * from "./archive-path.js";
export * from "./reader.js";
