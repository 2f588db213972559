/**
 * The sandbox's memory account from the guest's side: memory.grow returns -1 past the sandbox's
 * memory or the module's maximum, a process that cannot fit does not start (SandboxOutOfMemory,
 * proc_spawn ENOMEM), tables and pipe buffers count (fd_pipe ENFILE), the process limit follows
 * the memory (EAGAIN), everything goes back at exit; and SIGKILL ends a guest growing its memory
 * page by page.
 */
import { Errno, SIGKILL } from "@runsc/abi"
import { assert, layer } from "@effect/vitest"
import { Duration, Effect } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { Kernel, PIPE_CAPACITY, PROCESS_BUDGET, PROCESS_MEMORY, SandboxOutOfMemory } from "../src/index.js"
import { eventually, Exited, failureOf, fixture, probe, rootOf, runGuest, Signaled, startGuest, tempDir, timed, wat } from "./helpers.js"

const MiB = 1024 * 1024
const PAGE = 65536
const TOTAL = 32 * MiB

/**
 * Grows its memory by `step` pages until memory.grow returns -1 (or, with `forever`, keeps
 * asking), then writes how many pages it got as 4 raw bytes to stdout.
 */
const grower = (options: { readonly memory: string; readonly step?: number; readonly forever?: boolean }) =>
  wat(`
    (module
      (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") ${options.memory})
      (data (i32.const 32) "growing\\n")
      (func (export "_start") (local $n i32)
        (i32.store (i32.const 8) (i32.const 32))
        (i32.store (i32.const 12) (i32.const 8))
        (drop (call $fd_write (i32.const 1) (i32.const 8) (i32.const 1) (i32.const 16)))
        (block $done (loop $more
          ${options.forever ? "(drop (memory.grow (i32.const 1))) (br $more)" : ""}
          (br_if $done (i32.eq (memory.grow (i32.const ${options.step ?? 1})) (i32.const -1)))
          (local.set $n (i32.add (local.get $n) (i32.const ${options.step ?? 1})))
          (br $more)))
        (i32.store (i32.const 0) (local.get $n))
        (i32.store (i32.const 8) (i32.const 0))
        (i32.store (i32.const 12) (i32.const 4))
        (drop (call $fd_write (i32.const 1) (i32.const 8) (i32.const 1) (i32.const 16)))))`)

/** Processes count towards the process limit until reaped: those of the tests before go first. */
const reapZombies = Effect.flatMap(Kernel, (kernel) =>
  Effect.flatMap(kernel.processes, (all) => Effect.forEach(all.filter((tg) => !tg.isAlive), kernel.reap, { discard: true })))

/** The page count a grower wrote after its "growing" line. */
const pagesGot = (stdout: Buffer) => stdout.readInt32LE("growing\n".length)

/**
 * Makes pipes until fd_pipe fails, closes the last, makes one more; writes the count, the
 * failure's errno and the last call's result as three i32s to stdout.
 */
const pipeMaker = wat(`
          (module
            (import "wasix_32v1" "fd_pipe" (func $fd_pipe (param i32 i32) (result i32)))
            (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
            (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 1)
            (func (export "_start") (local $n i32) (local $e i32)
              (block $done (loop $more
                (local.set $e (call $fd_pipe (i32.const 0) (i32.const 4)))
                (br_if $done (local.get $e))
                (local.set $n (i32.add (local.get $n) (i32.const 1)))
                (br $more)))
              ;; the last pipe made is still at 0 and 4
              (drop (call $fd_close (i32.load (i32.const 0))))
              (drop (call $fd_close (i32.load (i32.const 4))))
              (i32.store (i32.const 16) (local.get $n))
              (i32.store (i32.const 20) (local.get $e))
              (i32.store (i32.const 24) (call $fd_pipe (i32.const 0) (i32.const 4)))
              (i32.store (i32.const 32) (i32.const 16))
              (i32.store (i32.const 36) (i32.const 12))
              (drop (call $fd_write (i32.const 1) (i32.const 32) (i32.const 1) (i32.const 40)))))`)

layer(Kernel.layer({ warmWorkers: 1, totalMemory: TOTAL }), { excludeTestServices: true })("a sandbox of 32 MiB", (it) => {
  it.effect("memory.grow returns -1 once the sandbox's memory is full: the guest gets exactly what is left; all of it goes back at exit", () =>
    Effect.gen(function*() {
      const kernel = yield* Kernel
      assert.strictEqual(kernel.memory.total, TOTAL)
      const r = yield* runGuest({ bytes: yield* grower({ memory: "1" }) })
      assert.deepStrictEqual(r.status, Exited(0))
      // The process's share and its first page are charged when it starts.
      assert.strictEqual(pagesGot(r.stdoutBytes), (TOTAL - PROCESS_MEMORY - PAGE) / PAGE)
      assert.strictEqual(kernel.memory.used, 0)
    }))

  it.effect("a grow past the module's own maximum is -1, and charges nothing", () =>
    Effect.gen(function*() {
      const kernel = yield* Kernel
      const r = yield* runGuest({ bytes: yield* grower({ memory: "1 10", step: 3 }) })
      assert.strictEqual(pagesGot(r.stdoutBytes), 9)
      assert.strictEqual(kernel.memory.used, 0)
    }))

  it.scoped("a process whose memory or tables do not fit does not start: SandboxOutOfMemory, and proc_spawn fails ENOMEM", () =>
    Effect.gen(function*() {
      const kernel = yield* Kernel
      const big = yield* wat(`(module (memory (export "memory") 400) (func (export "_start")))`)
      const table = yield* wat(`(module (memory (export "memory") 1) (table 1000000 funcref) (func (export "_start")))`)
      for (const bytes of [big, table]) {
        const error = yield* failureOf(Effect.scoped(startGuest({ bytes, programPath: "/bin/big" })))
        assert.instanceOf(error, SandboxOutOfMemory)
        assert.strictEqual((error as SandboxOutOfMemory).total, TOTAL)
        assert.match((error as SandboxOutOfMemory).message, /^\/bin\/big: the sandbox's memory is full \(the process needs \d+\.\d MiB; \d+\.\d MiB of 32\.0 MiB free\)$/)
      }
      assert.strictEqual(kernel.memory.used, 0)

      yield* reapZombies
      const dir = yield* tempDir("runsc-memory-root-")
      Fs.mkdirSync(Path.join(dir, "bin"))
      Fs.writeFileSync(Path.join(dir, "bin", "big"), big, { mode: 0o755 })
      const r = yield* runGuest({
        root: yield* rootOf(dir),
        bytes: yield* probe({
          data: [[1000, "/bin/big"], [1100, "big\0"]],
          body: `(call $proc_spawn (i32.const 1000) (i32.const 8) (i32.const 1100) (i32.const 4) (i32.const 0) (i32.const 0)
            (i32.const 0) (i32.const 0) (i32.const -1) (i32.const 0) (i32.const 1200))`
        })
      })
      assert.deepStrictEqual(r.status, Exited(Errno.NOMEM))
    }))

  it.effect("fd_pipe fails ENFILE once the sandbox's memory cannot hold another pipe's buffer; closing a pipe gives it back", () =>
    Effect.gen(function*() {
      const kernel = yield* Kernel
      const r = yield* runGuest({ bytes: yield* pipeMaker })
      assert.deepStrictEqual(r.status, Exited(0))
      const out = r.stdoutBytes
      // Each pipe holds PIPE_CAPACITY of the sandbox's memory, past the process's share and page.
      assert.strictEqual(out.readInt32LE(0), Math.floor((TOTAL - PROCESS_MEMORY - PAGE) / PIPE_CAPACITY))
      assert.strictEqual(out.readInt32LE(4), Errno.NFILE)
      assert.strictEqual(out.readInt32LE(8), Errno.SUCCESS)
      // The process's fds were closed at its exit: every pipe went back.
      assert.strictEqual(kernel.memory.used, 0)
    }))

  it.scoped("a container's pipes count against its own memory account: its fd_pipe fails ENFILE at its limit, not the sandbox's", () =>
    Effect.gen(function*() {
      const kernel = yield* Kernel
      const tasks = yield* kernel.taskSet("small")
      tasks.memory = kernel.memory.child(12 * MiB)
      const run = yield* startGuest({ bytes: yield* pipeMaker, tasks })
      assert.deepStrictEqual(yield* run.exit, Exited(0))
      const out = run.stdoutBytes()
      assert.strictEqual(out.readInt32LE(0), Math.floor((12 * MiB - PROCESS_MEMORY - PAGE) / PIPE_CAPACITY))
      assert.strictEqual(out.readInt32LE(4), Errno.NFILE)
      assert.isAbove(tasks.memory.failures, 0)
      assert.strictEqual(tasks.memory.used, 0)
      assert.strictEqual(kernel.memory.used, 0)
    }))

  it.scoped("the process limit follows the memory: past TOTAL / PROCESS_BUDGET processes proc_spawn fails EAGAIN", () =>
    Effect.gen(function*() {
      const kernel = yield* Kernel
      yield* reapZombies
      const limit = Math.floor(TOTAL / PROCESS_BUDGET)
      assert.strictEqual(limit, 3)
      const dir = yield* tempDir("runsc-memory-root-")
      Fs.mkdirSync(Path.join(dir, "bin"))
      Fs.writeFileSync(Path.join(dir, "bin", "sleep"), fixture("sleep"), { mode: 0o755 })
      // Spawns sleepers until a spawn fails: exits with 100 × spawned + errno.
      const r = yield* runGuest({
        root: yield* rootOf(dir),
        bytes: yield* probe({
          data: [[1000, "/bin/sleep"], [1100, "sleep\x0060\0"]],
          extra: `(func $run (result i32) (local $n i32) (local $e i32)
            (block $done (loop $more
              (local.set $e (call $proc_spawn (i32.const 1000) (i32.const 10) (i32.const 1100) (i32.const 9) (i32.const 0) (i32.const 0)
                (i32.const 0) (i32.const 0) (i32.const -1) (i32.const 0) (i32.const 1200)))
              (br_if $done (local.get $e))
              (local.set $n (i32.add (local.get $n) (i32.const 1)))
              (br $more)))
            (i32.add (i32.mul (local.get $n) (i32.const 100)) (local.get $e)))`,
          body: "(call $run)"
        })
      })
      assert.deepStrictEqual(r.status, Exited(100 * (limit - 1) + Errno.AGAIN))
      for (const tg of yield* kernel.processes) yield* kernel.signal(tg, SIGKILL)
      yield* eventually(() => kernel.memory.used === 0, "the sleepers' memory goes back")
    }))
})

layer(Kernel.layer({ warmWorkers: 1 }), { excludeTestServices: true })("SIGKILL", (it) => {
  it.scoped("ends a guest growing its memory page by page within seconds (V8 does not interrupt a wasm loop of memory.grow)", () =>
    Effect.gen(function*() {
      const run = yield* startGuest({ bytes: yield* grower({ memory: "1", forever: true }) })
      yield* eventually(() => run.stdout() === "growing\n", "the guest runs")
      // Well into its growth (past 2 GiB V8 slows each grow down; a kill used to wait for 4 GiB).
      yield* Effect.sleep("1500 millis")
      const kernel = yield* Kernel
      const [status, ms] = yield* timed(
        Effect.zipRight(kernel.signal(run.tg, SIGKILL), Effect.timeout(run.exit, Duration.seconds(20)))
      )
      assert.deepStrictEqual(status, Signaled(SIGKILL))
      assert.isBelow(ms, 20_000)
    }))
})
