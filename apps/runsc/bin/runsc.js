#!/usr/bin/env node
// The `runsc` executable: loads the compiled CLI (built by `pnpm install` / `pnpm build`).
import "../dist/main.js"
