// @ts-check
import js from "@eslint/js";
import tseslint from "typescript-eslint";
import globals from "globals";

const nodeIo = ["node:fs", "node:fs/promises", "node:child_process", "node:net", "node:worker_threads", "node:tty"];

/** What a codec may not import: I/O modules (but `allowed`) and the CLI library. */
const codecImports = (allowed = []) => [
  "error",
  {
    paths: [
      ...nodeIo
        .filter((name) => !allowed.includes(name))
        .map((name) => ({ name, message: "codecs are pure: no I/O here" })),
      { name: "commander", message: "only src/cli uses the CLI library" },
    ],
  },
];

export default tseslint.config(
  { ignores: ["dist/", "node_modules/", "coverage/"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node } },
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/consistent-type-imports": "error",
    },
  },
  {
    // Codecs are pure: bytes in, values or bytes out. No files, processes, sockets or threads.
    files: ["src/codec/**/*.ts", "src/format/**/*.ts"],
    ignores: ["**/*.test.ts"],
    rules: { "no-restricted-imports": codecImports() },
  },
  {
    // The one exception: scrypt's WebAssembly core runs on worker threads, as node:crypto's scrypt
    // runs on libuv's pool. A pure function of its inputs, only off the event loop.
    files: ["src/codec/scrypt/wasm-kdf.ts"],
    rules: { "no-restricted-imports": codecImports(["node:worker_threads"]) },
  },
  {
    files: ["src/create/**/*.ts", "src/runtime/**/*.ts"],
    ignores: ["**/*.test.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        { paths: [{ name: "commander", message: "only src/cli uses the CLI library" }] },
      ],
    },
  },
);
