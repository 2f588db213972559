/**
 * Preloaded into the runsc CLI (`node --import bench/dist/cliProbe.js apps/runsc/bin/runsc.cjs …`)
 * to split its cold start into phases without touching the CLI.
 *
 * On the main thread it records when the preload ran (≈ node boot), when each worker thread was
 * constructed (bin/runsc.cjs constructs the guest thread first thing, before it loads the CLI)
 * and when that `new Worker` call returned, when the first message was posted to each worker
 * (the pool's Run: the guest starts), when each worker's first two messages arrived (Ready, then
 * Ended for the worker that ran the guest), when the `do` handler ran, and when the process
 * exits. Printed at exit as one line on stderr: `BENCHPROBE {json}`.
 *
 * A message from a worker is only seen when the main thread gets back to its event loop, which
 * it does not while it compiles and evaluates the CLI; so the preload, which node also runs in
 * every worker thread, records in the guest worker when its own code started and when it posted
 * Ready and Ended, and prints `BENCHPROBE_WORKER {json}` lines at once.
 *
 * Main-thread times are performance.now(), i.e. ms since the process started; worker times are
 * absolute (performance.timeOrigin + performance.now()) and the main line carries its own
 * timeOrigin, so that the reader can put them on the main thread's time line.
 */
import * as Fs from "node:fs"
import { createRequire, syncBuiltinESMExports } from "node:module"
import { performance } from "node:perf_hooks"

const require = createRequire(import.meta.url)
const workerThreads = require("node:worker_threads") as typeof import("node:worker_threads")

const absolute = () => performance.timeOrigin + performance.now()

export interface ProbedWorkerRecord {
  readonly threadId: number
  /** `new Worker` called. */
  readonly constructed: number
  /** `new Worker` returned (the call blocks its caller while the thread is set up). */
  readonly returned: number
  /** First postMessage to the worker (the pool's Run). */
  readonly posted?: number
  /** Messages received from the worker (Ready, Ended), as the main thread saw them. */
  readonly messages: Array<number>
}

export interface ProbeLine {
  readonly origin: number
  readonly preload: number
  readonly handler?: number
  readonly workers: Array<ProbedWorkerRecord>
  readonly exit: number
}

export interface WorkerProbeLine {
  readonly threadId: number
  readonly event: "ready" | "ended"
  /** Absolute ms (timeOrigin + now) of the worker's preload (its first JS) and of the post. */
  readonly boot: number
  readonly at: number
}

if (workerThreads.isMainThread) {
  const Original = workerThreads.Worker
  const preload = performance.now()
  const workers: Array<{ -readonly [K in keyof ProbedWorkerRecord]: ProbedWorkerRecord[K] }> = []

  class ProbedWorker extends Original {
    private probe: (typeof workers)[number] | undefined
    constructor(...args: ConstructorParameters<typeof Original>) {
      const constructed = performance.now()
      super(...args)
      const record = { threadId: this.threadId, constructed, returned: performance.now(), messages: [] as Array<number> }
      this.probe = record
      workers.push(record)
      const onMessage = () => {
        record.messages.push(performance.now())
        if (record.messages.length >= 2) this.off("message", onMessage)
      }
      this.on("message", onMessage)
    }
    override postMessage(...args: Parameters<InstanceType<typeof Original>["postMessage"]>): void {
      if (this.probe !== undefined && this.probe.posted === undefined) this.probe.posted = performance.now()
      super.postMessage(...args)
    }
  }
  workerThreads.Worker = ProbedWorker as typeof Original

  // The first statSync of BENCHPROBE_MARK (the `do` handler checks whether PROGRAM is a host
  // file): the CLI is loaded and its command line parsed by then.
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
    const line: ProbeLine = { origin: performance.timeOrigin, preload, ...(handler !== undefined ? { handler } : {}), workers, exit: performance.now() }
    Fs.writeSync(2, `BENCHPROBE ${JSON.stringify(line)}\n`)
  })
} else if (workerThreads.parentPort !== null) {
  const boot = absolute()
  const port = workerThreads.parentPort
  const post = port.postMessage.bind(port)
  let posts = 0
  // Reported after the post, so that the write does not delay the message.
  port.postMessage = (...args: Parameters<typeof port.postMessage>) => {
    const at = absolute()
    post(...args)
    if (posts < 2) {
      const line: WorkerProbeLine = { threadId: workerThreads.threadId, event: posts === 0 ? "ready" : "ended", boot, at }
      posts++
      Fs.writeSync(2, `BENCHPROBE_WORKER ${JSON.stringify(line)}\n`)
    }
  }
}
