/**
 * Rows 3b and 19: what preemption points (the kernel's instrumentation of guest modules) cost a
 * CPU-bound guest, and how soon a guest that never makes a syscall is held once `pause` or
 * SIGSTOP has returned.
 */
import { guestHooks, installHooks, instrument, Kernel } from "@runsc/kernel"
import { Deferred, Effect } from "effect"
import * as Fs from "node:fs"
import { runNodeWasi } from "./nodeWasi.js"
import { fixture, fixturesDir } from "./paths.js"
import type { BenchOptions, BenchRow } from "./row.js"
import { type KernelRuntime, startOnKernel } from "./runscKernel.js"
import { fmtMs, fmtRatio, median, now, percentile, sleep } from "./stats.js"

const CPU_RUNS = 5
const HOLDS = 20

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
  run(instrumented, idleHooks)
  run(plain)
  const with_: Array<number> = []
  const without: Array<number> = []
  for (let i = 0; i < CPU_RUNS; i++) {
    with_.push(run(instrumented, idleHooks))
    without.push(run(plain))
  }
  options.verbose("3b", { instrumented: with_, plain: without })
  const r = median(with_)
  const b = median(without)
  return {
    name: `${name}; min ${fmtMs(Math.min(...with_))} vs ${fmtMs(Math.min(...without))}`,
    runsc: fmtMs(r),
    baseline: fmtMs(b),
    ratio: fmtRatio(r / b),
    aim: `≤ 1.05× (${r / b <= 1.05 ? "met" : "missed"})`
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
  await holdLatency(rt, devNull, options, "pause latency (Kernel.pause)", "pause"),
  await holdLatency(rt, devNull, options, "SIGSTOP latency", "stop")
]
