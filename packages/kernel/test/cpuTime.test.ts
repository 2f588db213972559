/**
 * CPU time of a process as the sandbox reports it: its own worker thread's, read from the
 * thread's CPU clock, so that clock_time_get(PROCESS_CPUTIME) and /proc/<pid>/stat count the
 * process alone, however many other guests (or the sentry) use the CPU beside it.
 */
import { assert, layer } from "@effect/vitest"
import { Deferred, Effect } from "effect"
import { Kernel } from "../src/index.js"
import { eventually, fixture, kernelLayer, probe, Signaled, startGuest, timed } from "./helpers.js"

/** Spins `iterations` times, then exits with its PROCESS_CPUTIME in units of 8 ms (at most 255). */
const spinThenReportCpu = (iterations: number) =>
  probe({
    extra: `(func $spin (local $i i32)
      (local.set $i (i32.const ${iterations}))
      (loop $l (local.set $i (i32.sub (local.get $i) (i32.const 1))) (br_if $l (local.get $i))))`,
    body: `(block (result i32)
      (call $spin)
      (drop (call $clock_time_get (i32.const 2) (i64.const 1) (i32.const 0)))
      (i32.wrap_i64 (i64.div_u (i64.load (i32.const 0)) (i64.const 8000000))))`
  })

layer(kernelLayer, { excludeTestServices: true })("CPU time", (it) => {
  it.scoped("clock_time_get(PROCESS_CPUTIME) counts the process's own thread, not a guest spinning beside it", () =>
    Effect.gen(function*() {
      const kernel = yield* Kernel
      const neighbour = yield* startGuest({ bytes: fixture("spin"), argv: ["spin"] })
      yield* eventually(() => neighbour.stdout() === "spinning\n", "the neighbour spins")
      const run = yield* startGuest({ bytes: yield* spinThenReportCpu(400_000_000) })
      const [status, wallMs] = yield* timed(run.exit)
      assert.strictEqual(status._tag, "Exited")
      const reportedMs = (status as { code: number }).code * 8
      const kernelMs = Number((yield* kernel.usage(run.tg)).cpuNs) / 1e6
      assert.isAbove(reportedMs, 0, "it used CPU")
      // The whole process's CPU time (sentry and neighbour included) would be about twice the wall time.
      assert.isAtMost(reportedMs, wallMs + 20, `reported ${reportedMs} ms in ${wallMs} ms`)
      assert.isAtMost(Math.abs(reportedMs - kernelMs), 30 + kernelMs * 0.1, `reported ${reportedMs} ms, the kernel says ${kernelMs} ms`)
      yield* kernel.signal(neighbour.tg, 9)
      assert.deepStrictEqual(yield* neighbour.exit, Signaled(9))
    }))

  it.scoped("a guest's CPU time grows while it spins, and is kept once it has ended", () =>
    Effect.gen(function*() {
      const kernel = yield* Kernel
      const run = yield* startGuest({ bytes: fixture("spin"), argv: ["spin"] })
      yield* eventually(() => run.stdout() === "spinning\n", "spin started")
      const first = (yield* kernel.usage(run.tg)).cpuNs
      yield* Effect.sleep("300 millis")
      const second = (yield* kernel.usage(run.tg)).cpuNs
      assert.isTrue(second > first, `${first} then ${second}`)
      yield* kernel.signal(run.tg, 9)
      yield* run.exit
      assert.isTrue(yield* Deferred.isDone(run.tg.exitStatus))
      assert.isTrue(run.tg.cpuTime >= second, `${run.tg.cpuTime} after ${second}`)
    }))
})

