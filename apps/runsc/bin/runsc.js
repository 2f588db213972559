#!/usr/bin/env node
// The `runsc` executable.
//
// For the commands that host a sandbox, a guest worker thread is started first thing, so that it
// boots on another core while the CLI loads; the kernel's pool adopts it. The CLI is the
// bundle built by `pnpm install` / `pnpm build` (dist/runsc.cjs), compiled with its V8 code
// cache (dist/runsc.cjs.cache, rewritten at exit when missing or stale); without a bundle, the
// unbundled compiled output runs.
import { startGuestThread } from "@runsc/kernel/start-thread"
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs"
import Module, { createRequire } from "node:module"
import { dirname } from "node:path"
import { fileURLToPath } from "node:url"
import { Script } from "node:vm"

const argv = process.argv
// The commands that host a sandbox in this process: do, and boot (the process create starts).
const runsGuest = argv.includes("do") || argv.includes("boot")
const startedThreads = runsGuest ? [startGuestThread()] : []

const bundle = fileURLToPath(new URL("../dist/runsc.cjs", import.meta.url))
const cache = `${bundle}.cache`

const loadBundle = () => {
  const cachedData = existsSync(cache) ? readFileSync(cache) : undefined
  const script = new Script(Module.wrap(readFileSync(bundle, "utf8")), { filename: bundle, cachedData })
  if (cachedData === undefined || script.cachedDataRejected) {
    // Made at exit, it also holds the functions this run compiled lazily.
    process.once("exit", () => {
      try {
        // Written aside, then renamed: a concurrent runsc never reads half a cache.
        const aside = `${cache}.${process.pid}`
        writeFileSync(aside, script.createCachedData())
        renameSync(aside, cache)
      } catch {
        // A read-only install only starts slower.
      }
    })
  }
  const module = { exports: {} }
  script.runInThisContext()(module.exports, createRequire(bundle), module, bundle, dirname(bundle))
  return module.exports
}

const { main } = existsSync(bundle) ? loadBundle() : await import("../dist/main.js")
await main(argv, startedThreads)
