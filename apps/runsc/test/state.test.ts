/**
 * The CLI's state store as a service on a FileSystem: its container locks are taken when their
 * holder lets go, not at the next tick of a poll (the waits below run under the TestClock, whose
 * time never passes by itself), a holder that dies holding one does not hold it for ever, and a
 * platform that cannot watch the directory still gets the lock. Records are written atomically.
 */
import { FileSystem } from "@effect/platform"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Either, Fiber, Layer, TestClock, TestServices } from "effect"
import { spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { thisProcess } from "../src/hostProcess.js"
import { type ContainerRecord, StateStore } from "../src/state.js"

/** A fresh state root, removed with the scope. */
const freshRoot = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "runsc-state-"))),
  (root) => Effect.sync(() => Fs.rmSync(root, { recursive: true, force: true }))
)

/** `effect` with the store of `root` on Node's FileSystem, or on `fileSystem` when given. */
const withStore = (root: string, fileSystem: Layer.Layer<FileSystem.FileSystem> = NodeFileSystem.layer) =>
  <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.provide(effect, StateStore.layer(root).pipe(Layer.provide(fileSystem)))

/** Joins `fiber`, failing the test if it has not ended within `seconds` of real time ("did not hang"). */
const joinWithin = <A, E>(fiber: Fiber.Fiber<A, E>, seconds: number) =>
  TestServices.provideLive(Effect.timeoutFail(Fiber.join(fiber), {
    duration: `${seconds} seconds`,
    onTimeout: () => new Error(`not done within ${seconds} s`)
  }))

/** `f` run holding `id`'s lock until `release` is done; resolves `holding` once it holds it. */
const holdLock = (id: string) =>
  Effect.gen(function*() {
    const states = yield* StateStore
    const holding = yield* Deferred.make<void>()
    const release = yield* Deferred.make<void>()
    const holder = yield* Effect.fork(states.locked(id, Effect.zipRight(Deferred.succeed(holding, undefined), Deferred.await(release))))
    yield* Deferred.await(holding)
    return { holder, release: Deferred.succeed(release, undefined) }
  })

/** A child process that lives until killed, and its identity as a lock names it. */
const liveProcess = Effect.acquireRelease(
  Effect.async<{ readonly pid: number; readonly kill: () => void }>((resume) => {
    const child = spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)"], { stdio: "ignore" })
    child.once("spawn", () => resume(Effect.succeed({ pid: child.pid!, kill: () => void child.kill("SIGKILL") })))
  }),
  ({ kill }) => Effect.sync(kill)
)

const startOf = (pid: number) => {
  const stat = Fs.readFileSync(`/proc/${pid}/stat`, "utf8")
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]!
}

describe("container locks", () => {
  it.scoped("a waiter takes the lock when its holder lets go, with no clock time passing", () =>
    Effect.gen(function*() {
      const root = yield* freshRoot
      yield* Effect.gen(function*() {
        const states = yield* StateStore
        const { holder, release } = yield* holdLock("c1")
        const waiter = yield* Effect.fork(states.locked("c1", Effect.succeed("taken")))
        // The waiter has found the lock held and waits (a few real milliseconds; the clock stands still).
        yield* TestServices.provideLive(Effect.sleep("100 millis"))
        assert.isNull(waiter.unsafePoll(), "the waiter waits while the lock is held")
        yield* release
        yield* Fiber.join(holder)
        assert.strictEqual(yield* joinWithin(waiter, 10), "taken")
        assert.deepStrictEqual(Fs.readdirSync(root), [], "no lock is left")
      }).pipe(withStore(root))
    }))

  it.scoped("a lock whose holder dies holding it is broken by the next re-check", () =>
    Effect.gen(function*() {
      const root = yield* freshRoot
      const holder = yield* liveProcess
      Fs.symlinkSync(`runsc-lock:${holder.pid}:${startOf(holder.pid)}`, Path.join(root, "c2.lock"))
      yield* Effect.gen(function*() {
        const states = yield* StateStore
        const waiter = yield* Effect.fork(states.locked("c2", Effect.succeed("taken")))
        yield* TestServices.provideLive(Effect.sleep("100 millis"))
        assert.isNull(waiter.unsafePoll(), "a live holder's lock is not broken")
        holder.kill()
        // Its death is no event in the directory: the waiter finds it at its next re-check.
        const dead = yield* TestServices.provideLive(Effect.gen(function*() {
          for (let i = 0; i < 500 && Fs.existsSync(`/proc/${holder.pid}`); i++) yield* Effect.sleep("10 millis")
          return !Fs.existsSync(`/proc/${holder.pid}`) || Fs.readFileSync(`/proc/${holder.pid}/stat`, "utf8").includes(") Z ")
        }))
        assert.isTrue(dead, "the holder is gone")
        yield* TestClock.adjust("1 second")
        assert.strictEqual(yield* joinWithin(waiter, 10), "taken")
        assert.deepStrictEqual(Fs.readdirSync(root), [], "neither the lock nor its breaker is left")
      }).pipe(withStore(root))
    }))

  it.scoped("a live holder that keeps its lock makes the waiter fail LockUnavailable, held", () =>
    Effect.gen(function*() {
      const root = yield* freshRoot
      yield* Effect.gen(function*() {
        const states = yield* StateStore
        yield* holdLock("c3")
        const waiter = yield* Effect.fork(Effect.either(states.locked("c3", Effect.void)))
        yield* TestServices.provideLive(Effect.sleep("100 millis"))
        yield* TestClock.adjust("11 seconds")
        const result = yield* joinWithin(waiter, 10)
        assert.isTrue(Either.isLeft(result) && result.left._tag === "LockUnavailable" && result.left.held, String(result))
        assert.match(Either.isLeft(result) ? result.left.message : "", new RegExp(`held for too long by pid ${process.pid}`))
      }).pipe(withStore(root))
    }))

  it.live("where the directory cannot be watched, the re-checks alone take the lock", () =>
    Effect.gen(function*() {
      const root = yield* freshRoot
      // Node's watcher throws when no inotify instance is left; the platform makes that a defect.
      const unwatchable = Layer.effect(
        FileSystem.FileSystem,
        Effect.map(FileSystem.FileSystem, (fs) => ({ ...fs, watch: () => Effect.dieMessage("no inotify instance left") as never }))
      ).pipe(Layer.provide(NodeFileSystem.layer))
      yield* Effect.gen(function*() {
        const states = yield* StateStore
        const { holder, release } = yield* holdLock("c4")
        const waiter = yield* Effect.fork(states.locked("c4", Effect.succeed("taken")))
        yield* Effect.sleep("100 millis")
        assert.isNull(waiter.unsafePoll())
        yield* release
        yield* Fiber.join(holder)
        assert.strictEqual(yield* joinWithin(waiter, 10), "taken")
      }).pipe(withStore(root, unwatchable))
    }).pipe(Effect.scoped))

  it.scoped("an interrupted wait leaves the holder's lock alone and no watcher running", () =>
    Effect.gen(function*() {
      const root = yield* freshRoot
      yield* Effect.gen(function*() {
        const states = yield* StateStore
        const { holder, release } = yield* holdLock("c5")
        const waiter = yield* Effect.fork(states.locked("c5", Effect.succeed("taken")))
        yield* TestServices.provideLive(Effect.sleep("100 millis"))
        yield* TestServices.provideLive(Effect.timeoutFail(Fiber.interrupt(waiter), {
          duration: "10 seconds",
          onTimeout: () => new Error("the waiter did not stop")
        }))
        assert.strictEqual(Fs.readlinkSync(Path.join(root, "c5.lock")), `runsc-lock:${process.pid}:${thisProcess().start}`)
        yield* release
        yield* Fiber.join(holder)
        assert.deepStrictEqual(Fs.readdirSync(root), [])
      }).pipe(withStore(root))
    }))
})

describe("records", () => {
  const record = (id: string): ContainerRecord => ({
    id,
    bundle: "/bundle",
    sandboxPid: 0,
    sandboxStart: "",
    socket: `/run/${id}.sock`,
    phase: "creating",
    createdBy: thisProcess(),
    createdAt: "2026-01-01T00:00:00.000Z",
    annotations: {}
  })

  it.scoped("a record is written aside and renamed; a write that fails leaves no file aside", () =>
    Effect.gen(function*() {
      const root = yield* freshRoot
      yield* Effect.gen(function*() {
        const states = yield* StateStore
        yield* states.reserve(record("r1"))
        assert.deepStrictEqual(Fs.readdirSync(root), ["r1.state.json"])
        assert.strictEqual((yield* states.read("r1")).phase, "creating")
        // A directory where the record goes: the rename fails.
        Fs.mkdirSync(Path.join(root, "r2.state.json"))
        Fs.writeFileSync(Path.join(root, "r2.state.json", "x"), "")
        const failed = yield* Effect.either(states.write(record("r2")))
        assert.isTrue(Either.isLeft(failed) && failed.left._tag === "CannotWrite")
        assert.deepStrictEqual(Fs.readdirSync(root).sort(), ["r1.state.json", "r2.state.json"])
      }).pipe(withStore(root))
    }))

  it.scoped("a symlink or a FIFO where a record goes is not read: the container does not exist", () =>
    Effect.gen(function*() {
      const root = yield* freshRoot
      const elsewhere = Path.join(root, "elsewhere")
      Fs.writeFileSync(elsewhere, JSON.stringify(record("s1")))
      Fs.symlinkSync(elsewhere, Path.join(root, "s1.state.json"))
      yield* Effect.promise(() =>
        new Promise<void>((resolve, reject) =>
          spawn("mkfifo", [Path.join(root, "s2.state.json")]).once("exit", (code) => (code === 0 ? resolve() : reject(new Error("mkfifo"))))
        )
      )
      yield* Effect.gen(function*() {
        const states = yield* StateStore
        for (const id of ["s1", "s2"]) {
          const read = yield* joinWithin(yield* Effect.fork(Effect.either(states.read(id))), 10)
          assert.isTrue(Either.isLeft(read) && read.left._tag === "ContainerUnknown", `${id}: ${String(read)}`)
        }
        assert.isTrue(yield* states.hasTraces("s1"), "a link is a trace, wherever it points")
      }).pipe(withStore(root))
    }))
})
