/**
 * The syscall channel and running guests end to end: channel layout, exit codes, traps as
 * signals, argv/environ, the module cache, malformed modules, worker reuse, pid namespaces.
 */
import { assert, describe, it, layer } from "@effect/vitest"
import { Context, Deferred, Effect, Exit, Fiber, Layer, Scope } from "effect"
import {
  type GuestThread,
  InvalidModule,
  Kernel,
  ModuleCache,
  PidNamespace,
  type GuestPlatform,
  scriptedPlatform,
  type ThreadGroup
} from "../src/index.js"
import {
  ARG_COUNT,
  CHANNEL_BYTES,
  ChannelViews,
  DATA_OFFSET,
  DATA_SIZE,
  FAST_WRITE_FDS,
  FAST_WRITE_OFFSET,
  I64_SLOT_COUNT,
  I64_SLOT_OFFSET,
  Word
} from "../src/platform/channel.js"
import {
  eventually,
  Exited,
  failureOf,
  fixture,
  kernelLayer,
  probe,
  rootOf,
  runGuest,
  Signaled,
  startGuest,
  tempDir,
  timed,
  wat,
  watFixture
} from "./helpers.js"

describe("ChannelViews", () => {
  it("lays out control words, i64 slots, the fast-write table and the data area without overlap", () => {
    const c = ChannelViews.allocate()
    assert.strictEqual(c.buffer.byteLength, CHANNEL_BYTES)
    assert.strictEqual(CHANNEL_BYTES, DATA_OFFSET + DATA_SIZE)
    const regions = [
      { name: "words", offset: c.words.byteOffset, length: c.words.byteLength },
      { name: "i64", offset: c.i64.byteOffset, length: c.i64.byteLength },
      { name: "fastWrite", offset: c.fastWrite.byteOffset, length: c.fastWrite.byteLength },
      { name: "data", offset: c.data.byteOffset, length: c.data.byteLength }
    ]
    assert.deepStrictEqual(regions.map((r) => r.offset), [0, I64_SLOT_OFFSET, FAST_WRITE_OFFSET, DATA_OFFSET])
    assert.strictEqual(c.i64.length, I64_SLOT_COUNT)
    assert.strictEqual(c.fastWrite.length, FAST_WRITE_FDS)
    assert.strictEqual(c.data.length, DATA_SIZE)
    assert.strictEqual(c.dataView.byteOffset, DATA_OFFSET)
    assert.strictEqual(c.dataView.byteLength, DATA_SIZE)
    for (let i = 0; i < regions.length; i++) {
      const r = regions[i]!
      assert.isAtMost(r.offset + r.length, CHANNEL_BYTES, r.name)
      if (i + 1 < regions.length) assert.isAtMost(r.offset + r.length, regions[i + 1]!.offset, `${r.name} overlaps`)
    }
  })

  it("every control word and request argument fits in the words region, each at its own index", () => {
    const c = ChannelViews.allocate()
    const indices = Object.values(Word)
    assert.strictEqual(new Set(indices).size, indices.length)
    // No named word may fall inside the request arguments (ARG0 .. ARG0 + ARG_COUNT - 1).
    for (const i of indices) {
      assert.isBelow(i, c.words.length)
      if (i !== Word.ARG0) assert.isFalse(i > Word.ARG0 && i < Word.ARG0 + ARG_COUNT, `word ${i} overlaps the arguments`)
    }
    assert.isAtMost(Word.ARG0 + ARG_COUNT, c.words.length)
  })

  it("writes through one region are not seen in another, and both ends see each other's writes", () => {
    const a = ChannelViews.allocate()
    const b = new ChannelViews(a.buffer) // the worker's view of the same buffer
    a.words.fill(-1)
    a.i64.fill(-1n)
    a.fastWrite.fill(-1)
    a.data.fill(0x5a)
    b.words[Word.ARG0 + ARG_COUNT - 1] = 7
    b.i64[I64_SLOT_COUNT - 1] = 9n
    assert.strictEqual(a.words[Word.ARG0 + ARG_COUNT - 1], 7)
    assert.strictEqual(a.i64[I64_SLOT_COUNT - 1], 9n)
    assert.strictEqual(a.fastWrite[0], -1)
    assert.strictEqual(a.data[0], 0x5a)
    b.data[DATA_SIZE - 1] = 1
    assert.strictEqual(a.dataView.getUint8(DATA_SIZE - 1), 1)
    assert.strictEqual(a.fastWrite[FAST_WRITE_FDS - 1], -1)
  })
})

describe("ModuleCache", () => {
  it.live("compiles identical bytes once, even when asked concurrently", () =>
    Effect.gen(function*() {
      const cache = new ModuleCache()
      const bytes = fixture("exit")
      const modules = yield* Effect.all(
        Array.from({ length: 8 }, (_, i) => cache.acquire(`/p${i}`, i % 2 === 0 ? bytes : bytes.slice())),
        { concurrency: "unbounded" }
      )
      assert.strictEqual(cache.stats.modules, 1)
      for (const m of modules) assert.strictEqual(m.module, modules[0]!.module)
      yield* cache.acquire("/other", fixture("echo_args"))
      assert.strictEqual(cache.stats.modules, 2)
    }))

  /** A distinct module of about `kib` KiB (a data segment), for cache sizes. */
  const sized = (id: number, kib = 10) =>
    wat(`(module (memory (export "memory") 1) (data (i32.const 0) "${String(id).padStart(6, "0")}${"d".repeat(kib * 1024)}") (func (export "_start")))`)

  it.live("keeps at most maxBytes of modules no process uses, the least recently used evicted first", () =>
    Effect.gen(function*() {
      const modules = yield* Effect.forEach(Array.from({ length: 6 }, (_, i) => i), (i) => sized(i))
      const size = modules[0]!.length
      const cache = new ModuleCache(3 * size)
      const compiled: Array<WebAssembly.Module> = []
      for (const [i, bytes] of modules.entries()) {
        const held = yield* cache.acquire(`/m${i}`, bytes)
        held.release()
        compiled.push(held.module)
        assert.isAtMost(cache.stats.bytes, 3 * size)
      }
      assert.deepStrictEqual(cache.stats, { modules: 3, bytes: 3 * size, inUse: 0 })
      // m3..m5 are kept (the same compiled module comes back); m0 was evicted (compiled again).
      const again = (i: number) => Effect.map(cache.acquire(`/m${i}`, modules[i]!), (held) => (held.release(), held.module))
      assert.strictEqual(yield* again(5), compiled[5])
      assert.strictEqual(yield* again(3), compiled[3])
      assert.notStrictEqual(yield* again(0), compiled[0])
      // m0 came in as the most recent, m4 was the least recently used: out.
      assert.strictEqual(yield* again(3), compiled[3])
      assert.notStrictEqual(yield* again(4), compiled[4])
    }))

  it.live("an acquirer interrupted at any point leaves no compilation half-started: later acquires get the module, and nothing stays held", () =>
    Effect.gen(function*() {
      for (let round = 0; round < 60; round++) {
        const cache = new ModuleCache()
        const bytes = yield* sized(1000 + round, 64)
        const first = yield* Effect.fork(cache.acquire("/first", bytes))
        // Interrupted after `round % 30` scheduler turns: before, during or after its compilation.
        for (let i = 0; i < round % 30; i++) yield* Effect.yieldNow()
        yield* Fiber.interrupt(first)
        const later = yield* cache.acquire("/later", bytes).pipe(
          Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => new Error(`round ${round}: the module never came`) })
        )
        later.release()
        assert.strictEqual(cache.stats.inUse, 0, `round ${round}`)
        assert.strictEqual(cache.stats.modules, 1, `round ${round}`)
      }
    }))

  it.live("never evicts a module a process holds, however old; a release is counted once", () =>
    Effect.gen(function*() {
      const modules = yield* Effect.forEach(Array.from({ length: 8 }, (_, i) => i), (i) => sized(i))
      const cache = new ModuleCache(2 * modules[0]!.length)
      const held = yield* cache.acquire("/held", modules[0]!)
      const twice = yield* cache.acquire("/held", modules[0]!)
      for (const [i, bytes] of modules.entries()) if (i > 0) (yield* cache.acquire(`/m${i}`, bytes)).release()
      assert.strictEqual(cache.stats.inUse, 1)
      twice.release()
      twice.release()
      for (const [i, bytes] of modules.entries()) if (i > 0) (yield* cache.acquire(`/m${i}`, bytes)).release()
      const back = yield* cache.acquire("/held", modules[0]!)
      assert.strictEqual(back.module, held.module, "held all along: never recompiled")
      held.release()
      back.release()
      assert.deepStrictEqual(cache.stats.inUse, 0)
      assert.isAtMost(cache.stats.bytes, 2 * modules[0]!.length)
    }))

  it.live("rejects malformed modules and modules importing what the sandbox does not provide", () =>
    Effect.gen(function*() {
      const cache = new ModuleCache()
      const garbage = new Uint8Array(64)
      garbage.set([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00])
      for (let i = 8; i < garbage.length; i++) garbage[i] = (i * 151 + 7) & 0xff
      const imports = yield* wat(`(module (import "env" "foo" (func)) (memory (export "memory") 1) (func (export "_start")))`)
      const memoryImport = yield* wat(`(module (import "wasi_snapshot_preview1" "memory" (memory 1)) (func (export "_start")))`)
      const unknownWasi = yield* wat(`(module (import "wasi_snapshot_preview1" "path_chmod" (func)) (memory (export "memory") 1) (func (export "_start")))`)
      const noStart = yield* wat(`(module (memory (export "memory") 1))`)
      const noMemory = yield* wat(`(module (func (export "_start")))`)
      // A command's entry point takes and returns nothing; the engine would call anything.
      const startWithParam = yield* wat(`(module (memory (export "memory") 1) (func (export "_start") (param i32)))`)
      const startWithResult = yield* wat(`(module (memory (export "memory") 1) (func (export "_start") (result i32) (i32.const 7)))`)
      const startImported = yield* wat(`(module (import "wasi_snapshot_preview1" "sched_yield" (func $y (result i32)))
        (memory (export "memory") 1) (export "_start" (func $y)))`)
      // An import of a syscall with another type than the one declared would misread its arguments.
      const wrongImport = yield* wat(`(module (import "wasi_snapshot_preview1" "fd_write" (func (param i64 i32) (result i32)))
        (memory (export "memory") 1) (func (export "_start")))`)
      const procExitResult = yield* wat(`(module (import "wasi_snapshot_preview1" "proc_exit" (func (param i32) (result i32)))
        (memory (export "memory") 1) (func (export "_start")))`)
      const atLocalsLimit = yield* wat(`(module (memory (export "memory") 1)
        (func (export "_start") (local ${"i32 ".repeat(50_000)}) (loop)))`)
      const cases: Array<[string, Uint8Array, RegExp]> = [
        ["garbage", garbage, /./],
        ["elf", new Uint8Array([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]), /./],
        ["env.foo", imports, /env\.foo/],
        ["memory import", memoryImport, /memory/],
        ["unknown wasi function", unknownWasi, /path_chmod/],
        ["no _start", noStart, /_start/],
        ["no memory", noMemory, /memory/],
        ["_start (param i32)", startWithParam, /_start.*\(param i32\)/],
        ["_start (result i32)", startWithResult, /_start.*\(result i32\)/],
        ["_start an import (result i32)", startImported, /_start.*\(result i32\)/],
        ["fd_write (param i64 i32)", wrongImport, /fd_write as \(param i64 i32\) \(result i32\), not \(param i32 i32 i32 i32\) \(result i32\)/],
        ["proc_exit (result i32)", procExitResult, /proc_exit/],
        // Valid as given, but a preemption point's counter would be its 50,001st local.
        ["at V8's limit of locals", atLocalsLimit, /too close to V8's limits to be instrumented/]
      ]
      for (const [name, bytes, reason] of cases) {
        const error = yield* failureOf(cache.acquire(`/${name}`, bytes))
        assert.instanceOf(error, InvalidModule, name)
        assert.strictEqual(error!.path, `/${name}`)
        assert.match(error!.reason, reason, name)
      }
      // Failures are not cached.
      assert.strictEqual(cache.stats.modules, 0)
      // Entry points that take and return nothing pass, whatever else the module declares.
      const fine = yield* wat(`(module (type (func (param i64) (result f32))) (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
        (memory (export "memory") 1) (func $other (param f64) (result i64) (i64.const 1)) (func (export "_start")) (export "other" (func $other)))`)
      ;(yield* cache.acquire("/fine", fine)).release()
      ;(yield* cache.acquire("/exit", fixture("exit"))).release()
    }))
})

layer(kernelLayer, { excludeTestServices: true })("running guests", (it) => {
  it.effect("exit codes pass through: 0, 7, 123, and modulo 256", () =>
    Effect.gen(function*() {
      for (const code of [0, 7, 123, 255, 300]) {
        const r = yield* runGuest({ bytes: fixture("exit"), argv: ["exit", String(code)] })
        assert.deepStrictEqual(r.status, Exited(code & 0xff), `exit ${code}`)
      }
      const r = yield* runGuest({ bytes: yield* wat(watFixture("exit_code")) })
      assert.deepStrictEqual(r.status, Exited(7))
    }))

  it.effect("returning from _start is exit 0; hello writes to stdout", () =>
    Effect.gen(function*() {
      const r = yield* runGuest({ bytes: yield* wat(watFixture("hello")) })
      assert.deepStrictEqual(r.status, Exited(0))
      assert.strictEqual(r.stdout, "hello\n")
      assert.strictEqual(r.stderr, "")
    }))

  it.effect("traps end the process with the signal Linux would send", () =>
    Effect.gen(function*() {
      const cases: Array<[string, number]> = [
        ["trap_unreachable", 4],
        ["trap_oob", 11],
        ["trap_divzero", 8],
        ["trap_stack", 11]
      ]
      for (const [name, signal] of cases) {
        const r = yield* runGuest({ bytes: yield* wat(watFixture(name)) })
        assert.deepStrictEqual(r.status, Signaled(signal), name)
      }
      // INT_MIN / -1 is SIGFPE on Linux too.
      const overflow = yield* probe({ body: "(i32.div_s (i32.const 0x80000000) (i32.add (i32.const -1) (i32.load (i32.const 0))))" })
      assert.deepStrictEqual((yield* runGuest({ bytes: overflow })).status, Signaled(8))
    }))

  it.effect("a trap after output keeps the output", () =>
    Effect.gen(function*() {
      const bytes = yield* probe({
        data: [[0, new Uint8Array([16, 0, 0, 0, 3, 0, 0, 0])], [16, "ok\n"]],
        body: "(block (result i32) (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))) unreachable)"
      })
      const r = yield* runGuest({ bytes })
      assert.deepStrictEqual(r.status, Signaled(4))
      assert.strictEqual(r.stdout, "ok\n")
    }))

  it.effect("echo_args sees argv exactly", () =>
    Effect.gen(function*() {
      const argv = ["echo_args", "a b", "", "ünïcödé", "--flag=1", "x".repeat(5000)]
      const r = yield* runGuest({ bytes: fixture("echo_args"), argv })
      assert.deepStrictEqual(r.status, Exited(0))
      assert.strictEqual(r.stdout, argv.map((a, i) => `argv[${i}]=${a}\n`).join(""))
    }))

  it.effect("print_env prints exactly the env given, in order", () =>
    Effect.gen(function*() {
      const env = ["PATH=/bin:/usr/bin", "HOME=/root", "EMPTY=", "UTF8=ÿ€", "A=b=c"]
      const r = yield* runGuest({ bytes: fixture("print_env"), argv: ["print_env"], env })
      assert.deepStrictEqual(r.status, Exited(0))
      assert.strictEqual(r.stdout, env.map((e) => `${e}\n`).join(""))
      const none = yield* runGuest({ bytes: fixture("print_env"), argv: ["print_env"], env: [] })
      assert.strictEqual(none.stdout, "")
    }))

  it.effect("stdin reaches the guest through the sentry (cat)", () =>
    Effect.gen(function*() {
      const input = "line one\nline two\n" + "z".repeat(100_000)
      const r = yield* runGuest({ bytes: fixture("cat"), argv: ["cat"], stdin: input })
      assert.deepStrictEqual(r.status, Exited(0))
      assert.strictEqual(r.stdout, input)
    }))

  it.effect("the kernel's module cache compiles the same program once", () =>
    Effect.gen(function*() {
      const kernel = yield* Kernel
      const bytes = yield* probe({ body: "(i32.const 42)" })
      const before = kernel.modules.stats.modules
      for (let i = 0; i < 3; i++) {
        assert.deepStrictEqual((yield* runGuest({ bytes: bytes.slice() })).status, Exited(42))
      }
      assert.strictEqual(kernel.modules.stats.modules, before + 1)
    }))

  it.effect("a malformed module fails startProcess with InvalidModule and starts nothing", () =>
    Effect.gen(function*() {
      const kernel = yield* Kernel
      const garbage = new Uint8Array(200)
      garbage.set([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00])
      for (let i = 8; i < garbage.length; i++) garbage[i] = (i * 97 + 13) & 0xff
      const envFoo = yield* wat(`(module (import "env" "foo" (func)) (memory (export "memory") 1) (func (export "_start")))`)
      const before = (yield* kernel.processes).length
      for (const [path, bytes] of [["/garbage.wasm", garbage], ["/envfoo.wasm", envFoo]] as const) {
        const error = yield* failureOf(Effect.scoped(startGuest({ bytes, programPath: path })))
        assert.instanceOf(error, InvalidModule)
        assert.strictEqual((error as InvalidModule).path, path)
      }
      assert.match(((yield* failureOf(Effect.scoped(startGuest({ bytes: envFoo })))) as InvalidModule).reason, /env\.foo/)
      assert.strictEqual((yield* kernel.processes).length, before)
    }))

  it.effect("20 processes in a row all run (workers are reused or replaced)", () =>
    Effect.gen(function*() {
      const bytes = fixture("exit")
      const [statuses, ms] = yield* timed(
        Effect.forEach(Array.from({ length: 20 }, (_, i) => i), (i) =>
          Effect.map(runGuest({ bytes, argv: ["exit", String(i)] }), (r) => r.status))
      )
      assert.deepStrictEqual(statuses, Array.from({ length: 20 }, (_, i) => Exited(i)))
      assert.isBelow(ms, 15_000)
    }))

  it.effect("8 processes at once all run and exit with their own codes", () =>
    Effect.gen(function*() {
      const statuses = yield* Effect.forEach(
        Array.from({ length: 8 }, (_, i) => i + 1),
        (i) => Effect.map(runGuest({ bytes: fixture("exit"), argv: ["exit", String(i)] }), (r) => r.status),
        { concurrency: "unbounded" }
      )
      assert.deepStrictEqual(statuses, Array.from({ length: 8 }, (_, i) => Exited(i + 1)))
    }))

  it.effect("pids increase, processes lists unreaped groups, reap releases the pid", () =>
    Effect.gen(function*() {
      const kernel = yield* Kernel
      const a = yield* runGuest({ bytes: fixture("exit") })
      const b = yield* runGuest({ bytes: fixture("exit") })
      assert.isAbove(b.tg.rootPid, a.tg.rootPid)
      const listed = yield* kernel.processes
      assert.include(listed, a.tg)
      assert.include(listed, b.tg)
      assert.strictEqual(a.tg.state, "exited")
      yield* kernel.reap(a.tg)
      assert.notInclude(yield* kernel.processes, a.tg)
      assert.isUndefined(kernel.rootPidNamespace.get(a.tg.rootPid))
      yield* kernel.reap(b.tg)
    }))

  it.effect("a process in a child pid namespace is pid 1 there and has a root pid too", () =>
    Effect.gen(function*() {
      const kernel = yield* Kernel
      const child = new PidNamespace<ThreadGroup>(kernel.rootPidNamespace)
      const r = yield* runGuest({ bytes: fixture("exit"), pidNamespace: child })
      assert.deepStrictEqual(r.status, Exited(0))
      assert.strictEqual(r.tg.pid, 1)
      assert.strictEqual(child.get(1), r.tg)
      assert.strictEqual(kernel.rootPidNamespace.get(r.tg.rootPid), r.tg)
      assert.notStrictEqual(r.tg.rootPid, 1)
      yield* kernel.reap(r.tg)
      assert.isUndefined(child.get(1))
      assert.isUndefined(kernel.rootPidNamespace.get(r.tg.rootPid))
    }))
})

describe("worker reuse", () => {
  it.live("processes run one after another reuse the worker of the previous one", () =>
    Effect.gen(function*() {
      // Each guest lives 150 ms (a poll_oneoff), long enough for the pool to have topped up.
      const sub = new Uint8Array(48)
      const v = new DataView(sub.buffer)
      v.setUint32(16, 1, true)
      v.setBigUint64(24, 150_000_000n, true)
      const bytes = yield* probe({ data: [[100, sub]], body: "(call $poll_oneoff (i32.const 100) (i32.const 200) (i32.const 1) (i32.const 300))" })
      const threads: Array<GuestThread> = []
      for (let i = 0; i < 6; i++) {
        yield* Effect.scoped(
          Effect.gen(function*() {
            const run = yield* startGuest({ bytes })
            yield* eventually(() => run.tg.worker !== undefined || run.tg.state === "exited", "worker attached")
            if (run.tg.worker) threads.push(run.tg.worker)
            assert.deepStrictEqual(yield* run.exit, Exited(0))
          })
        )
      }
      assert.lengthOf(threads, 6)
      assert.isAtMost(new Set(threads).size, 2, `${new Set(threads).size} threads used`)
    }).pipe(Effect.provide(Kernel.layer({ warmWorkers: 1 }))))
})

describe("kernel scope", () => {
  it.scopedLive("closing the kernel's scope kills running guests, terminates their workers and completes their exit", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(Kernel.layer({ warmWorkers: 1 }), scope)
      // The guest's files live in the test's scope; only the kernel's scope is closed here.
      const run = yield* startGuest({ bytes: fixture("spin"), argv: ["spin"] }).pipe(Effect.provide(context))
      yield* eventually(() => run.stdout() === "spinning\n", "spin started")
      const worker = run.tg.worker
      assert.isDefined(worker)
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(yield* run.exit, Signaled(9))
      yield* eventually(() => !worker!.isAlive, "worker terminated")
    }))

  // A teardown that waited for the pool's pending retirement of a surplus idle worker would take
  // its full 2 s (the bug this guards against made every `runsc do` exit 2 s late).
  it.scopedLive("closing the scope does not wait for a surplus idle worker's retirement (a one-shot sandbox exits at once)", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(
        Kernel.layer({ warmWorkers: 0, prestartWorkers: 1, platform: scriptedPlatform }),
        scope
      )
      const kernel = Context.get(context, Kernel)
      const io = yield* tempDir()
      const root = yield* rootOf(io)
      const tg = yield* kernel.startProcess({
        argv: ["exit", "0"],
        env: [],
        root,
        cwd: root,
        programPath: "/exit",
        programBytes: fixture("exit"),
        stdio: []
      })
      assert.deepStrictEqual(yield* Deferred.await(tg.exitStatus), Exited(0))
      // The worker went back to a pool that keeps none idle: its retirement is now pending.
      yield* Effect.yieldNow()
      assert.strictEqual((yield* kernel.workerStats).idle, 1)
      yield* Scope.close(scope, Exit.void).pipe(
        Effect.timeoutFail({ duration: "1 second", onTimeout: () => new Error("teardown waited for the retirement") })
      )
    }))

  // A worker whose script cannot load (a broken install) used to make every process start wait
  // forever: the pool took the failed start for a terminated one and started another.
  it.scopedLive("a worker thread that cannot start ends the process as killed, saying why, instead of a start that never ends", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const broken: GuestPlatform = { spawn: () => ({ ready: Effect.dieMessage("its script threw"), kill: Effect.void }) }
      const context = yield* Layer.buildWithScope(Kernel.layer({ warmWorkers: 0, prestartWorkers: 0, platform: broken }), scope)
      const kernel = Context.get(context, Kernel)
      const root = yield* rootOf(yield* tempDir())
      const tg = yield* kernel.startProcess({
        argv: ["exit", "0"],
        env: [],
        root,
        cwd: root,
        programPath: "/exit",
        programBytes: fixture("exit"),
        stdio: []
      })
      const status = yield* Deferred.await(tg.exitStatus).pipe(
        Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => new Error("the process never ended") })
      )
      assert.deepStrictEqual(status, Signaled(9))
      assert.match(tg.fault ?? "", /no worker thread: .*its script threw/)
      yield* Scope.close(scope, Exit.void)
    }))
})
