/**
 * Types and limits of the R4 (core3) `qubes.xml` codec (spec §6.1–§6.3): the model our writer
 * turns into a document, and what the reader extracts the way the reference reader does.
 */

/** Largest decompressed qubes.xml we parse (spec §6.3, §10). */
export const MAX_QUBES_XML_BYTES = 64 * 1024 * 1024;

export type QubeClass = "AdminVM" | "AppVM" | "TemplateVM" | "StandaloneVM" | "DispVM";

/** A volume with `save_on_stop`, archived as `vm<qid>/<name>.img` (spec §4.2). */
export interface BackupVolume {
  name: string;
  /** Volume size in bytes (the `size` attribute of its volume-config entry). */
  size: number;
}

export interface BackupQube {
  name: string;
  qid: number;
  klass: Exclude<QubeClass, "AdminVM">;
  /** A standard label, by name (`blue`) or id (`label-6`); written as the name. */
  label: string;
  /** Required for AppVM and DispVM, not allowed for TemplateVM and StandaloneVM. */
  template?: string;
  /** Absent: not written (host default); null: empty property (no netvm). */
  netvm?: string | null;
  /** Must be `vm<qid>/`. */
  backupPath: string;
  /** Decimal bytes, an upper bound of the qube's stored `.enc` bytes (spec §6.3). */
  backupSize: number;
  volumes: BackupVolume[];
  /** Extra properties (not name/label/qid/uuid/template/netvm). */
  properties?: Record<string, string>;
  /** Extra features (never backup-content/backup-path/backup-size). */
  features?: Record<string, string>;
  tags?: string[];
}

/** The dom0 home, archived as `dom0-home/<user>` (spec §7). */
export interface BackupDom0 {
  user: string;
  backupSize: number;
}

export interface QubesXmlModel {
  qubes: BackupQube[];
  dom0?: BackupDom0;
  defaultTemplate?: string;
}

export interface ParsedDevice {
  class: string;
  backendDomain: string;
  id: string;
  /** The `required` attribute (default yes); the newer `mode` attribute is ignored like REF-R does. */
  required: boolean;
  options: Record<string, string>;
}

export interface ParsedVolume {
  name: string;
  saveOnStop: boolean;
  size?: number;
}

export interface ParsedDomain {
  klass: string;
  /** The AdminVM is always `dom0`. */
  name: string;
  /** Resolved label name. */
  label: string;
  template?: string;
  /** All properties except name/label/template/qid/uuid; empty element → null. */
  properties: Record<string, string | null>;
  /** Without backup-content/backup-path/backup-size; empty text (“False”) stays "". */
  features: Record<string, string>;
  tags: string[];
  devices: ParsedDevice[];
  /** backup-content truthy (non-empty text) and backup-path present. */
  included: boolean;
  backupPath?: string;
  /** 0 unless included with a backup-size. */
  backupSize: number;
  /** From volume-config (REF-R ignores it; kept for “what is missing” checks). */
  volumes: ParsedVolume[];
}

export interface ParsedQubesXml {
  /** Label id and label name → label name. */
  labels: Map<string, string>;
  /** Global properties; empty element → null. */
  properties: Record<string, string | null>;
  domains: ParsedDomain[];
}
