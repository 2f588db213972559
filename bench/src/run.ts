/**
 * The runsc benchmark suite: `pnpm bench` (or `npx tsc -b bench && node bench/dist/run.js` from
 * the repo root). Every benchmark measures runsc and its baseline (the same guest under node:wasi)
 * in the same run, interleaved, after a warm-up, and reports medians. Timing never fails
 * anything: a missed aim is reported, not raised. Prints a Markdown table and writes it to
 * bench/results.md.
 */
import type { ExitStatus } from "@runsc/abi"
import { CHANNEL_BYTES } from "@runsc/kernel"
import { spawnSync } from "node:child_process"
import * as Fs from "node:fs"
import { createRequire } from "node:module"
import * as Os from "node:os"
import * as Path from "node:path"
import { pathToFileURL } from "node:url"
import { Worker } from "node:worker_threads"
import type { ProbedWorkerRecord, ProbeLine, WorkerProbeLine } from "./cliProbe.js"
import { benchCli } from "./cli.js"
import { benchEngine } from "./engine.js"
import { benchDestroy100, benchExec, benchIdleMem, benchLifecycle, benchSignal } from "./containers.js"
import { type BenchOptions, type BenchRow } from "./row.js"
import { benchFiles, benchPages } from "./files.js"
import { benchStdin } from "./stdin.js"
import { channelFloor, floorSpinPolicy } from "./floor.js"
import { benchPreemption } from "./preemption.js"
import { benchSockets } from "./sockets.js"
import { runNodeWasi } from "./nodeWasi.js"
import {
  benchDir,
  cliProbe,
  fixture,
  fixturesDir,
  helloNodeWasi,
  helloProgramRel,
  helloRootRel,
  repoRoot,
  runscApp,
  runscBin
} from "./paths.js"
import { type KernelRuntime, makeKernelRuntime, runFreshSandbox, runOnKernel } from "./runscKernel.js"
import { fmtMs, fmtNs, fmtRatio, median, now, percentile, sleep } from "./stats.js"
import { assemble, fdstatLoopWat, trivialWat } from "./wat.js"
import { workerCounts } from "./workerCount.js"

// ---- configuration -----------------------------------------------------------------------------

const WRITES = 200_000
const CLOCK_CALLS = 1_000_000
const FDSTAT_CALLS = 30_000
const FLOOR_ROUND_TRIPS = 10_000
const RUNS = 5 // in-process throughput benchmarks
const CPU_RUNS = 5 // cpu.wasm is ~0.5-1 s per run and side
const START_RUNS = 50 // warm-pool process starts
const START_PAUSE_MS = 150 // between in-process runs, as between separate process starts (5b: back to back)
const COLD_RUNS = 10 // CLI cold start
const SPLIT_RUNS = 5 // cold-start split rows
const SPAWN_RUNS = 10 // worker spawn

// ---- output ------------------------------------------------------------------------------------

const rows: Array<BenchRow> = []
const splitRows: Array<{ phase: string; value: string; note: string }> = []
const notes: Array<string> = []

const progress = (text: string) => process.stderr.write(`[bench] ${text}\n`)
/** BENCH_VERBOSE=1 prints every sample (ms) on stderr. */
const verbose = (label: string, samples: Record<string, ReadonlyArray<number>>) => {
  if (process.env["BENCH_VERBOSE"]) {
    for (const [side, xs] of Object.entries(samples)) progress(`  ${label} ${side}: ${xs.map((x) => x.toFixed(2)).join(" ")}`)
  }
}

const ratioAim = (ratio: number, limit: number) => (Number.isFinite(ratio) ? `≤ ${limit}× (${ratio <= limit ? "met" : "missed"})` : `≤ ${limit}×`)

const failedRow = (name: string, error: unknown): BenchRow => ({
  name,
  runsc: `failed: ${error instanceof Error ? error.message : String(error)}`.slice(0, 120),
  baseline: "",
  ratio: "",
  aim: ""
})

const expectExit0 = (what: string, status: ExitStatus) => {
  if (status._tag !== "Exited" || status.code !== 0) throw new Error(`${what}: guest ended with ${JSON.stringify(status)}`)
}
const expectCode0 = (what: string, code: number) => {
  if (code !== 0) throw new Error(`${what}: node:wasi guest exited with ${code}`)
}

const devNull = Fs.openSync("/dev/null", "w")

// ---- in-process throughput: one guest, runsc (warm kernel) vs node:wasi ------------------------

interface Throughput {
  readonly runsc: Array<number>
  readonly baseline: Array<number>
}

/** Runs `bytes` with `argv` on the kernel and under node:wasi, warm-up first, interleaved. */
const throughput = async (
  rt: KernelRuntime,
  label: string,
  bytes: Uint8Array,
  argv: ReadonlyArray<string>,
  runs: number,
  /** Made after each pair of runs (another measurement taken in the same conditions). */
  afterEach: () => Promise<void> = async () => {}
): Promise<Throughput> => {
  const module = await WebAssembly.compile(bytes as Uint8Array<ArrayBuffer>)
  const onKernel = async () => {
    const r = await rt.runPromise(runOnKernel({ bytes, argv, rootPath: fixturesDir, stdout: devNull }))
    expectExit0(`${label} (runsc)`, r.status)
    return r.ms
  }
  const onNode = () => {
    const r = runNodeWasi({ module, args: argv, stdout: devNull })
    expectCode0(`${label} (node:wasi)`, r.code)
    return r.ms
  }
  await onKernel()
  onNode()
  const result: Throughput = { runsc: [], baseline: [] }
  for (let i = 0; i < runs; i++) {
    // Runs apart, as separate process starts would be; each finds the previous run's worker idle.
    await sleep(START_PAUSE_MS)
    result.runsc.push(await onKernel())
    result.baseline.push(onNode())
    await afterEach()
  }
  verbose(label, { runsc: result.runsc, baseline: result.baseline })
  return result
}

const perCallRow = (name: string, t: Throughput, calls: number, limit: number): BenchRow => {
  const r = median(t.runsc.map((ms) => (ms * 1e6) / calls))
  const b = median(t.baseline.map((ms) => (ms * 1e6) / calls))
  return { name, runsc: fmtNs(r), baseline: fmtNs(b), ratio: fmtRatio(r / b), aim: ratioAim(r / b, limit) }
}

const wallRow = (name: string, runsc: Array<number>, baseline: Array<number>, aim: string | number): BenchRow => {
  const r = median(runsc)
  const b = median(baseline)
  return { name, runsc: fmtMs(r), baseline: fmtMs(b), ratio: fmtRatio(r / b), aim: typeof aim === "number" ? ratioAim(r / b, aim) : aim }
}

const benchWriteHeavy = async (rt: KernelRuntime) => {
  const name = `1. write-heavy: write_many ${WRITES} × write(1,"x",1) → /dev/null`
  progress(name)
  try {
    const t = await throughput(rt, "write_many", Fs.readFileSync(fixture("write_many")), ["write_many.wasm", String(WRITES)], RUNS)
    rows.push(wallRow(`${name}, guest wall (warm kernel, median of ${RUNS})`, t.runsc, t.baseline, "—"))
    rows.push(perCallRow(`1. write-heavy: per write (median of ${RUNS})`, t, WRITES, 1.5))
  } catch (e) {
    rows.push(failedRow(name, e))
  }
}

/**
 * What runsc's in-worker write path cannot go below: a plain JS loop of Fs.writevSync(/dev/null,
 * [one byte of a wasm memory]) in a worker thread (the guest worker's fast path without its syscall shim).
 */
const benchWriteFloor = async () => {
  const name = `1c. write floor, not runsc: plain JS Fs.writevSync(/dev/null, [1 byte]) loop in a worker, per write (median of ${RUNS})`
  progress(name)
  try {
    const source = `
const { parentPort, workerData } = require("node:worker_threads")
const Fs = require("node:fs")
const mem = new Uint8Array(new WebAssembly.Memory({ initial: 2 }).buffer)
parentPort.on("message", (n) => {
  const t0 = performance.now()
  for (let i = 0; i < n; i++) Fs.writevSync(workerData.fd, [mem.subarray(16, 17)])
  parentPort.postMessage(performance.now() - t0)
})`
    const worker = new Worker(source, { eval: true, workerData: { fd: devNull } })
    const once = (n: number) =>
      new Promise<number>((resolve) => {
        worker.once("message", resolve)
        worker.postMessage(n)
      })
    try {
      await once(WRITES)
      const ns: Array<number> = []
      for (let i = 0; i < RUNS; i++) ns.push(((await once(WRITES)) * 1e6) / WRITES)
      rows.push({ name, runsc: fmtNs(median(ns)), baseline: "—", ratio: "—", aim: "— (the JS fs binding's own cost per write)" })
    } finally {
      await worker.terminate()
    }
  } catch (e) {
    rows.push(failedRow(name, e))
  }
}

const benchWriteFreshSandbox = async () => {
  const name = `1b. write-heavy, whole throw-away sandbox in process (Loader layer: kernel + pool + compile + run + teardown)`
  progress(name)
  try {
    const bytes = Fs.readFileSync(fixture("write_many"))
    const argv = ["write_many.wasm", String(WRITES)]
    const sandbox = async () => {
      const r = await runFreshSandbox(fixture("write_many"), argv, fixturesDir, devNull)
      expectExit0("write_many (fresh sandbox)", r.status)
      return r.ms
    }
    const node = async () => {
      const t0 = now()
      const module = await WebAssembly.compile(bytes)
      const r = runNodeWasi({ module, args: argv, stdout: devNull })
      expectCode0("write_many (node:wasi, compile each run)", r.code)
      return now() - t0
    }
    await sandbox()
    await node()
    const r: Array<number> = []
    const b: Array<number> = []
    for (let i = 0; i < RUNS; i++) {
      r.push(await sandbox())
      b.push(await node())
    }
    rows.push(wallRow(`${name}, vs compile+run (median of ${RUNS})`, r, b, "—"))
  } catch (e) {
    rows.push(failedRow(name, e))
  }
}

const benchClock = async (rt: KernelRuntime) => {
  const name = `2. clock_time_get(MONOTONIC): clock ${CLOCK_CALLS}, per call (median of ${RUNS})`
  progress(name)
  try {
    const t = await throughput(rt, "clock", Fs.readFileSync(fixture("clock")), ["clock.wasm", String(CLOCK_CALLS)], RUNS)
    rows.push(perCallRow(name, t, CLOCK_CALLS, 2))
  } catch (e) {
    rows.push(failedRow(name, e))
  }
}

const benchCpu = async (rt: KernelRuntime) => {
  const name = `3. CPU-bound: cpu.wasm (sieve, default rounds), wall (median of ${CPU_RUNS})`
  progress(name)
  try {
    const t = await throughput(rt, "cpu", Fs.readFileSync(fixture("cpu")), ["cpu.wasm"], CPU_RUNS)
    // On a shared machine noise only ever adds time: the minimum is shown too.
    rows.push(wallRow(`${name}; min ${fmtMs(Math.min(...t.runsc))} vs ${fmtMs(Math.min(...t.baseline))}`, t.runsc, t.baseline, 1.05))
  } catch (e) {
    rows.push(failedRow(name, e))
  }
}

const benchSyscallRoundTrip = async (rt: KernelRuntime) => {
  const name = `6. syscall round trip: ${FDSTAT_CALLS} × fd_fdstat_get(1) (WAT loop), per call (median of ${RUNS})`
  const floorName = `6b. channel floor, not runsc: the same SAB handshake in plain JS with runsc's AdaptiveSpin policy at both ends (${floorSpinPolicy}; then worker Atomics.wait ↔ main Atomics.waitAsync, each end woken only when it has flagged itself parked), no Effect, no syscall work, per round trip over ${FLOOR_ROUND_TRIPS}, one run after each pair of row 6 (median of ${RUNS})`
  progress(name)
  // The floor is taken after each pair of row 6's runs, so that each of row 6's runs has a floor
  // measured in the same conditions: on a shared VM both move together from minute to minute.
  const floor: Array<number> = []
  try {
    await channelFloor(1000)
    const bytes = await assemble("fdstat.wat", fdstatLoopWat(FDSTAT_CALLS))
    const t = await throughput(rt, "fdstat loop", bytes, ["fdstat.wasm"], RUNS, async () => {
      floor.push(await channelFloor(FLOOR_ROUND_TRIPS))
    })
    rows.push({ ...perCallRow(name, t, FDSTAT_CALLS, Number.NaN), aim: "— (shows the channel cost; its aim is in row 6b)" })
    const over = median(t.runsc.map((ms, i) => (ms * 1e6) / FDSTAT_CALLS / floor[i]!))
    rows.push({
      name: floorName,
      runsc: fmtNs(median(floor)),
      baseline: "—",
      ratio: "—",
      aim: `what any runsc syscall through the sentry pays at least; row 6 ÷ 6b, run by run: ${fmtRatio(over)}, ${ratioAim(over, 1.3)}`
    })
  } catch (e) {
    rows.push(failedRow(name, e))
    rows.push(failedRow(floorName, e))
  }
}

// ---- warm-pool process start -------------------------------------------------------------------

const benchWarmStart = async (rt: KernelRuntime) => {
  const name = `5. process start from the warm pool: startProcess → exit of a trivial guest`
  progress(name)
  try {
    const bytes = await assemble("trivial.wat", trivialWat)
    const module = await WebAssembly.compile(bytes as Uint8Array<ArrayBuffer>)
    const run = { bytes, argv: ["trivial.wasm"], rootPath: fixturesDir, stdout: devNull }
    const onKernel = async () => {
      const r = await rt.runPromise(runOnKernel(run))
      expectExit0("trivial (runsc)", r.status)
      return r.ms
    }
    const onNode = () => {
      const r = runNodeWasi({ module, args: ["trivial.wasm"], stdout: devNull })
      expectCode0("trivial (node:wasi)", r.code)
      return r.ms
    }
    for (let i = 0; i < 5; i++) {
      await onKernel()
      onNode()
      await sleep(START_PAUSE_MS)
    }
    const paused: Array<number> = []
    // Which starts made the pool start a worker (none idle, or replacing a terminated one) or
    // terminate one (a surplus worker at release). With one run at a time and warmWorkers 1 the
    // run's worker comes back idle at its exit, so neither should happen.
    const byKind = { plain: [] as Array<number>, spawned: [] as Array<number>, terminated: [] as Array<number> }
    const baseline: Array<number> = []
    const spawned0 = workerCounts.constructed
    for (let i = 0; i < START_RUNS; i++) {
      await sleep(START_PAUSE_MS)
      const c0 = workerCounts.constructed
      const t0 = workerCounts.terminated
      const ms = await onKernel()
      paused.push(ms)
      const kind = workerCounts.constructed > c0 ? "spawned" : workerCounts.terminated > t0 ? "terminated" : "plain"
      byKind[kind].push(ms)
      baseline.push(onNode())
    }
    const spawnedPaused = workerCounts.constructed - spawned0
    const backToBack: Array<number> = []
    const spawned1 = workerCounts.constructed
    for (let i = 0; i < START_RUNS; i++) backToBack.push(await onKernel())
    await sleep(500)
    const spawnedBackToBack = workerCounts.constructed - spawned1
    const r = median(paused)
    const b = median(baseline)
    rows.push({
      name: `${name}, ${START_PAUSE_MS} ms apart (median of ${START_RUNS}; runsc p90 ${fmtMs(percentile(paused, 90))}; worker threads spawned by the pool meanwhile: ${spawnedPaused})`,
      runsc: fmtMs(r),
      baseline: fmtMs(b),
      ratio: fmtRatio(r / b),
      aim: `≤ 2 ms median (${r <= 2 ? "met" : "missed"})`
    })
    const kinds = (Object.keys(byKind) as Array<keyof typeof byKind>)
      .filter((k) => byKind[k].length > 0)
      .map((k) => `${k === "plain" ? "neither" : k === "spawned" ? "pool spawned a worker" : "pool terminated a worker"}: ${fmtMs(median(byKind[k]))} (n=${byKind[k].length})`)
    notes.push(`Row 5 split by what the pool did during the start: ${kinds.join("; ")}.`)
    const bb = median(backToBack)
    rows.push({
      name: `5b. same, back to back (median of ${START_RUNS}; p90 ${fmtMs(percentile(backToBack, 90))}, max ${fmtMs(Math.max(...backToBack))}; workers spawned: ${spawnedBackToBack})`,
      runsc: fmtMs(bb),
      baseline: fmtMs(b),
      ratio: fmtRatio(bb / b),
      aim: "—"
    })
  } catch (e) {
    rows.push(failedRow(name, e))
  }
}

/** Worker start cost: the kernel's guest worker script until its Ready vs a bare eval worker. */
const benchWorkerSpawn = async () => {
  const name = `5c. worker thread start: new Worker(kernel guest worker) → Ready vs bare eval worker → first message (median of ${SPAWN_RUNS})`
  progress(name)
  try {
    let guestWorker: URL
    try {
      guestWorker = new URL(import.meta.resolve("@runsc/kernel/worker"))
    } catch {
      guestWorker = new URL("./platform/worker.js", import.meta.resolve("@runsc/kernel"))
    }
    // Any SharedArrayBuffer of the channel's size.
    const channelBytes = CHANNEL_BYTES
    const ctor: Array<number> = []
    const spawn = (make: () => Worker, record = false) =>
      new Promise<number>((resolve, reject) => {
        const t0 = now()
        const w = make()
        if (record) ctor.push(now() - t0)
        w.once("message", () => {
          const ms = now() - t0
          void w.terminate().then(() => resolve(ms))
        })
        w.once("error", reject)
      })
    const kernel = () => spawn(() => new Worker(guestWorker, { workerData: { buffer: new SharedArrayBuffer(channelBytes) } }), true)
    const bare = () => spawn(() => new Worker(`require("node:worker_threads").parentPort.postMessage(0)`, { eval: true }))
    await kernel()
    await bare()
    const r: Array<number> = []
    const b: Array<number> = []
    for (let i = 0; i < SPAWN_RUNS; i++) {
      r.push(await kernel())
      b.push(await bare())
    }
    rows.push(wallRow(`${name}; the \`new Worker\` call itself blocks the caller ${fmtMs(median(ctor))}`, r, b, "—"))
  } catch (e) {
    rows.push(failedRow(name, e))
  }
}

// ---- cold start: child processes ---------------------------------------------------------------

interface ChildRun {
  readonly ms: number
  readonly status: number | null
  readonly stderr: string
}

const child = (command: string, args: ReadonlyArray<string>, cwd = repoRoot, env?: Record<string, string>): ChildRun => {
  const t0 = now()
  const r = spawnSync(command, args, {
    cwd,
    stdio: ["ignore", devNull, "pipe"],
    encoding: "utf8",
    ...(env ? { env: { ...process.env, ...env } } : {})
  })
  const ms = now() - t0
  if (r.error) throw r.error
  return { ms, status: r.status, stderr: r.stderr }
}

const expectChild0 = (what: string, r: ChildRun) => {
  if (r.status !== 0) throw new Error(`${what} exited with ${r.status}: ${r.stderr.trim().split("\n")[0] ?? ""}`)
}

const cliArgs = ["do", "--root-dir", helloRootRel, helloProgramRel]
const binScript = Path.join(runscApp, "bin", "runsc.cjs")
/** The CLI bundle bin/runsc.cjs loads when it exists, and its V8 code cache (apps/runsc/scripts/bundle.mjs). */
const bundledCli = Path.join(runscApp, "dist", "runsc.cjs")
const bundleCache = `${bundledCli}.cache`
const bundleCacheAside = `${bundleCache}.bench-aside`

const benchColdStart = () => {
  const name = `4. cold start: \`runsc do --root-dir ${helloRootRel} ${helloProgramRel}\` (child process through node_modules/.bin/runsc, stdout → /dev/null) vs bench/baseline/hello-node-wasi.mjs`
  progress(name)
  try {
    const cli = () => {
      const r = child(runscBin, cliArgs)
      expectChild0("runsc do hello", r)
      return r.ms
    }
    const node = () => {
      const r = child(process.execPath, [helloNodeWasi, helloRootRel, helloProgramRel])
      expectChild0("hello-node-wasi.mjs", r)
      return r.ms
    }
    cli()
    node()
    const r: Array<number> = []
    const b: Array<number> = []
    for (let i = 0; i < COLD_RUNS; i++) {
      r.push(cli())
      b.push(node())
    }
    rows.push(wallRow(`${name} (median of ${COLD_RUNS})`, r, b, 1.5))
  } catch (e) {
    rows.push(failedRow(name, e))
  }
}

/**
 * Runs `f` with the bundle's code cache moved aside (renamed, in the same directory), and puts it
 * back afterwards over whatever cache the runs wrote meanwhile: on return, on a throw, at exit,
 * and on SIGINT/SIGTERM (re-raised once the cache is back). A cache left aside by a killed run of
 * this suite is put back first.
 */
const withCodeCacheAside = <A>(f: () => A): A => {
  if (Fs.existsSync(bundleCacheAside)) {
    if (Fs.existsSync(bundleCache)) Fs.rmSync(bundleCacheAside)
    else Fs.renameSync(bundleCacheAside, bundleCache)
  }
  Fs.renameSync(bundleCache, bundleCacheAside)
  let restored = false
  const restore = () => {
    if (restored) return
    Fs.renameSync(bundleCacheAside, bundleCache)
    restored = true
  }
  const atExit = () => {
    try {
      restore()
    } catch (e) {
      Fs.writeSync(2, `[bench] could not put the code cache back: move ${bundleCacheAside} to ${bundleCache} (${String(e)})\n`)
    }
  }
  const onSignal = (signal: NodeJS.Signals) => {
    atExit()
    process.kill(process.pid, signal)
  }
  process.on("exit", atExit)
  process.once("SIGINT", onSignal)
  process.once("SIGTERM", onSignal)
  try {
    return f()
  } finally {
    try {
      restore()
    } finally {
      process.off("exit", atExit)
      process.off("SIGINT", onSignal)
      process.off("SIGTERM", onSignal)
    }
  }
}

interface WorkerTimes {
  boot?: number
  ready?: number
  ended?: number
}

/** One probed CLI run: the main thread's line, and the guest worker's times on the main thread's time line. */
interface Probe {
  readonly main: ProbeLine
  readonly guest: ProbedWorkerRecord | undefined
  readonly guestTimes: WorkerTimes
}

const parseProbe = (stderr: string): Probe => {
  const lines = stderr.split("\n")
  const mainLine = lines.find((l) => l.startsWith("BENCHPROBE "))
  if (mainLine === undefined) throw new Error("the CLI probe printed nothing")
  const main = JSON.parse(mainLine.slice("BENCHPROBE ".length)) as ProbeLine
  // The guest worker: the one the Run was posted to.
  const guest = main.workers.find((w) => w.posted !== undefined) ?? main.workers[0]
  const guestTimes: WorkerTimes = {}
  for (const l of lines) {
    if (!l.startsWith("BENCHPROBE_WORKER ")) continue
    const w = JSON.parse(l.slice("BENCHPROBE_WORKER ".length)) as WorkerProbeLine
    if (guest === undefined || w.threadId !== guest.threadId) continue
    guestTimes.boot = w.boot - main.origin
    guestTimes[w.event] = w.at - main.origin
  }
  return { main, guest, guestTimes }
}

/** Where the CLI's cold start goes: import-only children, the CLI's variants, and a probed CLI run. */
const benchColdSplit = () => {
  progress("4'. cold-start split")
  const medianOf = (f: () => number) => {
    f()
    return median(Array.from({ length: SPLIT_RUNS }, f))
  }
  const importing = (cwd: string, specifiers: ReadonlyArray<string>) => () => {
    const code = `await Promise.all([${specifiers.map((s) => `import(${JSON.stringify(s)})`).join(", ")}])`
    const r = child(process.execPath, ["--input-type=module", "-e", code], cwd)
    expectChild0(`import ${specifiers.join(", ")}`, r)
    return r.ms
  }
  const row = (phase: string, f: () => number, note: string) => {
    try {
      splitRows.push({ phase, value: fmtMs(medianOf(f)), note })
    } catch (e) {
      splitRows.push({ phase, value: "failed", note: (e instanceof Error ? e.message : String(e)).slice(0, 200) })
    }
  }
  try {
    const bare = medianOf(() => {
      const r = child(process.execPath, ["-e", "0"])
      expectChild0("node -e 0", r)
      return r.ms
    })
    splitRows.push({ phase: "`node -e 0` (node start + exit, spawnSync)", value: fmtMs(bare), note: "floor for every child process" })
    const imports: Array<[string, string, ReadonlyArray<string>]> = [
      ["import `effect`", benchDir, ["effect"]],
      ["import `@runsc/loader` (effect + spec + kernel + loader)", benchDir, ["@runsc/loader"]],
      ["import `@effect/cli` + `@effect/platform-node`", runscApp, ["@effect/cli", "@effect/platform-node"]],
      ["import the CLI's whole graph: `@effect/cli` + `@effect/platform-node` + `@runsc/loader`", runscApp, ["@effect/cli", "@effect/platform-node", "@runsc/loader"]]
    ]
    for (const [phase, cwd, specifiers] of imports) {
      const ms = medianOf(importing(cwd, specifiers))
      splitRows.push({ phase: `${phase} (unbundled ESM), child total`, value: fmtMs(ms), note: `${fmtMs(ms - bare)} over \`node -e 0\`` })
    }

    // The CLI's variants, run with node directly (no .bin shell shim, no probe).
    const binRun = (what: string) => () => {
      const r = child(process.execPath, [binScript, ...cliArgs])
      expectChild0(what, r)
      return r.ms
    }
    const hasBundle = Fs.existsSync(bundledCli)
    const hasCache = hasBundle && Fs.existsSync(bundleCache)
    row(
      `\`node apps/runsc/bin/runsc.cjs do …\`: ${hasBundle ? `bundle${hasCache ? " + its code cache" : " (no code cache present)"}` : "no bundle: unbundled"} (what \`runsc\` runs), child total`,
      binRun("runsc do hello"),
      `guest thread started first thing, then the CLI loaded${hasBundle ? " from apps/runsc/dist/runsc.cjs" : ""}`
    )
    if (hasCache) {
      const noCache = binRun("runsc do hello (no code cache)")
      withCodeCacheAside(() =>
        row(
          "same, bundle without its code cache, child total",
          () => {
            // Each run writes a fresh cache at exit (as a first run after install does): the next must not find it.
            Fs.rmSync(bundleCache, { force: true })
            return noCache()
          },
          "runsc.cjs.cache moved aside and put back afterwards; each run compiles the bundle from source, then writes a cache at exit"
        )
      )
    }
    // The unbundled CLI: what bin/runsc.cjs does without a bundle (start the guest thread, import
    // the compiled main.js, call main with a process.argv-shaped array). Run as CommonJS `-e`
    // code with dynamic import(): worker threads inherit the process's execArgv, and with
    // `--input-type=module` the ESM guest worker script refuses to load (ERR_INPUT_TYPE_NOT_ALLOWED).
    const requireFromApp = createRequire(Path.join(runscApp, "package.json"))
    const startThreadUrl = pathToFileURL(requireFromApp.resolve("@runsc/kernel/start-thread")).href
    const mainUrl = pathToFileURL(Path.join(runscApp, "dist", "main.js")).href
    const unbundledCode = [
      `(async () => {`,
      `  const { startGuestThread } = await import(${JSON.stringify(startThreadUrl)})`,
      `  const started = [startGuestThread()]`,
      `  const { main } = await import(${JSON.stringify(mainUrl)})`,
      `  await main([process.execPath, ${JSON.stringify(binScript)}, ...${JSON.stringify(cliArgs)}], started)`,
      `})().catch((e) => { console.error(e); process.exit(1) })`
    ].join("\n")
    row(
      "unbundled CLI: bin's steps with apps/runsc/dist/main.js (start the guest thread, `import(main.js)`, `main(argv, [thread])`), child total",
      () => {
        const r = child(process.execPath, ["-e", unbundledCode])
        expectChild0("unbundled runsc do hello", r)
        return r.ms
      },
      "Node's ESM loader resolves and compiles the CLI's module graph one module at a time"
    )

    // The CLI with a preload that timestamps the worker thread's life, the `do` handler and exit.
    const probes: Array<Probe> = []
    const probed = () => {
      const r = child(process.execPath, ["--import", pathToFileURL(cliProbe).href, binScript, ...cliArgs], repoRoot, {
        BENCHPROBE_MARK: helloProgramRel
      })
      expectChild0("probed runsc do hello", r)
      probes.push(parseProbe(r.stderr))
      return r.ms
    }
    probed()
    probes.length = 0
    const totals = Array.from({ length: SPLIT_RUNS }, probed)
    const phase = (f: (p: Probe) => number | undefined) =>
      fmtMs(median(probes.map(f).filter((x): x is number => x !== undefined && Number.isFinite(x))))
    const sub = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined ? undefined : a - b)
    const g = (p: Probe) => p.guest
    const threadsPerRun = [...new Set(probes.map((p) => p.main.workers.length))].join("/")
    splitRows.push({
      phase: "probed `node --import bench/dist/cliProbe.js apps/runsc/bin/runsc.cjs do …`: child total",
      value: fmtMs(median(totals)),
      note: `${SPLIT_RUNS} runs; below, medians of each run's phases; main-thread phases (no ‖) add up to its exit; worker threads constructed per run: ${threadsPerRun}`
    })
    splitRows.push({ phase: "  node boot → probe preload runs", value: phase((p) => p.main.preload), note: "≈ node's own start" })
    splitRows.push({
      phase: "  preload → bin/runsc.cjs's first statement, `new Worker` for the guest thread (load bin + @runsc/kernel/start-thread)",
      value: phase((p) => sub(g(p)?.constructed, p.main.preload)),
      note: `at ${phase((p) => g(p)?.constructed)}`
    })
    splitRows.push({
      phase: "  the `new Worker` call itself (blocks the main thread)",
      value: phase((p) => sub(g(p)?.returned, g(p)?.constructed)),
      note: ""
    })
    splitRows.push({
      phase: "  ‖ guest thread: `new Worker` → its first JS runs (thread boot)",
      value: phase((p) => sub(p.guestTimes.boot, g(p)?.constructed)),
      note: "on another core, overlapping the CLI load"
    })
    splitRows.push({
      phase: "  ‖ guest thread: first JS → Ready posted (load the kernel's worker.js)",
      value: phase((p) => sub(p.guestTimes.ready, p.guestTimes.boot)),
      note: `Ready at ${phase((p) => p.guestTimes.ready)}, ${phase((p) => sub(p.main.handler, p.guestTimes.ready))} before the \`do\` handler; the main thread sees it at ${phase((p) => g(p)?.messages[0])}`
    })
    splitRows.push({
      phase: "  `new Worker` returned → `do` handler runs (read the bundle and its code cache, compile, evaluate, parse the command line)",
      value: phase((p) => sub(p.main.handler, g(p)?.returned)),
      note: `handler = its Fs.statSync(PROGRAM), at ${phase((p) => p.main.handler)}`
    })
    splitRows.push({
      phase: "  `do` handler → Run posted to the adopted guest worker (spec, Loader + Kernel layer, read + compile hello; waits for Ready if later)",
      value: phase((p) => sub(g(p)?.posted, p.main.handler)),
      note: `at ${phase((p) => g(p)?.posted)}`
    })
    splitRows.push({
      phase: "  Run posted → guest Ended, as the main thread sees it (instantiate, hello runs)",
      value: phase((p) => sub(g(p)?.messages[1], g(p)?.posted)),
      note: `in the worker: Ended posted ${phase((p) => sub(p.guestTimes.ended, g(p)?.posted))} after the Run`
    })
    splitRows.push({
      phase: "  guest Ended → process exit (teardown, worker terminate, exit)",
      value: phase((p) => sub(p.main.exit, g(p)?.messages[1])),
      note: `exit at ${phase((p) => p.main.exit)}`
    })
  } catch (e) {
    splitRows.push({ phase: "cold-start split", value: "failed", note: e instanceof Error ? e.message : String(e) })
  }
}

// ---- main --------------------------------------------------------------------------------------

const table = (): string => {
  const header = "| benchmark | runsc | baseline (node:wasi, same guest, same run) | ratio (runsc/baseline) | aim |\n|---|---:|---:|---:|---|"
  const key = (r: BenchRow) => {
    const m = /^(\d+)([a-z]?)/.exec(r.name)
    return m ? Number(m[1]) * 100 + (m[2] ? m[2].charCodeAt(0) - 96 : 0) : 10_000
  }
  const body = [...rows].sort((a, b) => key(a) - key(b)).map((r) => `| ${r.name} | ${r.runsc} | ${r.baseline} | ${r.ratio} | ${r.aim} |`).join("\n")
  const split = [
    "| cold-start split (child processes) | median | note |",
    "|---|---:|---|",
    ...splitRows.map((r) => `| ${r.phase} | ${r.value} | ${r.note} |`)
  ].join("\n")
  return `${header}\n${body}\n\n${split}`
}

const main = async () => {
  const started = now()
  const cpus = Os.cpus()
  const load0 = Os.loadavg()[0]!
  const header = [
    `# runsc benchmarks`,
    ``,
    `- date: ${new Date().toISOString()}`,
    `- cpu: ${cpus[0]?.model ?? "unknown"}, ${cpus.length} cores`,
    `- node: ${process.version}`,
    `- runsc CLI: ${
      Fs.existsSync(bundledCli)
        ? `bundled (bin/runsc.cjs loads apps/runsc/dist/runsc.cjs${Fs.existsSync(bundleCache) ? " with its V8 code cache runsc.cjs.cache" : ", no code cache yet"})`
        : "unbundled (no apps/runsc/dist/runsc.cjs: bin/runsc.cjs imports apps/runsc/dist/main.js)"
    }`
  ]

  // `node bench/dist/run.js [--only=key,key]` runs a subset: write, clock, cpu, preempt, syscall, start,
  // files, pages, stdin, spawn, sandbox, cold, split, lifecycle, exec, destroy100, idlemem, signal, cli, engine, sockets (the table then has
  // only those rows).
  const onlyArg = process.argv.find((a) => a.startsWith("--only="))
  const only = onlyArg === undefined ? undefined : new Set(onlyArg.slice("--only=".length).split(","))
  const want = (key: string) => only === undefined || only.has(key)
  const containerBench = async (name: string, f: (options: BenchOptions) => Promise<ReadonlyArray<BenchRow>>) => {
    try {
      rows.push(...(await f({ progress, verbose })))
    } catch (e) {
      rows.push(failedRow(name, e))
    }
  }

  if (["write", "clock", "cpu", "preempt", "syscall", "start", "files", "pages", "stdin"].some(want)) {
    const rt = makeKernelRuntime(1)
    try {
      // Bring the kernel up and let its warm worker start before anything is measured.
      await rt.runPromise(runOnKernel({ bytes: await assemble("trivial.wat", trivialWat), argv: ["warmup"], rootPath: fixturesDir, stdout: devNull }))
      await sleep(300)
      if (want("write")) await benchWriteHeavy(rt)
      if (want("clock")) await benchClock(rt)
      if (want("cpu")) await benchCpu(rt)
      if (want("preempt")) await containerBench("3b/3c/19. preemption", (options) => benchPreemption(rt, devNull, options))
      if (want("syscall")) await benchSyscallRoundTrip(rt)
      if (want("start")) await benchWarmStart(rt)
      if (want("files")) await containerBench("13. file I/O", (options) => benchFiles(rt, options))
      if (want("pages")) await containerBench("17. SQLite-like file traffic", (options) => benchPages(rt, options))
      if (want("stdin")) await containerBench("16. stdin", (options) => benchStdin(rt, devNull, options))
    } finally {
      await rt.dispose()
    }
  }
  if (want("write")) await benchWriteFloor()
  if (want("spawn")) await benchWorkerSpawn()
  if (want("sandbox")) await benchWriteFreshSandbox()
  if (want("cold")) benchColdStart()
  if (want("split")) benchColdSplit()
  if (want("lifecycle")) await containerBench("7. container lifecycle", benchLifecycle)
  if (want("exec")) await containerBench("8. exec from the warm pool", benchExec)
  if (want("destroy100")) await containerBench("9. destroy of a container running 100 processes", benchDestroy100)
  if (want("signal")) await containerBench("11. signal delivery to a blocked task", benchSignal)
  if (want("cli")) await containerBench("12. CLI commands", () => benchCli(progress))
  if (want("engine")) await containerBench("18. a container through podman", async () => benchEngine(progress))
  if (want("sockets")) await containerBench("20. sockets", benchSockets)
  // Last: its 50 idle worker threads would slow every benchmark after it (memory, GC). The RSS
  // growth it measures can be a little low here, where memory freed by earlier benchmarks'
  // threads is reused; `--only=idlemem` measures it in a fresh process.
  if (want("idlemem")) await containerBench("10. idle memory per container", benchIdleMem)

  const elapsed = (now() - started) / 1000
  header.push(`- load average (1 min): ${load0.toFixed(2)} at start, ${Os.loadavg()[0]!.toFixed(2)} at end; suite took ${elapsed.toFixed(0)} s`)
  notes.push(
    "Medians; every runsc run is paired with a baseline run in the same process, interleaved, after one warm-up run of each.",
    `In-process runsc rows use one Kernel (warmWorkers 1) kept up for the suite; a run is \`startProcess\` → exit status, ${START_PAUSE_MS} ms apart. The pool hands a run an idle worker and takes it back at the guest's clean exit (kept while fewer than warmWorkers are idle, else terminated as surplus); it starts a worker only when none is idle or to replace a terminated one, so one run at a time reuses the same worker and starts none (row 5 counts them). Baselines run node:wasi on the main thread with a module compiled once (as runsc's module cache does), a run after a full GC outside its span when the process holds 32 MiB or more of external memory (the file rows): without it node:wasi can crash the process (a GC inside its fast API calls, nodejs/node#46777; bench/src/nodeWasi.ts).`,
    "Per-call rows divide the whole guest run (start to exit) by the call count."
  )
  if (["lifecycle", "exec", "destroy100", "idlemem", "signal"].some(want)) {
    notes.push(
      "Rows 7-11 drive the Loader's container API in this process (`Loader.layer`, one sandbox per benchmark whose root container runs `sleep 600`, its warmWorkers given in each row); every guest's stdio is /dev/null except where a benchmark reads it. Rows 7-11 measure from the caller of the Loader: timings include the Effect runtime and the registry lock. `—` baselines: node:wasi has no containers, exec, destroy or signals. Row 11: a SIGTERM kills the task by terminating its worker thread (WASI guests install no handlers), so its latency is a thread termination; the pool then starts a replacement thread."
    )
  }
  const text = `${header.join("\n")}\n\n${table()}\n\n${notes.map((n) => `- ${n}`).join("\n")}\n`
  process.stdout.write(text)
  Fs.writeFileSync(Path.join(benchDir, "results.md"), text)
  Fs.closeSync(devNull)
  if (rows.some((r) => r.runsc.startsWith("failed")) || splitRows.some((r) => r.value === "failed")) process.exitCode = 1
}

await main()

// A worker thread (or its port) left behind by a sandbox keeps the process alive; say so and
// exit instead of hanging. The timer is unref'd: it fires only if something else keeps the
// process up.
setTimeout(() => {
  process.stderr.write("[bench] the process did not exit 5 s after the suite ended (a leaked worker thread?); exiting\n")
  process.exit(process.exitCode ?? 0)
}, 5000).unref()
