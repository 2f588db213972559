/**
 * Signals from the outside (`Kernel.signal`) and from the guest (proc_raise): terminate, kill,
 * ignore, stop and continue, on guests blocked in the sentry and on compute-bound ones.
 */
import { Errno, FileType } from "@runsc/abi"
import { assert, describe, it, layer } from "@effect/vitest"
import { Deferred, Effect } from "effect"
import { type FileDescription, Kernel, SyscallError } from "../src/index.js"
import {
  eventually,
  Exited,
  fixture,
  kernelLayer,
  probe,
  Signaled,
  startGuest,
  timed
} from "./helpers.js"

/** A clock subscription (relative, monotonic) of `ms` milliseconds at `at`. */
const clockSubscription = (ms: number): Uint8Array => {
  const bytes = new Uint8Array(48)
  const v = new DataView(bytes.buffer)
  v.setBigUint64(0, 0x1234n, true) // userdata
  v.setUint8(8, 0) // clock
  v.setUint32(16, 1, true) // monotonic
  v.setBigUint64(24, BigInt(ms) * 1_000_000n, true)
  return bytes
}

/** Writes "x" to stdout, sleeps `ms` in poll_oneoff, then exits with `code` (no other syscall). */
const writeSleepExit = (ms: number, code: number) =>
  probe({
    data: [[0, new Uint8Array([16, 0, 0, 0, 1, 0, 0, 0])], [16, "x"], [100, clockSubscription(ms)]],
    body: `(block (result i32)
      (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
      (drop (call $poll_oneoff (i32.const 100) (i32.const 200) (i32.const 1) (i32.const 300)))
      (i32.const ${code}))`
  })

/** Milliseconds the process takes to exit after `signo`. */
const exitAfterSignal = (run: { tg: Parameters<Kernel["Type"]["signal"]>[0]; exit: Effect.Effect<unknown> }, signo: number) =>
  Effect.gen(function*() {
    const kernel = yield* Kernel
    const [status, ms] = yield* timed(Effect.zipRight(kernel.signal(run.tg, signo), run.exit))
    return { status, ms }
  })

layer(kernelLayer, { excludeTestServices: true })("Kernel.signal", (it) => {
  for (const signo of [15, 9, 1, 2]) {
    it.scoped(`signal ${signo} ends a guest sleeping in poll_oneoff, promptly`, () =>
      Effect.gen(function*() {
        const run = yield* startGuest({ bytes: fixture("sleep"), argv: ["sleep", "60"] })
        yield* eventually(() => run.stdout() === "sleeping\n", "sleep started")
        const { ms, status } = yield* exitAfterSignal(run, signo)
        assert.deepStrictEqual(status, Signaled(signo))
        assert.isBelow(ms, 2000)
        assert.strictEqual(run.tg.state, "exited")
      }))
  }

  for (const signo of [15, 9]) {
    it.scoped(`signal ${signo} ends a compute-bound guest (no syscalls), promptly`, () =>
      Effect.gen(function*() {
        const run = yield* startGuest({ bytes: fixture("spin"), argv: ["spin"] })
        yield* eventually(() => run.stdout() === "spinning\n", "spin started")
        const { ms, status } = yield* exitAfterSignal(run, signo)
        assert.deepStrictEqual(status, Signaled(signo))
        assert.isBelow(ms, 2000)
      }))
  }

  /**
   * CPU the guest's worker used over `ms` (the kernel's reading: /proc's per-thread stat, in
   * 10 ms ticks).
   */
  const cpuOver = (tg: Parameters<Kernel["Type"]["usage"]>[0], ms: number) =>
    Effect.gen(function*() {
      const kernel = yield* Kernel
      const before = (yield* kernel.usage(tg)).cpuNs
      yield* Effect.sleep(`${ms} millis`)
      return Number((yield* kernel.usage(tg)).cpuNs - before) / 1e6
    })

  // A compute-bound guest reaches its preemption points (platform/instrument.ts) every few µs:
  // a stop or a pause holds it there, off the CPU, as at a syscall.
  for (const [what, hold, release] of [
    ["SIGSTOP and SIGCONT", (k: Kernel["Type"], tg: Parameters<Kernel["Type"]["signal"]>[0]) => k.signal(tg, 19), (k: Kernel["Type"], tg: Parameters<Kernel["Type"]["signal"]>[0]) => k.signal(tg, 18)],
    ["pause and resume", (k: Kernel["Type"]) => k.pause, (k: Kernel["Type"]) => k.resume]
  ] as const) {
    it.scoped(`${what} hold and release a compute-bound guest (no syscalls): off the CPU while held`, () =>
      Effect.gen(function*() {
        const kernel = yield* Kernel
        const run = yield* startGuest({ bytes: fixture("spin"), argv: ["spin"] })
        yield* eventually(() => run.stdout() === "spinning\n", "spin started")
        // However loaded the machine, a spinning guest gets some CPU in a second.
        assert.isAbove(yield* cpuOver(run.tg, 1000), 0, "the guest spins")
        yield* hold(kernel, run.tg)
        // Given a moment to reach its next point, it uses no more CPU: at most a tick of /proc's.
        yield* Effect.sleep("50 millis")
        assert.isAtMost(yield* cpuOver(run.tg, 600), 10, "CPU used while held")
        assert.isFalse(yield* Deferred.isDone(run.tg.exitStatus))
        yield* release(kernel, run.tg)
        assert.isAbove(yield* cpuOver(run.tg, 1000), 0, "the guest spins again")
        const { status } = yield* exitAfterSignal(run, 9)
        assert.deepStrictEqual(status, Signaled(9))
      }))
  }

  it.scoped("SIGKILL and SIGTERM end a compute-bound guest held by SIGSTOP at a preemption point, promptly", () =>
    Effect.gen(function*() {
      const kernel = yield* Kernel
      for (const signo of [9, 15]) {
        const run = yield* startGuest({ bytes: fixture("spin"), argv: ["spin"] })
        yield* eventually(() => run.stdout() === "spinning\n", "spin started")
        yield* kernel.signal(run.tg, 19)
        // Held in the sentry at its syscall boundary (its checkpoint's sched_yield), off the CPU.
        yield* Effect.sleep("50 millis")
        assert.isAtMost(yield* cpuOver(run.tg, 300), 10, "CPU used while stopped")
        const { ms, status } = yield* exitAfterSignal(run, signo)
        assert.deepStrictEqual(status, Signaled(signo))
        assert.isBelow(ms, 2000)
      }
    }))

  it.scoped("SIGKILL right after startProcess (before the guest ran) ends it", () =>
    Effect.gen(function*() {
      const kernel = yield* Kernel
      const run = yield* startGuest({ bytes: fixture("sleep"), argv: ["sleep", "60"] })
      yield* kernel.signal(run.tg, 9)
      assert.deepStrictEqual(yield* run.exit, Signaled(9))
      assert.strictEqual(run.stdout(), "")
    }))

  it.scoped("ignored signals (SIGCHLD, SIGURG, SIGWINCH) and signal 0 leave the guest running", () =>
    Effect.gen(function*() {
      const kernel = yield* Kernel
      const run = yield* startGuest({ bytes: fixture("sleep"), argv: ["sleep", "60"] })
      yield* eventually(() => run.stdout() === "sleeping\n", "sleep started")
      for (const signo of [17, 23, 28, 0]) yield* kernel.signal(run.tg, signo)
      yield* Effect.sleep("300 millis")
      assert.isFalse(yield* Deferred.isDone(run.tg.exitStatus))
      assert.strictEqual(run.tg.state, "running")
      yield* kernel.signal(run.tg, 9)
      assert.deepStrictEqual(yield* run.exit, Signaled(9))
    }))

  it.scoped("SIGSTOP holds a sleeping guest at its next syscall; SIGCONT lets it finish", () =>
    Effect.gen(function*() {
      const kernel = yield* Kernel
      const run = yield* startGuest({ bytes: fixture("sleep"), argv: ["sleep", "1"] })
      yield* eventually(() => run.stdout() === "sleeping\n", "sleep started")
      yield* eventually(() => run.tg.inKernel.current >= 0, "inside nanosleep's poll_oneoff")
      yield* kernel.signal(run.tg, 19)
      assert.strictEqual(run.tg.state, "stopped")
      // The sleep ends at 1 s; the "woke" write must wait for SIGCONT.
      yield* Effect.sleep("1800 millis")
      assert.isFalse(yield* Deferred.isDone(run.tg.exitStatus))
      assert.strictEqual(run.stdout(), "sleeping\n")
      yield* kernel.signal(run.tg, 18)
      assert.strictEqual(run.tg.state, "running")
      const [status, ms] = yield* timed(run.exit)
      assert.deepStrictEqual(status, Exited(0))
      assert.isBelow(ms, 2000)
      assert.strictEqual(run.stdout(), "sleeping\nwoke\n")
    }))

  it.scoped("SIGSTOP before the guest first runs holds its first write", () =>
    Effect.gen(function*() {
      const kernel = yield* Kernel
      const bytes = yield* probe({
        data: [[0, new Uint8Array([16, 0, 0, 0, 6, 0, 0, 0])], [16, "hello\n"]],
        body: "(call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))"
      })
      const run = yield* startGuest({ bytes })
      yield* kernel.signal(run.tg, 19)
      yield* Effect.sleep("400 millis")
      assert.strictEqual(run.stdout(), "")
      assert.isFalse(yield* Deferred.isDone(run.tg.exitStatus))
      yield* kernel.signal(run.tg, 18)
      assert.deepStrictEqual(yield* run.exit, Exited(0))
      assert.strictEqual(run.stdout(), "hello\n")
    }))

  it.scoped("a stopped guest does not exit until it is continued (proc_exit is a syscall boundary)", () =>
    Effect.gen(function*() {
      const kernel = yield* Kernel
      const run = yield* startGuest({ bytes: yield* writeSleepExit(500, 5) })
      yield* eventually(() => run.stdout() === "x", "guest started")
      // The write took the fast path; the first call the sentry serves is the poll_oneoff.
      yield* eventually(() => run.tg.inKernel.syscalls >= 1, "guest in poll_oneoff")
      yield* kernel.signal(run.tg, 19)
      yield* Effect.sleep("1200 millis")
      assert.isFalse(yield* Deferred.isDone(run.tg.exitStatus), "exited while stopped")
      assert.strictEqual(run.tg.state, "stopped")
      yield* kernel.signal(run.tg, 18)
      assert.deepStrictEqual(yield* run.exit, Exited(5))
    }))

  it.scoped("SIGKILL and SIGTERM end a stopped guest", () =>
    Effect.gen(function*() {
      const kernel = yield* Kernel
      for (const signo of [9, 15]) {
        const run = yield* startGuest({ bytes: fixture("sleep"), argv: ["sleep", "60"] })
        yield* eventually(() => run.stdout() === "sleeping\n", "sleep started")
        yield* kernel.signal(run.tg, 19)
        const { ms, status } = yield* exitAfterSignal(run, signo)
        assert.deepStrictEqual(status, Signaled(signo))
        assert.isBelow(ms, 2000)
      }
    }))

  it.scoped("signals to an exited process change nothing", () =>
    Effect.gen(function*() {
      const kernel = yield* Kernel
      const run = yield* startGuest({ bytes: fixture("exit"), argv: ["exit", "3"] })
      assert.deepStrictEqual(yield* run.exit, Exited(3))
      for (const signo of [9, 15, 19, 18]) yield* kernel.signal(run.tg, signo)
      assert.deepStrictEqual(yield* run.exit, Exited(3))
      assert.strictEqual(run.tg.state, "exited")
    }))

  it.scoped("proc_raise takes WASI's signal numbers: a fatal signal kills the guest, an ignored one returns 0, 0 and > 30 are EINVAL", () =>
    Effect.gen(function*() {
      const raise = (signo: number) => probe({ body: `(call $proc_raise (i32.const ${signo}))` })
      const term = yield* startGuest({ bytes: yield* raise(15) })
      assert.deepStrictEqual(yield* term.exit, Signaled(15))
      // WASI 16 is SIGCHLD (ignored); Linux 16, SIGSTKFLT, would have killed it.
      const chld = yield* startGuest({ bytes: yield* raise(16) })
      assert.deepStrictEqual(yield* chld.exit, Exited(0))
      // WASI 30 is SIGSYS (Linux 31).
      const sys = yield* startGuest({ bytes: yield* raise(30) })
      assert.deepStrictEqual(yield* sys.exit, Signaled(31))
      for (const bad of [0, 31, 255, -1]) {
        const r = yield* startGuest({ bytes: yield* raise(bad) })
        assert.deepStrictEqual(yield* r.exit, Exited(Errno.INVAL), `proc_raise(${bad})`)
      }
    }))

  it.scoped("a guest stopped while blocked in a call does not get its answer until SIGCONT", () =>
    Effect.gen(function*() {
      const kernel = yield* Kernel
      const bytes = yield* probe({
        data: [[0, new Uint8Array([16, 0, 0, 0, 6, 0, 0, 0])], [16, "after\n"], [100, clockSubscription(300)]],
        // After the sleep: a second of computing (no syscall), then the write.
        extra: `(func $spin (local $i i32)
          (local.set $i (i32.const 400000000))
          (loop $l (local.set $i (i32.sub (local.get $i) (i32.const 1))) (br_if $l (local.get $i))))`,
        body: `(block (result i32)
          (drop (call $poll_oneoff (i32.const 100) (i32.const 200) (i32.const 1) (i32.const 300)))
          (call $spin)
          (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))`
      })
      const run = yield* startGuest({ bytes })
      yield* eventually(() => run.tg.inKernel.current >= 0, "guest asleep in poll_oneoff")
      yield* kernel.signal(run.tg, 19)
      // The sleep ends while the guest is stopped: it must not run on (its thread uses no CPU).
      const before = (yield* kernel.usage(run.tg)).cpuNs
      yield* Effect.sleep("700 millis")
      const during = (yield* kernel.usage(run.tg)).cpuNs - before
      assert.isBelow(Number(during) / 1e6, 100, "CPU ms used while stopped")
      assert.strictEqual(run.stdout(), "")
      assert.strictEqual(run.tg.state, "stopped")
      yield* kernel.signal(run.tg, 18)
      assert.deepStrictEqual(yield* run.exit, Exited(0))
      assert.strictEqual(run.stdout(), "after\n")
    }))

  it.scoped("proc_raise(WASI SIGSTOP = 18) stops the guest until SIGCONT", () =>
    Effect.gen(function*() {
      const kernel = yield* Kernel
      const bytes = yield* probe({
        data: [[0, new Uint8Array([16, 0, 0, 0, 6, 0, 0, 0])], [16, "after\n"]],
        body: `(block (result i32)
          (drop (call $proc_raise (i32.const 18)))
          (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))`
      })
      const run = yield* startGuest({ bytes })
      yield* eventually(() => run.tg.state === "stopped", "guest stopped itself")
      yield* Effect.sleep("300 millis")
      assert.strictEqual(run.stdout(), "")
      yield* kernel.signal(run.tg, 18)
      assert.deepStrictEqual(yield* run.exit, Exited(0))
      assert.strictEqual(run.stdout(), "after\n")
    }))
})

// ---- a signal racing the end of a process -----------------------------------------------------

interface Gates {
  readonly readCalled: Deferred.Deferred<void>
  readonly eof: Deferred.Deferred<void>
  readonly closeStarted: Deferred.Deferred<void>
  readonly closeGate: Deferred.Deferred<void>
}

const makeGates: Effect.Effect<Gates> = Effect.all({
  readCalled: Deferred.make<void>(),
  eof: Deferred.make<void>(),
  closeStarted: Deferred.make<void>(),
  closeGate: Deferred.make<void>()
})

/**
 * A stdin whose reads block until `eof` and whose close (when the process's fd table is closed
 * on exit) blocks until `closeGate`: the window between "the guest has ended" and "the exit
 * status is published" is held open for as long as the test wants.
 */
const gatedStdin = (g: Gates): FileDescription => ({
  filetype: FileType.UNKNOWN,
  read: () => Deferred.succeed(g.readCalled, void 0).pipe(Effect.zipRight(Deferred.await(g.eof)), Effect.as(new Uint8Array(0))),
  write: () => Effect.fail(new SyscallError({ errno: Errno.BADF })),
  seek: () => Effect.fail(new SyscallError({ errno: Errno.SPIPE })),
  stat: Effect.fail(new SyscallError({ errno: Errno.BADF })),
  close: Deferred.succeed(g.closeStarted, void 0).pipe(Effect.zipRight(Deferred.await(g.closeGate)))
})

describe("a signal racing a process's exit", () => {
  it.live("a signal after the guest has exited does not rewrite its exit status", () =>
    Effect.gen(function*() {
      const kernel = yield* Kernel
      const g = yield* makeGates
      yield* Deferred.succeed(g.eof, void 0)
      const run = yield* startGuest({ bytes: fixture("exit"), argv: ["exit", "0"], stdin: gatedStdin(g) })
      yield* Effect.addFinalizer(() => Deferred.succeed(g.closeGate, void 0))
      // The guest has ended and its fds are being closed: it is a zombie, not a running process.
      yield* Deferred.await(g.closeStarted)
      yield* kernel.signal(run.tg, 15)
      yield* Deferred.succeed(g.closeGate, void 0)
      assert.deepStrictEqual(yield* run.exit, Exited(0))
    }).pipe(Effect.scoped, Effect.provide(Kernel.layer({ warmWorkers: 1 }))))

  it.live("a signal to a process that has just exited never reaches the next process on its worker", () =>
    Effect.gen(function*() {
      const kernel = yield* Kernel
      let arranged = false
      for (let attempt = 0; attempt < 4 && !arranged; attempt++) {
        const g = yield* makeGates
        // A: cat blocked reading stdin.
        const a = yield* startGuest({ bytes: fixture("cat"), argv: ["cat"], stdin: gatedStdin(g) })
        // Added after A's own finalizer, so it runs first: A's exit can complete on failure too.
        yield* Effect.addFinalizer(() => Deferred.succeed(g.closeGate, void 0))
        yield* Deferred.await(g.readCalled)
        // A's worker, noted while A runs: once A's guest has ended the worker is no longer A's.
        const aWorker = a.tg.worker
        yield* Effect.sleep("400 millis") // the pool has an idle worker again
        // D takes the idle worker, so the pool keeps A's worker when A's clean exit returns it...
        const d = yield* startGuest({ bytes: fixture("sleep"), argv: ["sleep", "60"] })
        // ...and B, started while A's exit is held open, gets that worker.
        yield* Deferred.succeed(g.eof, void 0)
        yield* Deferred.await(g.closeStarted)
        const b = yield* startGuest({ bytes: fixture("sleep"), argv: ["sleep", "60"] })
        yield* eventually(() => b.tg.worker !== undefined, "B has a worker")
        arranged = aWorker !== undefined && b.tg.worker === aWorker
        if (arranged) {
          yield* eventually(() => b.stdout() === "sleeping\n", "B started")
          yield* kernel.signal(a.tg, 15)
          yield* Effect.sleep("400 millis")
          assert.isFalse(yield* Deferred.isDone(b.tg.exitStatus), "signalling exited A killed B")
          assert.strictEqual(b.tg.state, "running")
        }
        yield* Deferred.succeed(g.closeGate, void 0)
        yield* a.exit
        for (const t of [b, d]) yield* kernel.signal(t.tg, 9).pipe(Effect.zipRight(t.exit))
      }
      assert.isTrue(arranged, "could not arrange for B to reuse A's worker")
    }).pipe(Effect.scoped, Effect.provide(Kernel.layer({ warmWorkers: 1 }))))
})
