/**
 * scrypt's memory-hard core (ROMix with BlockMix over Salsa20/8, RFC 7914 §4–6) as a WebAssembly
 * module using 128-bit SIMD, written here as WebAssembly text because no maintained package has a
 * SIMD one: on this project's 2-core machine it derives a logN-18 key in ~0.55 s, against ~0.85 s
 * for libscrypt-kdf's and ~1.1 s for node:crypto's portable C, and its memory stays mapped from
 * one key to the next instead of being faulted in again every time.
 *
 * This file only produces the module's text; scripts/build-romix.ts compiles it to romix-wasm.ts,
 * which is committed (a test checks the two still match). PBKDF2 and the word order conversion
 * are done by the caller (wasm-kdf.ts).
 *
 * Memory layout (offsets in bytes, `B` = 128·r, the size of one scrypt block):
 *   [0, B)        X, the block being mixed
 *   [B, 2B)       the other half of a ping-pong pair: BlockMix reads one and writes the other
 *   [2B, 2B+N·B)  V, the N saved blocks
 * Each 64-byte Salsa20 block of X and V is held with its 16 words in "diagonal" order: position j
 * holds word 5·j mod 16, so the four vectors of a block are (x0,x5,x10,x15), (x4,x9,x14,x3),
 * (x8,x13,x2,x7) and (x12,x1,x6,x11). In that order a column round and a row round are each four
 * lane-wise quarter-round steps, with lane rotations between them.
 * Word 0 stays at position 0, so Integerify still reads the first word of X's last 64 bytes.
 *
 * Exports:
 *   memory
 *   fill(r, save, count)  `count` steps of the first loop: V[i] = X; X = BlockMix(X), saving from
 *                         address `save` on; returns the address after the last block saved
 *   mix(r, n, v, count)   `count` steps of the second loop: X = BlockMix(X xor V[Integerify(X) mod n]),
 *                         V at address `v`
 * `count` must be even, so that X is back at offset 0 when a call returns; scrypt runs each loop
 * N times (N ≥ 2, a power of two), in one call or several.
 */

/** The salsa rotation distances of one quarter-round step, in order. */
const ROTATIONS = [7, 9, 13, 18] as const;

const get = (name: string) => `(local.get $${name})`;
const set = (name: string, value: string) => `(local.set $${name} ${value})`;

/** `dst ^= rotl(x + y, n)`, lane-wise; wasm SIMD has no rotate, so two shifts (their bits are disjoint). */
function step(dst: string, x: string, y: string, n: number): string {
  return [
    set("t", `(i32x4.add ${get(x)} ${get(y)})`),
    set(
      dst,
      `(v128.xor ${get(dst)} (v128.xor (i32x4.shl ${get("t")} (i32.const ${n})) (i32x4.shr_u ${get("t")} (i32.const ${32 - n}))))`,
    ),
  ].join("\n");
}

/** Rotate the four 32-bit lanes of `v` so that lane k takes lane `order[k]`. */
function lanes(v: string, order: readonly number[]): string {
  const bytes = order.flatMap((k) => [4 * k, 4 * k + 1, 4 * k + 2, 4 * k + 3]);
  return set(v, `(i8x16.shuffle ${bytes.join(" ")} ${get(v)} ${get(v)})`);
}

/**
 * Four quarter-round steps on vectors (x0, x1, x2, x3): x1 ^= rotl(x0 + x3, 7), x2 ^= rotl(x1 + x0, 9),
 * x3 ^= rotl(x2 + x1, 13), x0 ^= rotl(x3 + x2, 18), each lane-wise.
 */
function quarterSteps(x0: string, x1: string, x2: string, x3: string): string {
  const [r1, r2, r3, r4] = ROTATIONS;
  return [step(x1, x0, x3, r1), step(x2, x1, x0, r2), step(x3, x2, x1, r3), step(x0, x3, x2, r4)].join("\n");
}

/**
 * One Salsa20 double round on the diagonal vectors a, b, c, d: the column round, then the row round,
 * which is the same steps with b and d exchanged once b, c, d are rotated into row position.
 */
function doubleRound(): string {
  return [
    quarterSteps("a", "b", "c", "d"),
    lanes("b", [3, 0, 1, 2]),
    lanes("c", [2, 3, 0, 1]),
    lanes("d", [1, 2, 3, 0]),
    quarterSteps("a", "d", "c", "b"),
    lanes("b", [1, 2, 3, 0]),
    lanes("c", [2, 3, 0, 1]),
    lanes("d", [3, 0, 1, 2]),
  ].join("\n");
}

/** Salsa20/8 of the state (a, b, c, d): four double rounds, then the input added back. */
function salsa20_8(): string {
  const vectors = ["a", "b", "c", "d"];
  return [
    ...vectors.map((v) => set(`${v}0`, get(v))),
    doubleRound(),
    doubleRound(),
    doubleRound(),
    doubleRound(),
    ...vectors.map((v) => set(v, `(i32x4.add ${get(v)} ${get(`${v}0`)})`)),
  ].join("\n");
}

const OFFSETS = [0, 16, 32, 48] as const;
const load = (ptr: string, offset: number) => `(v128.load offset=${offset} ${get(ptr)})`;
const advance = (ptr: string, by: string) => set(ptr, `(i32.add ${get(ptr)} ${by})`);

/**
 * BlockMix from the block at $in (xored with the block at $w when `xorWith`) into $out, storing
 * the input's 64-byte pieces at $save as they are read when `save` (the first loop's V[i] = X).
 * Output order: Y0, Y2, …, Y(2r-2) into the first half, Y1, Y3, … into the second.
 */
function blockMix(xorWith: boolean, save: boolean): string {
  const input = (ptr: string, offset: number) =>
    xorWith ? `(v128.xor ${load(ptr, offset)} ${load(ptr === "in" ? "w" : "wl", offset)})` : load(ptr, offset);
  const piece = ["p", "q", "s", "u"];
  const state = ["a", "b", "c", "d"];
  const half = (out: string) =>
    [
      ...piece.map((v, k) => set(v, input("in", OFFSETS[k]!))),
      ...(save ? piece.map((v, k) => `(v128.store offset=${OFFSETS[k]} ${get("save")} ${get(v)})`) : []),
      ...(save ? [advance("save", "(i32.const 64)")] : []),
      ...state.map((v, k) => set(v, `(v128.xor ${get(v)} ${get(piece[k]!)})`)),
      salsa20_8(),
      ...state.map((v, k) => `(v128.store offset=${OFFSETS[k]} ${get(out)} ${get(v)})`),
      advance(out, "(i32.const 64)"),
      advance("in", "(i32.const 64)"),
      ...(xorWith ? [advance("w", "(i32.const 64)")] : []),
    ].join("\n");
  return [
    // the state starts as the input's last 64 bytes
    set("last", `(i32.add ${get("in")} ${get("lastOffset")})`),
    ...(xorWith ? [set("wl", `(i32.add ${get("w")} ${get("lastOffset")})`)] : []),
    ...state.map((v, k) => set(v, input("last", OFFSETS[k]!))),
    set("even", get("out")),
    set("odd", `(i32.add ${get("out")} ${get("halfBlock")})`),
    set("k", "(i32.const 0)"),
    "(loop $pairs",
    half("even"),
    half("odd"),
    advance("k", "(i32.const 1)"),
    `(br_if $pairs (i32.lt_u ${get("k")} ${get("r")})))`,
  ].join("\n");
}

const LOCALS = [
  "(local $x i32) (local $y i32) (local $i i32) (local $k i32) (local $in i32) (local $out i32)",
  "(local $w i32) (local $wl i32) (local $last i32) (local $even i32) (local $odd i32)",
  "(local $block i32) (local $halfBlock i32) (local $lastOffset i32) (local $swap i32)",
  "(local $a v128) (local $b v128) (local $c v128) (local $d v128) (local $t v128)",
  "(local $a0 v128) (local $b0 v128) (local $c0 v128) (local $d0 v128)",
  "(local $p v128) (local $q v128) (local $s v128) (local $u v128)",
].join("\n");

/** Sizes from r, and X at 0 / Y at one block, as every call starts. */
const PROLOGUE = [
  set("block", `(i32.mul ${get("r")} (i32.const 128))`),
  set("halfBlock", `(i32.mul ${get("r")} (i32.const 64))`),
  set("lastOffset", `(i32.sub ${get("block")} (i32.const 64))`),
  set("x", "(i32.const 0)"),
  set("y", get("block")),
  set("i", "(i32.const 0)"),
].join("\n");

const SWAP = [set("swap", get("x")), set("x", get("y")), set("y", get("swap"))].join("\n");

/** The module's text. */
export function romixWat(): string {
  return `(module
(memory (export "memory") 1)
(func (export "fill") (param $r i32) (param $save i32) (param $count i32) (result i32)
${LOCALS}
${PROLOGUE}
(loop $steps
${set("in", get("x"))}
${set("out", get("y"))}
${blockMix(false, true)}
${SWAP}
${advance("i", "(i32.const 1)")}
(br_if $steps (i32.lt_u ${get("i")} ${get("count")})))
${get("save")})
(func (export "mix") (param $r i32) (param $n i32) (param $v i32) (param $count i32)
${LOCALS}
${PROLOGUE}
(loop $steps
${set("w", `(i32.add ${get("v")} (i32.mul (i32.and (i32.load (i32.add ${get("x")} ${get("lastOffset")})) (i32.sub ${get("n")} (i32.const 1))) ${get("block")}))`)}
${set("in", get("x"))}
${set("out", get("y"))}
${blockMix(true, false)}
${SWAP}
${advance("i", "(i32.const 1)")}
(br_if $steps (i32.lt_u ${get("i")} ${get("count")}))))
)
`;
}
