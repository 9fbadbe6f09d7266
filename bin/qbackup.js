#!/usr/bin/env node
// The qbackup CLI. Runs the compiled code in dist/ (npm run build).
import { main } from "../dist/cli/main.js";

process.exitCode = await main();
