/**
 * The eight standard Qubes labels, as core-admin stores them in qubes.xml (ids, names and colours
 * copied from a real R4 file, see testdata/golden-v4-qubes.xml).
 */

export interface QubesLabel {
  id: string;
  name: string;
  color: string;
}

export const QUBES_LABELS: ReadonlyArray<Readonly<QubesLabel>> = Object.freeze([
  { id: "label-1", name: "red", color: "0xcc0000" },
  { id: "label-2", name: "orange", color: "0xf57900" },
  { id: "label-3", name: "yellow", color: "0xedd400" },
  { id: "label-4", name: "green", color: "0x73d216" },
  { id: "label-5", name: "gray", color: "0x555753" },
  { id: "label-6", name: "blue", color: "0x3465a4" },
  { id: "label-7", name: "purple", color: "0x75507b" },
  { id: "label-8", name: "black", color: "0x000000" },
]);

/** The label core-admin gives dom0. */
export const ADMINVM_LABEL = "black";

/** A standard label's name from its name or id, or undefined. */
export function standardLabelName(nameOrId: string): string | undefined {
  return QUBES_LABELS.find((l) => l.name === nameOrId || l.id === nameOrId)?.name;
}
