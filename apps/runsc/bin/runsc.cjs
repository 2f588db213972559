#!/usr/bin/env node
// The `runsc` executable. CommonJS, as what it loads: an ES module entry alone costs ~20 ms of
// Node's start.
//
// For the commands that host a sandbox, a guest worker thread is started first thing, so that it
// boots on another core while the CLI loads; the kernel's pool adopts it. The commands engines
// run around every container try the fast path first (dist/fastPath.cjs, bundled from
// src/fastPath.ts), which loads no CLI. The CLI is the bundle built by `pnpm install` / `pnpm
// build` (dist/runsc.cjs), compiled with its V8 code cache (dist/runsc.cjs.cache, rewritten at
// exit when missing or stale). Without bundles, the unbundled compiled output runs.
"use strict"
const { existsSync, readFileSync, renameSync, writeFileSync } = require("node:fs")
const Module = require("node:module")
const { dirname, join } = require("node:path")
const { Script } = require("node:vm")

const argv = process.argv
// The commands that host a sandbox in this process: do, and boot (the process create starts).
const runsGuest = argv.includes("do") || argv.includes("boot")
const dist = join(__dirname, "..", "dist")
const bundle = join(dist, "runsc.cjs")
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
  script.runInThisContext()(module.exports, Module.createRequire(bundle), module, bundle, dirname(bundle))
  return module.exports
}

const cli = async () => (existsSync(bundle) ? loadBundle() : await import("../dist/main.js"))

const run = async () => {
  const startedThreads = runsGuest ? [(await import("@runsc/kernel/start-thread")).startGuestThread()] : []
  // state, kill, start and delete, in their common case, without loading the CLI (fastPath.ts).
  // RUNSC_NO_FAST_PATH=1 runs everything through the CLI (to compare the two, or rule one out).
  if (!runsGuest && process.env.RUNSC_NO_FAST_PATH !== "1") {
    const fastPathBundle = join(dist, "fastPath.cjs")
    const { fastPath } = existsSync(fastPathBundle) ? require(fastPathBundle) : await import("../dist/fastPath.js")
    const result = await fastPath(argv)
    if (result._tag === "Done") process.exit(result.code)
    if (result._tag === "Refused") await (await cli()).reportRefusal(argv, result.method, result.cause)
  }
  await (await cli()).main(argv, startedThreads)
}

run()
