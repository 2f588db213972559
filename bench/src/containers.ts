/**
 * Container benchmarks through the Loader's multi-container API, in this process: one sandbox
 * per benchmark (`Loader.layer`), its root container sleeping so that it outlives the
 * sub-containers the benchmark creates, starts, execs into, signals and destroys.
 *
 *   7.  lifecycle: create + start + wait + destroy of examples/hello, concurrency 1 and 8
 *   8.  exec: execute of the `exit` guest into a running container → waitPid
 *   9.  destroy100: destroy of a container running 100 processes, and the worker threads left
 *   10. idlemem: RSS growth per idle container (50 × `sleep 600`)
 *   11. signal: signalContainer(SIGTERM) to an init blocked in poll_oneoff → wait
 *
 * Each runs as one Effect under a time limit; a failure or a timeout becomes a "failed" row.
 */
import { type ExitStatus } from "@runsc/abi"
import { Loader, type LoaderShape } from "@runsc/loader"
import { type Bundle, defaultSpec, loadBundle, type Spec } from "@runsc/spec"
import { Context, Duration, Effect, Layer, type Scope } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { runNodeWasi } from "./nodeWasi.js"
import { fixture, helloRoot, repoRoot } from "./paths.js"
import { type BenchOptions, type BenchRow } from "./row.js"
import { fmtMs, median, now, percentile } from "./stats.js"

// ---- configuration -----------------------------------------------------------------------------

const LIFECYCLE_CONTAINERS = 200
const LIFECYCLE_PASSES = 3 // each pass: LIFECYCLE_CONTAINERS containers; median rate of the passes
const LIFECYCLE_WARM_WORKERS = 8
const EXEC_RUNS = 100
const DESTROY_PROCESSES = 100
const DESTROY_ROUNDS = 3
const IDLE_CONTAINERS = 50
const SIGNAL_ROUNDS = 30
/** No benchmark may take longer than this (a hang becomes a failed row, not a stuck suite). */
const BENCH_LIMIT = Duration.seconds(90)

// ---- shared pieces -----------------------------------------------------------------------------

const devNull = Fs.openSync("/dev/null", "r+")
const quiet = { stdin: devNull, stdout: devNull, stderr: devNull }

/** Thrown as a defect: the suite turns it into a failed row. */
const fail = (message: string) => Effect.die(new Error(message))

const describe = (s: ExitStatus) => (s._tag === "Exited" ? `exit ${s.code}` : `signal ${s.signal}`)

const expectStatus = (what: string, status: ExitStatus, wanted: ExitStatus) =>
  JSON.stringify(status) === JSON.stringify(wanted) ? Effect.void : fail(`${what}: ended with ${describe(status)}, expected ${describe(wanted)}`)

const EXIT0: ExitStatus = { _tag: "Exited", code: 0 }
const SIGTERMED: ExitStatus = { _tag: "Signaled", signal: 15 }

/** A temp rootfs with the fixtures the benchmarks run (sleep, exit) under /bin; removed with the scope. */
const fixtureRoot = Effect.acquireRelease(
  Effect.sync(() => {
    const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "runsc-bench-containers-"))
    const rootfs = Path.join(dir, "rootfs")
    for (const sub of ["bin", "etc"]) Fs.mkdirSync(Path.join(rootfs, sub), { recursive: true })
    Fs.mkdirSync(Path.join(dir, "out"))
    for (const name of ["sleep", "exit"]) {
      Fs.copyFileSync(fixture(name), Path.join(rootfs, "bin", name))
      Fs.chmodSync(Path.join(rootfs, "bin", name), 0o755)
    }
    Fs.writeFileSync(Path.join(rootfs, "etc", "passwd"), "root:x:0:0:root:/root:/bin/sh\n")
    return { dir, rootfs, out: Path.join(dir, "out") }
  }),
  ({ dir }) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

const bundleOf = (dir: string, rootfs: string, args: readonly [string, ...Array<string>]): Bundle => {
  const template = defaultSpec()
  const spec: Spec = { ...template, process: { ...template.process!, args, env: ["PATH=/bin"] }, mounts: [] }
  return { dir, rootPath: rootfs, spec }
}

interface Sandbox {
  readonly loader: LoaderShape
  /** `sleep 600` (the guest prints "sleeping" then blocks in poll_oneoff). */
  readonly sleeper: Bundle
  /** Path of a fresh append-only output file, and its fd (closed with the scope). */
  readonly output: (name: string) => Effect.Effect<{ readonly fd: number; readonly count: (word: string) => number }, never, Scope.Scope>
}

/** `count` concurrent processes exec'd into the root container, waited for (each must exit 0). */
const execInRoot = (loader: LoaderShape, count: number, argv: ReadonlyArray<string>) =>
  Effect.forEach(
    Array.from({ length: count }),
    () =>
      Effect.flatMap(loader.execute({ containerId: "root", argv, stdio: quiet }), (pid) =>
        Effect.flatMap(loader.waitPid("root", pid), (status) => expectStatus(`${argv.join(" ")} in root`, status, EXIT0))),
    { concurrency: "unbounded", discard: true }
  ).pipe(Effect.orDie)

/**
 * Brings the pool to `warm` idle workers: `warm` processes that run at the same time (one `exit`
 * for one; else `sleep 1`s) take that many workers, and give them back at their clean exits.
 */
const fillPool = (loader: LoaderShape, warm: number) =>
  Effect.gen(function*() {
    const { idleWorkers } = yield* loader.sandboxStats
    if (idleWorkers >= warm) return
    yield* execInRoot(loader, warm, warm === 1 ? ["exit"] : ["sleep", "1"])
    yield* settled(loader, warm)
  })

/**
 * A sandbox (Loader layer, built in the current scope) whose root container sleeps, with
 * `warmWorkers` idle workers ready.
 */
const sandbox = (warmWorkers: number) =>
  Effect.gen(function*() {
    const root = yield* fixtureRoot
    const sleeper = bundleOf(root.dir, root.rootfs, ["sleep", "600"])
    const loader = yield* Effect.map(
      Layer.build(Loader.layer({ containerId: "root", bundle: sleeper, stdio: quiet, kernel: { warmWorkers } })),
      Context.get(Loader)
    )
    yield* loader.startRoot
    yield* fillPool(loader, warmWorkers)
    let n = 0
    const output = (name: string) =>
      Effect.map(
        Effect.acquireRelease(
          Effect.sync(() => {
            const path = Path.join(root.out, `${name}-${n++}.out`)
            return { path, fd: Fs.openSync(path, "a") }
          }),
          ({ fd }) => Effect.sync(() => Fs.closeSync(fd))
        ),
        ({ fd, path }) => ({
          fd,
          count: (word: string) => Fs.readFileSync(path, "utf8").split(word).length - 1
        })
      )
    return { loader, sleeper, output } satisfies Sandbox
  })

/** Polls `condition` every 5 ms until it holds; dies after `limitMs`. */
const until = (what: string, condition: Effect.Effect<boolean, unknown>, limitMs = 30_000) =>
  Effect.gen(function*() {
    const t0 = now()
    while (!(yield* Effect.orDie(condition))) {
      if (now() - t0 > limitMs) return yield* fail(`timed out after ${limitMs} ms waiting until ${what}`)
      yield* Effect.sleep("5 millis")
    }
    return now() - t0
  })

/**
 * Waits until every live process has its worker thread and every worker thread either runs a
 * live process or is idle, with at least `minIdle` idle (sandboxStats counts a thread once it is
 * ready, so a replacement the pool is still starting shows only as a missing idle one); returns
 * how long that took.
 */
const settled = (loader: LoaderShape, minIdle: number, limitMs = 10_000) =>
  until(
    `every worker thread runs a process or is idle, ≥ ${minIdle} idle`,
    Effect.map(loader.sandboxStats, (s) => s.workerThreads === s.processes + s.idleWorkers && s.idleWorkers >= minIdle),
    limitMs
  )

const limited = <A>(name: string, effect: Effect.Effect<A, unknown, Scope.Scope>): Promise<A> =>
  Effect.runPromise(
    effect.pipe(
      Effect.scoped,
      Effect.timeoutFail({ duration: BENCH_LIMIT, onTimeout: () => new Error(`${name}: over ${Duration.format(BENCH_LIMIT)}`) })
    )
  )

const fmtRate = (perSecond: number) => (Number.isFinite(perSecond) ? `${Math.round(perSecond).toLocaleString("en-US")}/s` : "n/a")
const fmtMB = (bytes: number) => `${(bytes / 2 ** 20).toFixed(2)} MB`
const met = (ok: boolean) => (ok ? "met" : "missed")

// ---- 7. lifecycle ------------------------------------------------------------------------------

export const benchLifecycle = async ({ progress, verbose }: BenchOptions): Promise<Array<BenchRow>> => {
  const name = `7. container lifecycle: createSubcontainer + startSubcontainer + wait + destroySubcontainer of examples/hello`
  progress(name)
  return limited(
    "lifecycle",
    Effect.gen(function*() {
      const { loader } = yield* sandbox(LIFECYCLE_WARM_WORKERS)
      const hello = yield* Effect.orDie(loadBundle(Path.join(repoRoot, "examples", "hello")))
      let next = 0
      const one = Effect.gen(function*() {
        const id = `hello-${next++}`
        yield* loader.createSubcontainer(id)
        yield* loader.startSubcontainer({ containerId: id, bundle: hello, stdio: quiet })
        const status = yield* loader.wait(id)
        yield* loader.destroySubcontainer(id)
        yield* expectStatus(`hello in ${id}`, status, EXIT0)
      }).pipe(Effect.orDie)
      /** One pass: `count` containers, `concurrency` at a time; containers per second. */
      const pass = (count: number, concurrency: number) =>
        Effect.gen(function*() {
          const t0 = now()
          yield* Effect.forEach(Array.from({ length: count }), () => one, { concurrency, discard: true })
          return (count * 1000) / (now() - t0)
        })
      /** Per-container latency at concurrency 1, create → destroyed, and its phases. */
      const latencies: Array<number> = []
      const phases = { create: [] as Array<number>, start: [] as Array<number>, wait: [] as Array<number>, destroy: [] as Array<number> }
      const timedOne = Effect.gen(function*() {
        const id = `hello-${next++}`
        const t0 = now()
        yield* loader.createSubcontainer(id)
        const t1 = now()
        yield* loader.startSubcontainer({ containerId: id, bundle: hello, stdio: quiet })
        const t2 = now()
        const status = yield* loader.wait(id)
        const t3 = now()
        yield* loader.destroySubcontainer(id)
        const t4 = now()
        yield* expectStatus(`hello in ${id}`, status, EXIT0)
        latencies.push(t4 - t0)
        phases.create.push(t1 - t0)
        phases.start.push(t2 - t1)
        phases.wait.push(t3 - t2)
        phases.destroy.push(t4 - t3)
      }).pipe(Effect.orDie)

      // The baseline: node:wasi runs of the same hello (same argv, / preopened as its rootfs), module compiled once.
      const module = yield* Effect.promise(() => WebAssembly.compile(Fs.readFileSync(Path.join(helloRoot, "bin", "hello"))))
      const args = hello.spec.process!.args
      const nodeRun = () => {
        const r = runNodeWasi({ module, args, stdout: devNull, preopens: { "/": helloRoot } })
        if (r.code !== 0) throw new Error(`hello under node:wasi exited with ${r.code}`)
        return r.ms
      }
      // The runs' own spans: a run may start after a full GC (see nodeWasi.ts), which is not node:wasi's cost.
      const nodePass = (count: number) => {
        let ms = 0
        for (let i = 0; i < count; i++) ms += nodeRun()
        return (count * 1000) / ms
      }

      // Warm-up: the module compiled, the pool's workers started and back idle.
      yield* pass(20, 1)
      yield* pass(40, 8)
      nodePass(20)
      yield* settled(loader, LIFECYCLE_WARM_WORKERS)
      const warmStats = yield* loader.sandboxStats

      const rates: Record<1 | 8, Array<number>> = { 1: [], 8: [] }
      const baseline: Array<number> = []
      for (let i = 0; i < LIFECYCLE_PASSES; i++) {
        rates[1].push(yield* pass(LIFECYCLE_CONTAINERS, 1))
        rates[8].push(yield* pass(LIFECYCLE_CONTAINERS, 8))
        baseline.push(nodePass(LIFECYCLE_CONTAINERS))
      }
      for (let i = 0; i < 50; i++) yield* timedOne
      yield* settled(loader, LIFECYCLE_WARM_WORKERS)
      const after = yield* loader.sandboxStats
      verbose("lifecycle", { "c=1 (/s)": rates[1], "c=8 (/s)": rates[8], "node:wasi (/s)": baseline, "c=1 latency (ms)": latencies })

      const b = median(baseline)
      const row = (concurrency: 1 | 8): BenchRow => {
        const r = median(rates[concurrency])
        return {
          name: `${concurrency === 1 ? name : "7b. same"}, concurrency ${concurrency}: containers/s over ${LIFECYCLE_CONTAINERS} containers (median of ${LIFECYCLE_PASSES} passes: ${rates[concurrency].map(fmtRate).join(", ")}${
            concurrency === 1
              ? `; one container create → destroyed: median ${fmtMs(median(latencies))}, p90 ${fmtMs(percentile(latencies, 90))} over 50, phase medians create ${fmtMs(median(phases.create))}, start ${fmtMs(median(phases.start))}, wait (hello runs) ${fmtMs(median(phases.wait))}, destroy ${fmtMs(median(phases.destroy))}`
              : ""
          }) in one sandbox, warmWorkers ${LIFECYCLE_WARM_WORKERS} (worker threads ${warmStats.workerThreads} before, ${after.workerThreads} after); baseline: node:wasi runs of hello per second (instantiate + start, module compiled once, main thread, sequential); ratio of rates`,
          runsc: fmtRate(r),
          baseline: fmtRate(b),
          ratio: `${(r / b).toFixed(2)}×`,
          aim: `≥ 1,000/s (${met(r >= 1000)}); runwasi reports ~330/s`
        }
      }
      return [row(1), row(8)]
    })
  )
}

// ---- 8. exec -----------------------------------------------------------------------------------

export const benchExec = async ({ progress, verbose }: BenchOptions): Promise<Array<BenchRow>> => {
  const name = `8. exec from the warm pool: execute(["exit"]) into a running container → waitPid returns`
  progress(name)
  return limited(
    "exec",
    Effect.gen(function*() {
      const { loader, sleeper } = yield* sandbox(1)
      yield* Effect.orDie(loader.createSubcontainer("app"))
      yield* Effect.orDie(loader.startSubcontainer({ containerId: "app", bundle: sleeper, stdio: quiet }))
      const exec = Effect.gen(function*() {
        const t0 = now()
        const pid = yield* loader.execute({ containerId: "app", argv: ["exit"], stdio: quiet })
        const status = yield* loader.waitPid("app", pid)
        const ms = now() - t0
        yield* expectStatus("exit", status, EXIT0)
        return ms
      }).pipe(Effect.orDie)
      const module = yield* Effect.promise(() => WebAssembly.compile(Fs.readFileSync(fixture("exit"))))
      const node = () => {
        const r = runNodeWasi({ module, args: ["exit"], stdout: devNull })
        if (r.code !== 0) throw new Error(`exit under node:wasi exited with ${r.code}`)
        return r.ms
      }
      for (let i = 0; i < 10; i++) {
        yield* exec
        node()
      }
      yield* settled(loader, 1)
      const stats0 = yield* loader.sandboxStats
      const r: Array<number> = []
      const b: Array<number> = []
      for (let i = 0; i < EXEC_RUNS; i++) {
        r.push(yield* exec)
        b.push(node())
      }
      yield* settled(loader, 1)
      const stats1 = yield* loader.sandboxStats
      verbose("exec", { runsc: r, baseline: b })
      const rm = median(r)
      const bm = median(b)
      return [{
        name: `${name}, back to back (median of ${EXEC_RUNS}; p90 ${fmtMs(percentile(r, 90))}, max ${fmtMs(Math.max(...r))}; warmWorkers 1, worker threads ${stats0.workerThreads} before, ${stats1.workerThreads} after); baseline: node:wasi run of exit.wasm (module compiled once)`,
        runsc: fmtMs(rm),
        baseline: fmtMs(bm),
        ratio: `${(rm / bm).toFixed(2)}×`,
        aim: `≤ 2 ms median (${met(rm <= 2)})`
      }]
    })
  )
}

// ---- 9. destroy of a container running 100 processes -------------------------------------------

export const benchDestroy100 = async ({ progress, verbose }: BenchOptions): Promise<Array<BenchRow>> => {
  const name = `9. destroy of a container running ${DESTROY_PROCESSES} processes (init sleep 600 + ${DESTROY_PROCESSES - 1} exec'd sleep 600, all blocked in poll_oneoff): destroySubcontainer → returns`
  progress(name)
  return limited(
    "destroy100",
    Effect.gen(function*() {
      const { loader, output, sleeper } = yield* sandbox(1)
      const before = yield* loader.sandboxStats
      const times: Array<number> = []
      const atReturn: Array<number> = []
      const settle: Array<number> = []
      const setup: Array<number> = []
      const running: Array<number> = []
      for (let round = 0; round < DESTROY_ROUNDS; round++) {
        const id = `busy-${round}`
        const out = yield* output(id)
        const stdio = { ...quiet, stdout: out.fd }
        const t0 = now()
        yield* Effect.orDie(loader.createSubcontainer(id))
        yield* Effect.orDie(loader.startSubcontainer({ containerId: id, bundle: sleeper, stdio }))
        for (let i = 1; i < DESTROY_PROCESSES; i++) {
          yield* Effect.orDie(loader.execute({ containerId: id, argv: ["sleep", "600"], stdio }))
        }
        // Every process has printed "sleeping" (then calls nanosleep → poll_oneoff).
        yield* until(`${DESTROY_PROCESSES} processes sleep`, Effect.sync(() => out.count("sleeping") >= DESTROY_PROCESSES), 60_000)
        const live = (yield* Effect.orDie(loader.processes(id))).length
        if (live !== DESTROY_PROCESSES) return yield* fail(`container ${id} has ${live} live processes, expected ${DESTROY_PROCESSES}`)
        yield* Effect.sleep("50 millis")
        setup.push(now() - t0)
        running.push((yield* loader.sandboxStats).workerThreads)
        const t1 = now()
        yield* loader.destroySubcontainer(id)
        times.push(now() - t1)
        atReturn.push((yield* loader.sandboxStats).workerThreads)
        settle.push(yield* settled(loader, 1))
      }
      const after = yield* loader.sandboxStats
      const stray = after.workerThreads - after.processes - after.idleWorkers
      verbose("destroy100", { destroy: times, "setup (ms)": setup, "threads at return": atReturn, "settle (ms)": settle })
      const m = median(times)
      return [{
        name: `${name} (median of ${DESTROY_ROUNDS} rounds: ${times.map(fmtMs).join(", ")}; warmWorkers 1). Worker threads (sandboxStats): ${before.workerThreads} before, ${running.join("/")} while running, ${atReturn.join("/")} when destroy returned, ${after.workerThreads} after = ${after.processes} live process(es) + ${after.idleWorkers} idle → ${stray} leaked`,
        runsc: fmtMs(m),
        baseline: "—",
        ratio: "—",
        aim: `≤ 50 ms (${met(m <= 50)}); 0 leaked threads (${met(stray === 0)})`
      }]
    })
  )
}

// ---- 10. idle memory per container -------------------------------------------------------------

const gc = (globalThis as { gc?: () => void }).gc

export const benchIdleMem = async ({ progress }: BenchOptions): Promise<Array<BenchRow>> => {
  const name = `10. idle memory per container: ${IDLE_CONTAINERS} containers running sleep 600 (each init a worker thread), process RSS growth / ${IDLE_CONTAINERS}`
  progress(name)
  return limited(
    "idlemem",
    Effect.gen(function*() {
      const { loader, output, sleeper } = yield* sandbox(1)
      const out = yield* output("idle")
      const stdio = { ...quiet, stdout: out.fd }
      const rss = Effect.gen(function*() {
        yield* Effect.sleep("300 millis")
        if (gc) {
          gc()
          yield* Effect.sleep("100 millis")
          gc()
        }
        return process.memoryUsage().rss
      })
      yield* settled(loader, 1)
      const rss0 = yield* rss
      const threads0 = (yield* loader.sandboxStats).workerThreads
      const ids = Array.from({ length: IDLE_CONTAINERS }, (_, i) => `idle-${i}`)
      for (const id of ids) {
        yield* Effect.orDie(loader.createSubcontainer(id))
        yield* Effect.orDie(loader.startSubcontainer({ containerId: id, bundle: sleeper, stdio }))
      }
      yield* until(`${IDLE_CONTAINERS} containers sleep`, Effect.sync(() => out.count("sleeping") >= IDLE_CONTAINERS), 60_000)
      // The first container took the idle worker: one exit brings an idle one back, as at the first reading.
      yield* execInRoot(loader, 1, ["exit"])
      yield* settled(loader, 1)
      const rss1 = yield* rss
      const stats1 = yield* loader.sandboxStats
      const guest = yield* Effect.forEach(ids, (id) => Effect.map(Effect.orDie(loader.event(id)), (e) => e.memory.usage.usage))
      const per = (rss1 - rss0) / IDLE_CONTAINERS
      const guestPer = guest.reduce((a, b) => a + b, 0) / IDLE_CONTAINERS
      yield* Effect.forEach(ids, (id) => loader.destroySubcontainer(id), { concurrency: "unbounded", discard: true })
      yield* settled(loader, 1)
      return [{
        name: `${name} (${gc ? "after a GC (--expose-gc)" : "no GC: run without --expose-gc"}; RSS ${fmtMB(rss0)} → ${fmtMB(rss1)}; worker threads ${threads0} → ${stats1.workerThreads}; of which guest linear memory ${fmtMB(guestPer)} per container; warmWorkers 1)`,
        runsc: fmtMB(per),
        baseline: "—",
        ratio: "—",
        aim: `≤ 8 MB (${met(per <= 8 * 2 ** 20)})`
      }]
    })
  )
}

// ---- 11. signal delivery to a blocked task -----------------------------------------------------

export const benchSignal = async ({ progress, verbose }: BenchOptions): Promise<Array<BenchRow>> => {
  const name = `11. signal delivery to a blocked task: signalContainer(id, 0, SIGTERM, "Process") to an init sleeping in poll_oneoff → wait(id) returns Signaled(15)`
  progress(name)
  return limited(
    "signal",
    Effect.gen(function*() {
      const { loader, output, sleeper } = yield* sandbox(1)
      const out = yield* output("signal")
      const stdio = { ...quiet, stdout: out.fd }
      const round = (i: number) =>
        Effect.gen(function*() {
          const id = `sig-${i}`
          // The pool's replacement for the previous round's killed worker is ready first.
          yield* settled(loader, 1)
          yield* loader.createSubcontainer(id)
          yield* loader.startSubcontainer({ containerId: id, bundle: sleeper, stdio })
          yield* until(`${id} sleeps`, Effect.sync(() => out.count("sleeping") >= i + 1))
          // From "sleeping" to inside nanosleep's poll_oneoff is microseconds; leave it ample time.
          yield* Effect.sleep("20 millis")
          const t0 = now()
          yield* loader.signalContainer(id, 0, 15, "Process")
          const status = yield* loader.wait(id)
          const ms = now() - t0
          yield* expectStatus(`sleep in ${id}`, status, SIGTERMED)
          yield* loader.destroySubcontainer(id)
          return ms
        }).pipe(Effect.orDie)
      const warm = 2
      for (let i = 0; i < warm; i++) yield* round(i)
      const times: Array<number> = []
      for (let i = warm; i < warm + SIGNAL_ROUNDS; i++) times.push(yield* round(i))
      yield* settled(loader, 1)
      const after = yield* loader.sandboxStats
      verbose("signal", { runsc: times })
      return [{
        name: `${name} (median of ${SIGNAL_ROUNDS} rounds, each a fresh container; p90 ${fmtMs(percentile(times, 90))}, max ${fmtMs(Math.max(...times))}; warmWorkers 1; worker threads after: ${after.workerThreads})`,
        runsc: fmtMs(median(times)),
        baseline: "—",
        ratio: "—",
        aim: "—"
      }]
    })
  )
}
