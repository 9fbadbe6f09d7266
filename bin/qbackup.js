#!/usr/bin/env node
// The qbackup CLI. Runs the compiled code in dist/ (npm run build).
import { availableParallelism } from "node:os";

// Compression, key derivation and file I/O all run on libuv's threadpool (4 threads by default);
// it is sized before anything uses it, so every core can be busy with more than one of them.
process.env.UV_THREADPOOL_SIZE ??= String(Math.max(4, availableParallelism() * 2 + 2));
const { main } = await import("../dist/cli/main.js");

process.exitCode = await main();
