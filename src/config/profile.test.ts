/**
 * Profiles: every key's valid and invalid values with the exact `FILE:LINE: KEY:` of the message,
 * YAML-level refusals (syntax, duplicates, anchors, depth, size), the file checks of loadProfile
 * (passphrase only in a private real file), atomic saveProfile, and render → parse round trips.
 */
import fc from "fast-check";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { MAX_SCRYPT_LOGN, MIN_SCRYPT_LOGN } from "../cli/create.js";
import { qubeNameProblem } from "../codec/qubes-xml/index.js";
import { isQbackupError } from "../errors.js";
import { MAX_CHUNK_SIZE, MIN_CHUNK_SIZE } from "../format/names.js";
import { validatePassphrase } from "../format/passphrase.js";
import { ALLOWED_FILTER_PROGRAMS } from "../runtime/filters.js";
import {
  MAX_PROFILE_BYTES,
  MAX_PROFILE_SCRYPT_LOGN,
  MIN_PROFILE_SCRYPT_LOGN,
  parseProfile,
  renderProfile,
} from "./profile.js";
import { loadProfile, saveProfile } from "./profile-file.js";
import type { Profile, ProfileCompression } from "./profile.js";

const F = "/cfg/p.yaml";
const HOME = "/home/user";
const BASE = "destination: /mnt/backups\nsources:\n  - work=/var/lib/qubes/appvms/work/private.img\n";
const PROPERTY_RUNS = 300;

/** The ERR_PROFILE message `fn` throws (fails the test on anything else). */
function profileErrorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (isQbackupError(err, "ERR_PROFILE")) return err.message;
    throw err;
  }
  throw new Error("expected ERR_PROFILE, nothing was thrown");
}

const parse = (text: string) => parseProfile(text, F, { home: HOME });
const errorOf = (text: string) => profileErrorOf(() => parse(text));

describe("parseProfile: valid profiles", () => {
  it("reads every key of the table", () => {
    const text = `# nightly backup
destination: ssh+agent://backup@storage:2222/
sources:
  - work=/var/lib/qubes/appvms/work/private.img
  - win:root=/dev/vg/win-root
  - {qube: mail, path: /srv/mail.img}
  - qube: dom0
    volume: user
    path: /home/user
exclude: [untrusted, dom0]
compression: gzip
compress_level: 3
jobs: 4
chunk_size: 50M
scrypt_logn: 14
passphrase_file: ~/secrets/backup-pass
ssh_command: ssh -i ~/.ssh/backup-append
stall_timeout: 300
keep_within: 30d
keep_last: 7
prune_ssh_command: ssh -i ~/.ssh/backup-admin
on_success: notify-send 'backup done'
on_failure: notify-send -u critical 'backup failed'
`;
    expect(parse(text)).toEqual({
      destination: "ssh+agent://backup@storage:2222/",
      sources: [
        { qube: "work", path: "/var/lib/qubes/appvms/work/private.img" },
        { qube: "win", volume: "root", path: "/dev/vg/win-root" },
        { qube: "mail", path: "/srv/mail.img" },
        { qube: "dom0", volume: "user", path: "/home/user" },
      ],
      sourceArgs: [
        "work=/var/lib/qubes/appvms/work/private.img",
        "win:root=/dev/vg/win-root",
        "mail=/srv/mail.img",
        "dom0:user=/home/user",
      ],
      exclude: ["untrusted", "dom0"],
      compression: "gzip",
      compressLevel: 3,
      jobs: 4,
      chunkSize: 50 * 1024 * 1024,
      scryptLogn: 14,
      passphraseFile: "/home/user/secrets/backup-pass",
      sshCommand: "ssh -i ~/.ssh/backup-append",
      stallTimeout: 300,
      keepWithin: "30d",
      keepLast: 7,
      pruneSshCommand: "ssh -i ~/.ssh/backup-admin",
      onSuccess: "notify-send 'backup done'",
      onFailure: "notify-send -u critical 'backup failed'",
    } satisfies Profile);
  });

  it("reads the other destinations and passphrase sources", () => {
    expect(parse("dest_command: ssh host 'cat > b.bin'\nsources: [a=/x]\npassphrase_command: pass show q\n")).toEqual({
      destCommand: "ssh host 'cat > b.bin'",
      sources: [{ qube: "a", path: "/x" }],
      sourceArgs: ["a=/x"],
      passphraseCommand: "pass show q",
    });
    expect(parse("destination: '-'\nsources: [a=/x]\npassphrase: correct horse battery staple\n")).toMatchObject({
      destination: "-",
      passphrase: "correct horse battery staple",
    });
    for (const dest of ["rclone:remote:backups/", "ssh://u@host/~/backups/", "./relative/dir", "/mnt/b.bin"]) {
      expect(parse(`destination: ${dest}\nsources: [a=/x]\n`).destination).toBe(dest);
    }
  });

  it("a leading ~/ in local paths (destination, sources, passphrase_file) is the home directory", () => {
    const p = parseProfile(
      "destination: ~/backups\nsources: [a=~/a.img, { qube: b, path: ~/docs }, c=/srv/~/x]\npassphrase_file: ~/pw\n",
      F,
      { home: HOME },
    );
    expect(p.destination).toBe(`${HOME}/backups`);
    expect(p.sourceArgs).toEqual([`a=${HOME}/a.img`, `b=${HOME}/docs`, "c=/srv/~/x"]);
    expect(p.sources.map((s) => s.path)).toEqual([`${HOME}/a.img`, `${HOME}/docs`, "/srv/~/x"]);
    expect(p.passphraseFile).toBe(`${HOME}/pw`);
    expect(parseProfile("destination: rclone:r:~/b\nsources: [a=/x]\n", F, { home: HOME }).destination).toBe(
      "rclone:r:~/b",
    );
  });

  it("accepts every allow-listed filter and none, sizes as numbers or with suffixes", () => {
    for (const name of [...ALLOWED_FILTER_PROGRAMS, "none"]) {
      expect(parse(`${BASE}compression: ${name}\n`).compression).toBe(name);
    }
    expect(parse(`${BASE}chunk_size: ${MIN_CHUNK_SIZE}\n`).chunkSize).toBe(MIN_CHUNK_SIZE);
    expect(parse(`${BASE}chunk_size: 100M\n`).chunkSize).toBe(MAX_CHUNK_SIZE);
    expect(parse(`${BASE}chunk_size: 64k\n`).chunkSize).toBe(64 * 1024);
    expect(parse(`${BASE}compress_level: 9\n`).compressLevel).toBe(9); // gzip is the default
  });

  it("uses the command line's scrypt bounds", () => {
    expect([MIN_PROFILE_SCRYPT_LOGN, MAX_PROFILE_SCRYPT_LOGN]).toEqual([MIN_SCRYPT_LOGN, MAX_SCRYPT_LOGN]);
  });
});

describe("parseProfile: bad values name FILE:LINE: KEY", () => {
  // destination and dest_command replace line 1 of BASE, every other snippet goes on line 4
  it.each([
    ["destination: ''", "/cfg/p.yaml:1: destination: must be a non-empty string, got an empty string"],
    ["destination: 42", "/cfg/p.yaml:1: destination: must be a non-empty string, got 42"],
    [
      "destination: ssh+agent://storage",
      "/cfg/p.yaml:1: destination: 'ssh+agent://storage' is not a valid remote: no path",
    ],
    ["dest_command: '  '", "/cfg/p.yaml:1: dest_command: must be a non-empty string, got '  '"],
    ["exclude: work", "/cfg/p.yaml:4: exclude: must be a list of qube names, got 'work'"],
    ["exclude: [ok, 'bad name']", "/cfg/p.yaml:4: exclude[1]: invalid qube name 'bad name'"],
    ["compression: lz4", "/cfg/p.yaml:4: compression: must be one of none, gzip, bzip2, xz, lzma"],
    ["compress_level: 10", "/cfg/p.yaml:4: compress_level: must be an integer from 1 to 9, got 10"],
    ["jobs: 65", "/cfg/p.yaml:4: jobs: must be an integer from 1 to 64, got 65"],
    ["jobs: '4'", "/cfg/p.yaml:4: jobs: must be an integer from 1 to 64, got '4'"],
    ["jobs: 2.5", "/cfg/p.yaml:4: jobs: must be an integer from 1 to 64, got 2.5"],
    ["chunk_size: 512", "/cfg/p.yaml:4: chunk_size: must be a size from 1K to 100M"],
    ["chunk_size: 1G", "/cfg/p.yaml:4: chunk_size: must be a size from 1K to 100M"],
    ["chunk_size: 10X", "/cfg/p.yaml:4: chunk_size: must be a size from 1K to 100M"],
    ["scrypt_logn: 25", "/cfg/p.yaml:4: scrypt_logn: must be an integer from 10 to 20, got 25"],
    ["passphrase_command: ''", "/cfg/p.yaml:4: passphrase_command: must be a non-empty string"],
    ["passphrase_file: []", "/cfg/p.yaml:4: passphrase_file: must be a non-empty string, got a list"],
    ["passphrase: 123456", "/cfg/p.yaml:4: passphrase: must be a string (put it in quotes)"],
    ["passphrase: ' hunter2'", "/cfg/p.yaml:4: passphrase: cannot be used: it starts or ends with whitespace"],
    ["ssh_command: ''", "/cfg/p.yaml:4: ssh_command: must be a non-empty string"],
    ["stall_timeout: 0", "/cfg/p.yaml:4: stall_timeout: must be an integer from 1 to 86400, got 0"],
    ["keep_within: 30", "/cfg/p.yaml:4: keep_within: must be a duration like 30d, 12h or 2w, got 30"],
    ["keep_within: 3x", "/cfg/p.yaml:4: keep_within: must be a duration like 30d, 12h or 2w"],
    ["keep_last: 0", "/cfg/p.yaml:4: keep_last: must be an integer from 1 to 999999999, got 0"],
    ["prune_ssh_command:", "/cfg/p.yaml:4: prune_ssh_command: must be a non-empty string, got nothing"],
    ["on_success: {a: 1}", "/cfg/p.yaml:4: on_success: must be a non-empty string, got a mapping"],
    ["on_failure: true", "/cfg/p.yaml:4: on_failure: must be a non-empty string, got true"],
  ] as const)("%s", (snippet, expected) => {
    const text = /^dest/.test(snippet) ? BASE.replace(/^.*\n/, `${snippet}\n`) : `${BASE}${snippet}\n`;
    const message = errorOf(text);
    expect(message.startsWith(expected), message).toBe(true);
    expect(message).not.toContain("\n");
  });

  it("gives the line of a value on its own line, and of the first bad key in the file", () => {
    expect(errorOf(`${BASE}jobs:\n  - 1\nscrypt_logn: 99\n`)).toBe(
      "/cfg/p.yaml:5: jobs: must be an integer from 1 to 64, got a list",
    );
    expect(errorOf(`${BASE}scrypt_logn: 99\njobs: 0\n`)).toMatch(/^\/cfg\/p\.yaml:4: scrypt_logn:/);
    expect(errorOf(`${BASE}jobs: 0\nscrypt_logn: 99\n`)).toMatch(/^\/cfg\/p\.yaml:4: jobs:/);
  });

  it("never quotes the passphrase", () => {
    const message = errorOf(`${BASE}passphrase: "hunter2\\tsecret"\n`);
    expect(message).toBe(
      "/cfg/p.yaml:4: passphrase: cannot be used: it contains a control character (newline, tab, NUL, …)",
    );
    expect(message).not.toContain("hunter2");
  });
});

describe("parseProfile: keys", () => {
  it("refuses an unknown key at its own line, suggesting the closest known one", () => {
    const text = `# comment\n${BASE}jobs: 2\n\n# another\ncompresion: xz\n`;
    expect(errorOf(text)).toBe("/cfg/p.yaml:8: compresion: unknown key (did you mean compression?)");
    expect(errorOf(`${BASE}frobnicate: 1\n`)).toBe("/cfg/p.yaml:4: frobnicate: unknown key");
    expect(errorOf(`${BASE}keep-last: 3\n`)).toBe("/cfg/p.yaml:4: keep-last: unknown key (did you mean keep_last?)");
  });

  it("names nested source keys by their path", () => {
    const text = `destination: /b
sources:
  - a=/x
  - {qube: b, path: /y}
  - qube: 'c d'
    path: /z
`;
    expect(errorOf(text)).toBe(
      "/cfg/p.yaml:5: sources[2].qube: invalid qube name \"c d\": may contain only ASCII letters, digits, '_', '.' and '-'",
    );
    expect(errorOf("destination: /b\nsources:\n  - a=/x\n  - qube: b\n    pth: /y\n")).toBe(
      "/cfg/p.yaml:5: sources[1].pth: unknown key (did you mean path?)",
    );
    expect(errorOf("destination: /b\nsources:\n  - a=/x\n  - qube: b\n    volume: ../x\n    path: /y\n")).toMatch(
      /^\/cfg\/p\.yaml:5: sources\[1\]\.volume: volume name '\.\.\/x'/,
    );
    expect(errorOf("destination: /b\nsources:\n  - {qube: 'a:b', path: /y}\n")).toBe(
      "/cfg/p.yaml:3: sources[0].qube: invalid qube name 'a:b': may contain only ASCII letters, digits, '_', '.' and '-'",
    );
    expect(errorOf("destination: /b\nsources:\n  - path: /y\n")).toBe(
      "/cfg/p.yaml:3: sources[0].qube: missing: give the qube name (or dom0)",
    );
    expect(errorOf("destination: /b\nsources:\n  - a=/x\n  - b\n")).toBe(
      "/cfg/p.yaml:4: sources[1]: source 'b' is not NAME=PATH or NAME:VOLUME=PATH",
    );
    expect(errorOf("destination: /b\nsources:\n  - 7\n")).toMatch(/^\/cfg\/p\.yaml:3: sources\[0\]: must be NAME=PATH/);
    expect(errorOf("destination: /b\nsources: []\n")).toBe("/cfg/p.yaml:2: sources: must list at least one source");
  });

  it("refuses duplicate keys, naming the first occurrence", () => {
    expect(errorOf(`${BASE}jobs: 1\njobs: 2\n`)).toBe("/cfg/p.yaml:5: jobs: duplicate key (first given on line 4)");
    expect(errorOf("destination: /b\nsources:\n  - {qube: a, path: /x, path: /y}\n")).toBe(
      "/cfg/p.yaml:3: sources[0].path: duplicate key (first given on line 3)",
    );
  });

  it("checks the rules between keys", () => {
    expect(errorOf("sources: [a=/x]\n")).toBe(
      "/cfg/p.yaml:1: destination: missing: give destination (a directory, a file, -, ssh://, ssh+agent:// or rclone:) or dest_command",
    );
    expect(errorOf("# c\ndestination: /b\n")).toBe(
      "/cfg/p.yaml:2: sources: missing: list what to back up as NAME=PATH or NAME:VOLUME=PATH",
    );
    expect(errorOf(`${BASE}dest_command: cat\n`)).toBe(
      "/cfg/p.yaml:4: dest_command: give either destination or dest_command, not both",
    );
    expect(errorOf(`${BASE}passphrase_file: /p\npassphrase_command: pass\n`)).toBe(
      "/cfg/p.yaml:5: passphrase_command: give only one of passphrase_command, passphrase_file, passphrase (or none, to be asked)",
    );
    expect(errorOf(`${BASE}compress_level: 5\ncompression: zstd\n`)).toBe(
      "/cfg/p.yaml:4: compress_level: only applies to gzip compression, but compression is zstd",
    );
  });
});

describe("parseProfile: YAML", () => {
  it("reports syntax errors with their line", () => {
    expect(errorOf(`${BASE}jobs: [1\nkeep_last: 2\n`)).toMatch(/^\/cfg\/p\.yaml:\d: yaml: [a-z]/);
    expect(errorOf("destination: a: b\n")).toBe(
      "/cfg/p.yaml:1: yaml: nested mappings are not allowed in compact mappings",
    );
    expect(errorOf(`${BASE}---\njobs: 2\n`)).toMatch(/^\/cfg\/p\.yaml:4: yaml: source contains multiple documents/);
    expect(errorOf(`${BASE}jobs: !custom 2\n`)).toBe("/cfg/p.yaml:4: yaml: unresolved tag: !custom");
  });

  it("refuses anchors and aliases", () => {
    expect(errorOf(`destination: &d /b\nsources: [a=/x]\n`)).toBe(
      "/cfg/p.yaml:1: destination: anchors and aliases are not allowed in a profile",
    );
    expect(errorOf(`destination: /b\nsources:\n  - &s a=/x\n  - *s\n`)).toBe(
      "/cfg/p.yaml:3: sources[0]: anchors and aliases are not allowed in a profile",
    );
    // a billion laughs never gets expanded
    const bomb = ["a: &a [x, x, x, x, x, x, x, x, x]"];
    for (let i = 1; i < 9; i++)
      bomb.push(
        `${"abcdefghi"[i]}: &${"abcdefghi"[i]} [${Array(9)
          .fill(`*${"abcdefghi"[i - 1]}`)
          .join(", ")}]`,
      );
    expect(errorOf(bomb.join("\n"))).toBe("/cfg/p.yaml:1: a: anchors and aliases are not allowed in a profile");
  });

  it("refuses deep nesting before building it", () => {
    const depth = 20_000;
    expect(errorOf(`${BASE}jobs: ${"[".repeat(depth)}${"]".repeat(depth)}\n`)).toBe(
      "/cfg/p.yaml:4: yaml: nested deeper than 16 levels",
    );
    expect(errorOf(`${BASE}jobs:\n  ${"- ".repeat(depth)}x\n`)).toMatch(/^\/cfg\/p\.yaml:5: yaml: nested deeper/);
    expect(errorOf(`${BASE}jobs: ${"{a: ".repeat(depth / 2)}1${"}".repeat(depth / 2)}\n`)).toMatch(
      /:4: yaml: nested deeper/,
    );
  });

  it("refuses a profile over the size limit", () => {
    const padded = (size: number) => BASE + "#".repeat(size - BASE.length - 1) + "\n";
    expect(parse(padded(MAX_PROFILE_BYTES)).destination).toBe("/mnt/backups");
    expect(errorOf(padded(MAX_PROFILE_BYTES + 1))).toBe("/cfg/p.yaml: profile larger than 65536 bytes");
  });

  it("needs a mapping", () => {
    expect(errorOf("")).toBe("/cfg/p.yaml:1: profile is empty: give destination and sources");
    expect(errorOf("# nothing yet\n\n")).toBe("/cfg/p.yaml:1: profile is empty: give destination and sources");
    expect(errorOf("~\n")).toBe("/cfg/p.yaml:1: profile is empty: give destination and sources");
    expect(errorOf("# c\n- a\n")).toMatch(/^\/cfg\/p\.yaml:2: profile must be a mapping .*, got a list$/);
  });
});

// ---------------------------------------------------------------------------------------------

const qubeArb = fc
  .stringMatching(/^[A-Za-z][A-Za-z0-9_.-]{0,30}$/)
  .filter((name) => qubeNameProblem(name) === undefined);
const volumeArb = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,20}$/);
/** Any text: quotes, colons, hashes, newlines and other control characters, non-ASCII. */
const anyTextArb = fc.oneof(
  fc.string({ minLength: 1, unit: "grapheme" }),
  fc.string({ minLength: 1, unit: "binary-ascii" }),
  fc.constantFrom("yes", "null", "~", "0x10", "1e3", "- a", "a: b", "#x", "'q'", '"', "[x]", "&a", "*a", "!t", "%x"),
);
const nonBlankArb = anyTextArb.filter((s) => s.trim() !== "");
const passphraseArb = fc.oneof(nonBlankArb, fc.constantFrom("correct horse", "pä$$wörd#1", "'\"")).filter((s) => {
  try {
    validatePassphrase(s);
    return true;
  } catch {
    return false;
  }
});
const optional = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: undefined });

const profileArb: fc.Arbitrary<Profile> = fc
  .record({
    dest: fc.oneof(
      fc.record({
        destination: fc.oneof(
          fc.constantFrom("-", "/mnt/backups", "ssh://u@h:22/b/", "ssh+agent://h/", "rclone:r:p/"),
          nonBlankArb.filter((s) => !/^(ssh:\/\/|ssh\+agent:\/\/|rclone:)/.test(s)),
        ),
      }),
      fc.record({ destCommand: nonBlankArb }),
    ),
    sources: fc.array(
      fc.record({ qube: fc.oneof(qubeArb, fc.constant("dom0")), volume: optional(volumeArb), path: anyTextArb }),
      { minLength: 1, maxLength: 4 },
    ),
    exclude: optional(fc.array(qubeArb, { maxLength: 3 })),
    compression: optional(fc.constantFrom<ProfileCompression>("none", ...ALLOWED_FILTER_PROGRAMS)),
    compressLevel: optional(fc.integer({ min: 1, max: 9 })),
    jobs: optional(fc.integer({ min: 1, max: 64 })),
    chunkSize: optional(
      fc.oneof(
        fc.integer({ min: MIN_CHUNK_SIZE, max: MAX_CHUNK_SIZE }),
        fc.integer({ min: 1, max: 100 }).map((m) => m * 1024 * 1024),
      ),
    ),
    scryptLogn: optional(fc.integer({ min: 10, max: 20 })),
    pass: fc.oneof(
      fc.constant({}),
      fc.record({ passphraseCommand: nonBlankArb }),
      fc.record({ passphraseFile: nonBlankArb.filter((s) => !s.startsWith("~/")) }),
      fc.record({ passphrase: passphraseArb }),
    ),
    sshCommand: optional(nonBlankArb),
    stallTimeout: optional(fc.integer({ min: 1, max: 86_400 })),
    keepWithin: optional(
      fc.tuple(fc.integer({ min: 1, max: 9999 }), fc.constantFrom("s", "m", "h", "d", "w")).map(([n, u]) => `${n}${u}`),
    ),
    keepLast: optional(fc.integer({ min: 1, max: 999_999_999 })),
    pruneSshCommand: optional(nonBlankArb),
    onSuccess: optional(nonBlankArb),
    onFailure: optional(nonBlankArb),
  })
  .map(({ dest, sources, pass, compressLevel, compression, ...rest }) => {
    const specs = sources.map(({ qube, volume, path: p }) =>
      volume === undefined ? { qube, path: p } : { qube, volume, path: p },
    );
    const profile: Profile = {
      ...dest,
      ...pass,
      ...rest,
      sources: specs,
      sourceArgs: specs.map((s) => `${s.qube}${s.volume === undefined ? "" : `:${s.volume}`}=${s.path}`),
      ...(compression === undefined ? {} : { compression }),
      ...(compressLevel !== undefined && (compression === undefined || compression === "gzip")
        ? { compressLevel }
        : {}),
    };
    for (const key of Object.keys(profile) as Array<keyof Profile>) if (profile[key] === undefined) delete profile[key];
    return profile;
  });

describe("renderProfile", () => {
  it("writes a commented header, then the keys in table order", () => {
    const profile = parse(
      `on_failure: x\npassphrase: "s3cret: #1"\nsources: [a=/x, 'b:v=/y z']\ndestination: /b\nchunk_size: 1048576\n`,
    );
    const text = renderProfile(profile);
    expect(text).toMatch(/^# qbackup profile: /);
    expect(text).toContain("passphrase in plain text");
    const keys = text
      .split("\n")
      .filter((l) => /^[a-z_]+:/.test(l))
      .map((l) => l.split(":")[0]);
    expect(keys).toEqual(["destination", "sources", "chunk_size", "passphrase", "on_failure"]);
    expect(text).toContain("chunk_size: 1M\n");
    expect(parse(text)).toEqual(profile);
    expect(renderProfile(parse(BASE))).not.toContain("passphrase");
  });

  it("round-trips any valid profile through parseProfile", () => {
    fc.assert(
      fc.property(profileArb, (profile) => {
        expect(parseProfile(renderProfile(profile), F)).toEqual(profile);
      }),
      { numRuns: PROPERTY_RUNS },
    );
  });
});

// ---------------------------------------------------------------------------------------------

describe("loadProfile and saveProfile", () => {
  let tmp: string;
  let env: NodeJS.ProcessEnv;
  const profilesDir = () => path.join(tmp, "qbackup", "profiles");
  const writeProfile = (name: string, text: string, mode = 0o600) => {
    fs.mkdirSync(profilesDir(), { recursive: true });
    const file = path.join(profilesDir(), `${name}.yaml`);
    fs.writeFileSync(file, text, { mode });
    fs.chmodSync(file, mode);
    return file;
  };

  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "qb-"));
    env = { XDG_CONFIG_HOME: tmp, HOME: path.join(tmp, "home") };
  });
  afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it("resolves a name in the profile directory and a path as a file", async () => {
    const file = writeProfile("nightly", `${BASE}passphrase_file: ~/pw\n`, 0o644);
    const loaded = await loadProfile("nightly", env);
    expect(loaded).toMatchObject({ name: "nightly", file });
    expect(loaded.profile.passphraseFile).toBe(path.join(tmp, "home", "pw"));

    const elsewhere = path.join(tmp, "other.yml");
    fs.writeFileSync(elsewhere, BASE);
    expect(await loadProfile(elsewhere, env)).toMatchObject({ name: "other", file: elsewhere });
  });

  it("says which file it looked for when a profile is missing", async () => {
    const expected = path.join(profilesDir(), "nope.yaml");
    await expect(loadProfile("nope", env)).rejects.toMatchObject({
      code: "ERR_PROFILE",
      message: `profile nope not found (looked for ${expected})`,
    });
  });

  it("reports problems with the file's path", async () => {
    const file = writeProfile("bad", `${BASE}jobs: 100\n`);
    await expect(loadProfile("bad", env)).rejects.toMatchObject({
      code: "ERR_PROFILE",
      message: `${file}:4: jobs: must be an integer from 1 to 64, got 100`,
    });
    const big = writeProfile("big", BASE + "#".repeat(MAX_PROFILE_BYTES) + "\n");
    await expect(loadProfile("big", env)).rejects.toMatchObject({
      message: `${big}: profile larger than 65536 bytes`,
    });
  });

  it("loads a passphrase only from a file private to its owner", async () => {
    const text = `${BASE}passphrase: correct horse\n`;
    const file = writeProfile("secret", text, 0o644);
    await expect(loadProfile("secret", env)).rejects.toMatchObject({
      code: "ERR_PROFILE",
      message: `${file}: holds a passphrase in plain text but is readable by others (mode 0644); run chmod 600 ${file}`,
    });
    fs.chmodSync(file, 0o620);
    await expect(loadProfile("secret", env)).rejects.toMatchObject({ message: expect.stringContaining("(mode 0620)") });
    fs.chmodSync(file, 0o600);
    expect((await loadProfile("secret", env)).profile.passphrase).toBe("correct horse");

    const link = path.join(profilesDir(), "linked.yaml");
    fs.symlinkSync(file, link);
    await expect(loadProfile("linked", env)).rejects.toMatchObject({
      code: "ERR_PROFILE",
      message: expect.stringMatching(/linked\.yaml: holds a passphrase in plain text but is a symbolic link/),
    });
    // without a passphrase a symlink is fine
    writeProfile("plain", BASE);
    fs.symlinkSync(path.join(profilesDir(), "plain.yaml"), path.join(profilesDir(), "plain-link.yaml"));
    expect((await loadProfile("plain-link", env)).profile.destination).toBe("/mnt/backups");
  });

  it("saves with private modes, refuses to overwrite unless asked, and round-trips", async () => {
    const profile = parse(`${BASE}passphrase: correct horse\nkeep_within: 2w\nchunk_size: 4M\n`);
    const file = await saveProfile("nightly", profile, { env });
    expect(file).toBe(path.join(profilesDir(), "nightly.yaml"));
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(fs.statSync(profilesDir()).mode & 0o777).toBe(0o700);
    expect(fs.statSync(path.join(tmp, "qbackup")).mode & 0o777).toBe(0o700);
    expect(await loadProfile("nightly", env)).toEqual({ name: "nightly", file, profile });

    const before = fs.readFileSync(file, "utf8");
    const changed = { ...profile, jobs: 2 };
    await expect(saveProfile("nightly", changed, { env })).rejects.toMatchObject({ code: "ERR_DEST_EXISTS" });
    expect(fs.readFileSync(file, "utf8")).toBe(before);
    await saveProfile("nightly", changed, { env, overwrite: true });
    expect((await loadProfile("nightly", env)).profile.jobs).toBe(2);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    // no temporary files are left behind
    expect(fs.readdirSync(profilesDir())).toEqual(["nightly.yaml"]);

    const byPath = path.join(tmp, "dir", "x.yaml");
    expect(await saveProfile(byPath, profile, { env })).toBe(byPath);
    expect((await loadProfile(byPath, env)).profile).toEqual(profile);
  });

  it("refuses to save a profile that would not load", async () => {
    const invalid = { ...parse(BASE), jobs: 0 };
    await expect(saveProfile("x", invalid, { env })).rejects.toMatchObject({ code: "ERR_PROFILE" });
    expect(fs.existsSync(path.join(profilesDir(), "x.yaml"))).toBe(false);
  });
});
