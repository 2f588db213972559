/**
 * Rows 3b, 3c and 19: what preemption points (the kernel's instrumentation of guest modules)
 * cost a CPU-bound guest, a small C program and a real interpreter, and how soon a guest that
 * never makes a syscall is held once `pause` or SIGSTOP has returned.
 */
import { guestHooks, installHooks, instrument, Kernel } from "@runsc/kernel"
import { Deferred, Effect } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { interpreterName, obtainInterpreter } from "./interpreter.js"
import { runNodeWasi } from "./nodeWasi.js"
import { benchDir, fixture, fixturesDir } from "./paths.js"
import type { BenchOptions, BenchRow } from "./row.js"
import { type KernelRuntime, startOnKernel } from "./runscKernel.js"
import { fmtMs, fmtRatio, median, now, percentile, sleep } from "./stats.js"

const CPU_RUNS = 5
const HOLDS = 20
/**
 * Runs of each side before 3c's samples: V8 compiles a module's functions lazily and moves the
 * hot ones to its optimizing tier in the background, which for CPython's 6 MB of code takes a
 * few runs (measured: the first 2-3× slower than the settled time, the next two still 10-20%),
 * not one as for cpu.wasm.
 */
const INTERPRETER_WARMUPS = 3
/** Row 3c's script (our own), seen by the guest under /bench. */
const workloadsDir = Path.join(benchDir, "workloads")
const WORKLOAD_ARGS = ["python", "/bench/interp.py"]

/** Hooks that do nothing but what they must (a grow grows): the points' own cost. */
const idleHooks = (instance: WebAssembly.Instance) => {
  const memory = instance.exports["memory"] as WebAssembly.Memory
  installHooks(instance, guestHooks((pages) => {
    try {
      return memory.grow(pages)
    } catch {
      return -1
    }
  }, () => {}))
}

/**
 * 3b: cpu.wasm under node:wasi as built, and as the kernel instruments it (hooks in place that
 * return at once): the same engine and thread, so the difference is the preemption points alone.
 */
const instrumentationCost = async (devNull: number, options: BenchOptions): Promise<BenchRow> => {
  const name = `3b. preemption points' cost: cpu.wasm (sieve) under node:wasi as the kernel instruments it (its hooks in place, returning at once) vs as built, wall (median of ${CPU_RUNS})`
  options.progress(name)
  const bytes = new Uint8Array(Fs.readFileSync(fixture("cpu")))
  const plain = await WebAssembly.compile(bytes)
  const instrumented = await WebAssembly.compile(instrument(bytes).bytes as Uint8Array<ArrayBuffer>)
  const run = (module: WebAssembly.Module, prepare?: (instance: WebAssembly.Instance) => void) => {
    const r = runNodeWasi({ module, args: ["cpu.wasm"], stdout: devNull, ...(prepare ? { prepare } : {}) })
    if (r.code !== 0) throw new Error(`cpu.wasm exited with ${r.code}`)
    return r.ms
  }
  const samples = interleaved(() => run(instrumented, idleHooks), () => run(plain), 1)
  options.verbose("3b", samples)
  return costRow(name, samples)
}

/** A type, not an interface: `verbose` takes it as a record of sample lists. */
type Samples = {
  readonly instrumented: ReadonlyArray<number>
  readonly plain: ReadonlyArray<number>
}

/** `warmups` runs of each side (not kept), then CPU_RUNS of each, interleaved; in ms. */
const interleaved = (instrumented: () => number, plain: () => number, warmups: number): Samples => {
  for (let i = 0; i < warmups; i++) {
    instrumented()
    plain()
  }
  const with_: Array<number> = []
  const without: Array<number> = []
  for (let i = 0; i < CPU_RUNS; i++) {
    with_.push(instrumented())
    without.push(plain())
  }
  return { instrumented: with_, plain: without }
}

/** Instrumented beside as built (the baseline), against the issue's aim of 5%. */
const costRow = (name: string, samples: Samples): BenchRow => {
  const r = median(samples.instrumented)
  const b = median(samples.plain)
  return {
    name: `${name}; min ${fmtMs(Math.min(...samples.instrumented))} vs ${fmtMs(Math.min(...samples.plain))}`,
    runsc: fmtMs(r),
    baseline: fmtMs(b),
    ratio: fmtRatio(r / b),
    aim: `≤ 1.05× (${r / b <= 1.05 ? "met" : "missed"})`
  }
}

/** A refusal says whose: the row's message must not read as the workload's failure. */
const instrumentOrSay = (bytes: Uint8Array): Uint8Array => {
  try {
    return instrument(bytes).bytes
  } catch (e) {
    throw new Error(`instrument() refused python.wasm: ${e instanceof Error ? `${e.constructor.name}: ${e.message}` : String(e)}`)
  }
}

/** Both builds of the interpreter, compiled; its bytes (~25 MiB, twice) are not kept past this. */
const compileInterpreter = async (path: string) => {
  const bytes = new Uint8Array(Fs.readFileSync(path))
  const t0 = now()
  const instrumentedBytes = instrumentOrSay(bytes)
  const instrumentMs = now() - t0
  return {
    plain: await WebAssembly.compile(bytes),
    instrumented: await WebAssembly.compile(instrumentedBytes as Uint8Array<ArrayBuffer>),
    instrumentMs,
    mib: bytes.length / (1024 * 1024),
    growth: instrumentedBytes.length / bytes.length - 1
  }
}

interface InterpreterRun {
  readonly code: number
  readonly ms: number
  readonly stdout: string
}

/** One run of the workload; its stdout goes to `outFile` (opened and read outside the timing). */
const runInterpreter = (module: WebAssembly.Module, outFile: string, prepare?: (instance: WebAssembly.Instance) => void): InterpreterRun => {
  const fd = Fs.openSync(outFile, "w")
  try {
    const r = runNodeWasi({ module, args: WORKLOAD_ARGS, stdout: fd, preopens: { "/bench": workloadsDir }, ...(prepare ? { prepare } : {}) })
    return { code: r.code, ms: r.ms, stdout: Fs.readFileSync(outFile, "utf8") }
  } finally {
    Fs.closeSync(fd)
  }
}

/**
 * Every run, of either build, must end and print as the first run as built did: hooks that
 * return at once change nothing the guest can see, so a difference is the instrumentation's
 * bug, and the row fails (it is not skipped).
 */
const expectSame = (what: string, run: InterpreterRun, reference: InterpreterRun): number => {
  if (run.code !== reference.code || run.stdout !== reference.stdout) {
    throw new Error(
      `${what} exited ${run.code} printing ${JSON.stringify(run.stdout.slice(0, 200))}; as built it exited ${reference.code} printing ${JSON.stringify(reference.stdout.slice(0, 200))}`
    )
  }
  return run.ms
}

/**
 * 3c: as 3b, with a real interpreter for the guest (CPython, fetched from the npm registry by
 * interpreter.ts, running bench/workloads/interp.py): a module of thousands of functions whose
 * time goes to a bytecode loop and calls, where cpu.wasm is one tight loop. Skipped, not
 * failed, when the interpreter cannot be had (no registry); failed when the instrumentation
 * refuses the module or changes what it prints.
 */
const interpreterCost = async (options: BenchOptions): Promise<BenchRow> => {
  const name = `3c. preemption points' cost on a real interpreter: ${interpreterName} running bench/workloads/interp.py under node:wasi as the kernel instruments it (its hooks in place, returning at once) vs as built, wall (median of ${CPU_RUNS})`
  options.progress(name)
  const got = obtainInterpreter()
  if (got._tag === "Unavailable") {
    options.progress(`  3c skipped: ${got.reason}`)
    return { name, runsc: `skipped: ${got.reason}`.slice(0, 160), baseline: "—", ratio: "—", aim: "≤ 1.05×" }
  }
  const tmp = Fs.mkdtempSync(Path.join(Os.tmpdir(), "runsc-bench-3c-"))
  try {
    const { growth, instrumented, instrumentMs, mib, plain } = await compileInterpreter(got.path)
    const outFile = Path.join(tmp, "stdout")
    const reference = runInterpreter(plain, outFile)
    if (reference.code !== 0) throw new Error(`python.wasm as built exited with ${reference.code}`)
    const samples = interleaved(
      () => expectSame("python.wasm instrumented", runInterpreter(instrumented, outFile, idleHooks), reference),
      () => expectSame("python.wasm as built", runInterpreter(plain, outFile), reference),
      INTERPRETER_WARMUPS
    )
    options.verbose("3c", samples)
    const instrumentation = `instrument() ${fmtMs(instrumentMs)} for its ${mib.toFixed(1)} MiB (+${(growth * 100).toFixed(1)}%)`
    return costRow(`${name}; ${instrumentation}`, samples)
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e)
    options.progress(`  3c failed: ${message}`)
    return { name, runsc: `failed: ${message}`.slice(0, 160), baseline: "", ratio: "", aim: "" }
  } finally {
    Fs.rmSync(tmp, { recursive: true, force: true })
  }
}

/**
 * 19: a spinning guest (spin.wasm: no syscall after its first line) is held by `pause` or
 * SIGSTOP, HOLDS times: from the call's return until its worker thread stops using CPU (its
 * thread CPU clock, read as the kernel reads it, stands still for a millisecond), polled on the
 * sentry's own event loop.
 */
const holdLatency = (rt: KernelRuntime, devNull: number, options: BenchOptions, what: string, signals: "pause" | "stop") =>
  Effect.gen(function*() {
    const kernel = yield* Kernel
    const tg = yield* startOnKernel({ bytes: new Uint8Array(Fs.readFileSync(fixture("spin"))), argv: ["spin"], rootPath: fixturesDir, stdout: devNull })
    yield* Effect.promise(() => sleep(200))
    const held: Array<number> = []
    for (let i = 0; i < HOLDS; i++) {
      if (signals === "pause") yield* kernel.pause
      else yield* kernel.signal(tg, 19)
      const t0 = now()
      let cpu = tg.worker?.cpuTime ?? 0n
      let changedAt = t0
      for (;;) {
        yield* Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))
        const reading = tg.worker?.cpuTime ?? 0n
        const at = now()
        if (reading !== cpu) {
          cpu = reading
          changedAt = at
        } else if (at - changedAt >= 1 || at - t0 > 1000) break
      }
      held.push(changedAt - t0)
      if (signals === "pause") yield* kernel.resume
      else yield* kernel.signal(tg, 18)
      // Running again (out of the sentry), then spinning a while.
      yield* Effect.promise(() => sleep(30))
    }
    yield* kernel.signal(tg, 9)
    yield* Deferred.await(tg.exitStatus)
    yield* kernel.reap(tg)
    options.verbose(`19 ${what}`, { held })
    const p50 = median(held)
    return {
      name: `19. ${what}: a guest spinning without syscalls (spin.wasm), from the call's return until its worker thread uses no more CPU (median of ${HOLDS}; p90 ${fmtMs(percentile(held, 90))}, max ${fmtMs(Math.max(...held))})`,
      runsc: fmtMs(p50),
      baseline: "—",
      ratio: "—",
      aim: `≤ 10 ms (${Math.max(...held) <= 10 ? "met" : p50 <= 10 ? "met at the median" : "missed"})`
    } satisfies BenchRow
  }).pipe(Effect.scoped, rt.runPromise)

export const benchPreemption = async (rt: KernelRuntime, devNull: number, options: BenchOptions): Promise<ReadonlyArray<BenchRow>> => [
  await instrumentationCost(devNull, options),
  await interpreterCost(options),
  await holdLatency(rt, devNull, options, "pause latency (Kernel.pause)", "pause"),
  await holdLatency(rt, devNull, options, "SIGSTOP latency", "stop")
]
