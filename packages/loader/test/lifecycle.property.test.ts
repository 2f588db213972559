/**
 * Property-based hunt for lifecycle races, on the real worker platform: random programs of
 * concurrent operations over several containers of one sandbox — create, start, exec, signals
 * in every mode (Process, AllProcesses, ProcessGroup, ForegroundProcessGroup: even-numbered
 * containers' inits have a terminal), wait, waitPid, pause/resume, destroy, and guests that spawn
 * trees of children (task_tree) — run all at once, then
 * checked against DESIGN.md's invariants:
 *   1. a start that loses to a destroy fails typed; nothing of the container is left;
 *   2. when destroy returns, no process of the container is alive (spawned ones included),
 *      and (after every run) no worker thread beyond the sandbox's own is left and no exited
 *      process is left unreaped;
 *   3. every waiter of one process gets the same status, and statuses are the ones the model
 *      allows (the program's exit code, or a signal we sent);
 *   no operation hangs: everything ends within a bound once the containers are destroyed.
 * The sandbox is shared by all runs (its root container sleeps), so leaks would accumulate.
 * A failure prints fast-check's seed and path; replay with `fastCheck: { seed, path }`.
 */
import { afterAll, assert, layer } from "@effect/vitest"
import { type ExitStatus } from "@runsc/abi"
import { type Bundle, defaultSpec } from "@runsc/spec"
import { Duration, Effect, Either, FastCheck, Fiber } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { type GuestPlatform, scriptedPlatform } from "@runsc/kernel"
import { Loader, type LoaderShape, type SignalMode } from "../src/index.js"

const repo = fileURLToPath(new URL("../../../", import.meta.url))

// One rootfs for every container of every run: programs differ only by their args.
const rootfs = Fs.mkdtempSync(Path.join(Os.tmpdir(), "runsc-property-"))
Fs.mkdirSync(Path.join(rootfs, "bin"))
for (const name of ["exit", "sleep", "spin", "task_tree"]) {
  Fs.copyFileSync(Path.join(repo, "test/fixtures/c", `${name}.wasm`), Path.join(rootfs, "bin", name))
  Fs.chmodSync(Path.join(rootfs, "bin", name), 0o755)
}
const devNull = Fs.openSync("/dev/null", "w")
afterAll(() => {
  Fs.closeSync(devNull)
  Fs.rmSync(rootfs, { recursive: true, force: true })
})

const bundleFor = (args: ReadonlyArray<string>, terminal = false): Bundle => {
  const template = defaultSpec()
  return {
    dir: rootfs,
    rootPath: rootfs,
    spec: {
      ...template,
      process: { ...template.process!, args: [args[0]!, ...args.slice(1)], env: ["PATH=/bin"], terminal },
      mounts: []
    }
  }
}

type Program =
  | { readonly kind: "exit"; readonly code: number }
  | { readonly kind: "sleep" }
  | { readonly kind: "spin" }
  /** Spawns a tree of depth × width sleeping children (never exits by itself). */
  | { readonly kind: "tree"; readonly depth: number; readonly width: number }
const argvOf = (p: Program): ReadonlyArray<string> =>
  p.kind === "exit" ? ["exit", `${p.code}`]
  : p.kind === "sleep" ? ["sleep", "600"]
  : p.kind === "spin" ? ["spin"]
  : ["task_tree", `${p.depth}`, `${p.width}`, "600"]

type Op =
  | { readonly op: "create"; readonly c: number }
  | { readonly op: "start"; readonly c: number; readonly program: Program }
  | { readonly op: "exec"; readonly c: number; readonly program: Program }
  | { readonly op: "signal"; readonly c: number; readonly mode: SignalMode; readonly signo: number }
  | { readonly op: "wait"; readonly c: number }
  | { readonly op: "waitPid"; readonly c: number }
  | { readonly op: "pause" }
  | { readonly op: "resume" }
  | { readonly op: "destroy"; readonly c: number }

const CONTAINERS = 3
/** What we send: probe, kill, terminate, an ignored one (SIGCHLD), stop and continue. */
const SIGNALS = [0, 9, 15, 17, 19, 18]
const KILLING = new Set([9, 15])

const program = FastCheck.oneof(
  FastCheck.record({ kind: FastCheck.constant("exit" as const), code: FastCheck.integer({ min: 0, max: 3 }) }),
  FastCheck.record({ kind: FastCheck.constant("sleep" as const) }),
  FastCheck.record({ kind: FastCheck.constant("spin" as const) }),
  FastCheck.record({
    kind: FastCheck.constant("tree" as const),
    depth: FastCheck.integer({ min: 1, max: 2 }),
    width: FastCheck.integer({ min: 1, max: 2 })
  })
)
const container = FastCheck.integer({ min: 0, max: CONTAINERS - 1 })
const op: FastCheck.Arbitrary<Op> = FastCheck.oneof(
  { weight: 3, arbitrary: FastCheck.record({ op: FastCheck.constant("create" as const), c: container }) },
  { weight: 3, arbitrary: FastCheck.record({ op: FastCheck.constant("start" as const), c: container, program }) },
  { weight: 2, arbitrary: FastCheck.record({ op: FastCheck.constant("exec" as const), c: container, program }) },
  {
    weight: 2,
    arbitrary: FastCheck.record({
      op: FastCheck.constant("signal" as const),
      c: container,
      mode: FastCheck.constantFrom<SignalMode>("Process", "AllProcesses", "ProcessGroup", "ForegroundProcessGroup"),
      signo: FastCheck.constantFrom(...SIGNALS)
    })
  },
  { weight: 2, arbitrary: FastCheck.record({ op: FastCheck.constant("wait" as const), c: container }) },
  { weight: 1, arbitrary: FastCheck.record({ op: FastCheck.constant("waitPid" as const), c: container }) },
  { weight: 1, arbitrary: FastCheck.constant({ op: "pause" as const }) },
  { weight: 1, arbitrary: FastCheck.constant({ op: "resume" as const }) },
  { weight: 2, arbitrary: FastCheck.record({ op: FastCheck.constant("destroy" as const), c: container }) }
)

/** The bound within which every waiter must have returned once all containers are destroyed. */
const SETTLE = Duration.seconds(10)

let run = 0
/** What the runs exercised, so a suite that ran nothing interesting shows it. */
const coverage = {
  starts: 0,
  execs: 0,
  statuses: 0,
  destroyedRunning: 0,
  spawnedKilledByDestroy: 0,
  /** Signals delivered (not refused) per mode. */
  delivered: { Process: 0, AllProcesses: 0, ProcessGroup: 0, ForegroundProcessGroup: 0 } as Record<SignalMode, number>
}
afterAll(() => {
  console.log(`lifecycle property coverage: ${JSON.stringify(coverage)}`)
})

/** An operation and when it starts (ms into the run): overlapping, in every order. */
interface Timed {
  readonly at: number
  readonly op: Op
}
const timed: FastCheck.Arbitrary<Timed> = FastCheck.record({ at: FastCheck.integer({ min: 0, max: 60 }), op })

/**
 * A run: each container is created and started at random moments (the start usually after
 * the create, sometimes racing it), then random operations overlap everything.
 */
const lifecycleProgram: FastCheck.Arbitrary<ReadonlyArray<Timed>> = FastCheck.tuple(
  FastCheck.array(
    FastCheck.record({
      createAt: FastCheck.integer({ min: 0, max: 20 }),
      startDelay: FastCheck.integer({ min: -2, max: 20 }),
      program
    }),
    { minLength: CONTAINERS, maxLength: CONTAINERS }
  ),
  FastCheck.array(timed, { maxLength: 12 })
).map(([lifecycles, extra]) => [
  ...lifecycles.flatMap(({ createAt, program, startDelay }, c): Array<Timed> => [
    { at: createAt, op: { op: "create", c } },
    { at: Math.max(0, createAt + startDelay), op: { op: "start", c, program } }
  ]),
  ...extra
])

/** `timeScale` shrinks the moments of a run (scripted guests end within a turn, not a few ms). */
const runProgram = (loader: LoaderShape, program: ReadonlyArray<Timed>, timeScale: number) =>
  Effect.gen(function*() {
    const prefix = `p${run++}`
    const id = (c: number) => `${prefix}-${c}`
    const violations: Array<string> = []
    // What the model allows each container's processes to end with.
    const programs = new Map<number, Array<Program>>()
    const execPids = new Map<number, Array<number>>()
    // Pids each container's starts and execs returned: what a later destroy must have killed.
    const known = new Map<number, Set<number>>()
    const remember = (c: number, pid: number) => known.set(c, (known.get(c) ?? new Set()).add(pid))
    const waiters: Array<{ readonly c: number; readonly pid: number | undefined; readonly fiber: Fiber.RuntimeFiber<Either.Either<ExitStatus, unknown>> }> = []

    const allowed = (status: ExitStatus, c: number) =>
      status._tag === "Signaled"
        ? KILLING.has(status.signal)
        : (programs.get(c) ?? []).some((p) => p.kind === "exit" && p.code === status.code)

    const step = (o: Op): Effect.Effect<void> => {
      switch (o.op) {
        case "create":
          return Effect.ignore(loader.createSubcontainer(id(o.c)))
        case "start":
          return Effect.gen(function*() {
            const bundle = bundleFor(argvOf(o.program), o.c % 2 === 0)
            const started = yield* Effect.either(loader.startSubcontainer({ containerId: id(o.c), bundle, stdio: { stdout: devNull, stderr: devNull } }))
            if (Either.isRight(started)) {
              coverage.starts++
              remember(o.c, started.right)
              programs.set(o.c, [...(programs.get(o.c) ?? []), o.program])
            }
            else if (!["ContainerNotFound", "ContainerAlreadyStarted"].includes(started.left._tag)) {
              violations.push(`start ${id(o.c)} failed with ${started.left._tag}`)
            }
          })
        case "exec":
          return Effect.gen(function*() {
            // Recorded before the exec may start: its status must be allowed either way.
            programs.set(o.c, [...(programs.get(o.c) ?? []), o.program])
            const pid = yield* Effect.either(loader.execute({ containerId: id(o.c), argv: argvOf(o.program), stdio: { stdout: devNull, stderr: devNull } }))
            if (Either.isRight(pid)) {
              coverage.execs++
              remember(o.c, pid.right)
              execPids.set(o.c, [...(execPids.get(o.c) ?? []), pid.right])
            }
          })
        case "signal":
          return Effect.gen(function*() {
            // Process and AllProcesses name the init as pid 0; ProcessGroup takes a pid that ps shows.
            const pid = o.mode === "ProcessGroup"
              ? (yield* Effect.orElseSucceed(loader.processes(id(o.c)), () => [])).at(-1)?.pid ?? 0
              : 0
            yield* loader.signalContainer(id(o.c), pid, o.signo, o.mode)
            coverage.delivered[o.mode]++
          }).pipe(Effect.ignore)
        case "wait":
          return Effect.map(Effect.fork(Effect.either(loader.wait(id(o.c)))), (fiber) => void waiters.push({ c: o.c, pid: undefined, fiber }))
        case "waitPid": {
          const pid = execPids.get(o.c)?.at(-1)
          if (pid === undefined) return Effect.void
          return Effect.map(Effect.fork(Effect.either(loader.waitPid(id(o.c), pid))), (fiber) => void waiters.push({ c: o.c, pid, fiber }))
        }
        case "pause":
          return Effect.ignore(loader.pause)
        case "resume":
          return Effect.ignore(loader.resume)
        case "destroy":
          return Effect.gen(function*() {
            // Every process started before the destroy began must be dead when it returns. (The
            // id may be created and started again meanwhile: those processes are a new container.)
            const before = new Set(known.get(o.c))
            const running = (yield* loader.allProcesses).filter((p) => p.containerId === id(o.c))
            if (running.length > 0) coverage.destroyedRunning++
            // The container's guests' children too (ppid ≠ 0: spawned inside the sandbox).
            for (const p of running) before.add(p.pid)
            coverage.spawnedKilledByDestroy += running.filter((p) => p.ppid !== 0).length
            yield* loader.destroySubcontainer(id(o.c))
            const left = (yield* loader.allProcesses).filter((p) => before.has(p.pid))
            if (left.length > 0) violations.push(`after destroy ${id(o.c)}: pids ${left.map((p) => p.pid).join(",")} still alive`)
          })
      }
    }

    // All operations concurrently, each from its own moment: the interleavings are the point.
    yield* Effect.forEach(program, ({ at, op }) => Effect.zipRight(Effect.sleep(Duration.millis(at * timeScale)), step(op)), {
      concurrency: "unbounded",
      discard: true
    })
    yield* Effect.ignore(loader.resume)
    yield* Effect.forEach(Array.from({ length: CONTAINERS }, (_, c) => c), (c) => loader.destroySubcontainer(id(c)), {
      concurrency: "unbounded",
      discard: true
    })

    // No hang: every waiter returns once the containers are gone.
    const results = yield* Effect.forEach(waiters, (w) => Effect.map(Fiber.join(w.fiber), (r) => ({ ...w, r }))).pipe(
      Effect.timeoutFail({ duration: SETTLE, onTimeout: () => new Error(`a waiter did not return within ${Duration.format(SETTLE)} of the destroys`) })
    )
    const initStatuses = new Map<number, ExitStatus>()
    for (const { c, pid, r } of results) {
      if (Either.isLeft(r)) continue
      coverage.statuses++
      if (!allowed(r.right, c)) violations.push(`${id(c)}${pid ? ` pid ${pid}` : ""} ended ${JSON.stringify(r.right)}, not allowed by the model`)
      if (pid === undefined) {
        const first = initStatuses.get(c)
        if (first === undefined) initStatuses.set(c, r.right)
        else if (JSON.stringify(first) !== JSON.stringify(r.right)) violations.push(`waiters of ${id(c)} disagree`)
      }
    }

    // Nothing left: only the root container's process, and no worker thread but its own and
    // the pool's idle ones (surplus idle ones retire after a while); a terminated thread exits
    // shortly after.
    for (let i = 0; ; i++) {
      const stats = yield* loader.sandboxStats
      if (stats.processes === 1 && stats.unreaped === 0 && stats.workerThreads <= stats.processes + stats.idleWorkers) break
      if (i === 100) {
        violations.push(`left behind: ${JSON.stringify(stats)}`)
        break
      }
      yield* Effect.sleep("20 millis")
    }
    assert.deepStrictEqual(violations, [], `${violations.join("; ")} — program: ${JSON.stringify(program)}`)
  })

const runs = (fallback: number) => Number(process.env["RUNSC_PROPERTY_RUNS"] ?? fallback)
const replay = process.env["RUNSC_PROPERTY_SEED"]
  ? { seed: Number(process.env["RUNSC_PROPERTY_SEED"]), path: process.env["RUNSC_PROPERTY_PATH"] ?? "" }
  : {}

/** The property, on one sandbox whose guest threads come from `platform`. */
const property = (name: string, platform: GuestPlatform | undefined, numRuns: number, timeScale: number) =>
  layer(
    Loader.layer({
      containerId: "root",
      bundle: bundleFor(["sleep", "3600"]),
      stdio: { stdout: devNull, stderr: devNull },
      ...(platform ? { kernel: { platform } } : {})
    }),
    { excludeTestServices: true, timeout: "30 seconds" }
  )(name, (it) => {
    it.effect("the root container runs", () => Effect.flatMap(Loader, (loader) => loader.startRoot))

    it.effect.prop(
      "random concurrent lifecycle programs keep DESIGN.md's invariants",
      [lifecycleProgram],
      ([program]) => Effect.flatMap(Loader, (loader) => runProgram(loader, program, timeScale)),
      { timeout: 300_000, fastCheck: { numRuns, ...replay } }
    )
  })

// The same kernel and loader code with guests that run no wasm: thousands of interleavings.
property("lifecycle races (scripted platform)", scriptedPlatform, runs(20) * 50, 0.1)
// Real worker threads running the fixture programs.
property("lifecycle races (real workers)", undefined, runs(50), 1)
