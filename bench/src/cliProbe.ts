/**
 * Preloaded into the runsc CLI (`node --import bench/dist/cliProbe.js apps/runsc/bin/runsc.js …`)
 * to split its cold start into phases without touching the CLI: it records when the preload ran
 * (≈ node boot), when each worker thread was constructed and when each posted its first two
 * messages (Ready, then Ended for the worker that ran the guest), and when the process exits.
 * All times are performance.now(), i.e. ms since the process started. Printed as one line on
 * stderr: `BENCHPROBE {json}`.
 */
import * as Fs from "node:fs"
import { createRequire, syncBuiltinESMExports } from "node:module"
import { performance } from "node:perf_hooks"

const require = createRequire(import.meta.url)
const workerThreads = require("node:worker_threads") as typeof import("node:worker_threads")
const Original = workerThreads.Worker

const preload = performance.now()
const workers: Array<{ constructed: number; messages: Array<number> }> = []

class ProbedWorker extends Original {
  constructor(...args: ConstructorParameters<typeof Original>) {
    const constructed = performance.now()
    super(...args)
    const record = { constructed, messages: [] as Array<number> }
    workers.push(record)
    const onMessage = () => {
      record.messages.push(performance.now())
      if (record.messages.length >= 2) this.off("message", onMessage)
    }
    this.on("message", onMessage)
  }
}
workerThreads.Worker = ProbedWorker as typeof Original

// The first statSync of BENCHPROBE_MARK (the `do` handler checks whether PROGRAM is a host
// file): the CLI's modules are loaded and its command line parsed by then.
const fs = require("node:fs") as { -readonly [K in keyof typeof import("node:fs")]: (typeof import("node:fs"))[K] }
const mark = process.env["BENCHPROBE_MARK"]
let handler: number | undefined
const originalStatSync = fs.statSync
fs.statSync = ((path: Fs.PathLike, options?: Fs.StatSyncOptions) => {
  if (handler === undefined && mark !== undefined && String(path) === mark) handler = performance.now()
  return originalStatSync(path, options)
}) as typeof fs.statSync
syncBuiltinESMExports()

process.on("exit", () => {
  Fs.writeSync(2, `BENCHPROBE ${JSON.stringify({ preload, handler, workers, exit: performance.now() })}\n`)
})
