#!/usr/bin/env node
// The `runsc` executable: the bundled CLI built by `pnpm install` (or `pnpm build`), else the
// unbundled compiled output.
import { existsSync } from "node:fs"

const bundle = new URL("../dist/runsc.mjs", import.meta.url)
await import(existsSync(bundle) ? bundle.href : "../dist/main.js")
