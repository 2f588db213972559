/**
 * File I/O semantics through the sentry (positional reads and writes, seeking, large offsets)
 * and poll_oneoff clocks (relative, absolute, several subscriptions, with fds).
 */
import { Errno, type ExitStatus } from "@runsc/abi"
import { assert, layer } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { Kernel, makePipe } from "../src/index.js"
import { POLL_WAIT_HEAP } from "../src/syscalls/poll.js"
import { Exited, fixture, kernelLayer, probe, rootOf, runGuest, tempDir, timed } from "./helpers.js"

const iovec = (buf: number, len: number) => {
  const b = new Uint8Array(8)
  const v = new DataView(b.buffer)
  v.setUint32(0, buf, true)
  v.setUint32(4, len, true)
  return b
}

/** A clock subscription: `ms` from now, or at `abs` ns when given (with ABSTIME). */
const clockSub = (o: { userdata: number; clock?: number; ms?: number; absNs?: bigint }) => {
  const b = new Uint8Array(48)
  const v = new DataView(b.buffer)
  v.setBigUint64(0, BigInt(o.userdata), true)
  v.setUint8(8, 0)
  v.setUint32(16, o.clock ?? 1, true)
  v.setBigUint64(24, o.absNs ?? BigInt(o.ms ?? 0) * 1_000_000n, true)
  v.setUint16(40, o.absNs === undefined ? 0 : 1, true)
  return b
}

const fdSub = (userdata: number, type: 1 | 2, fd: number) => {
  const b = new Uint8Array(48)
  const v = new DataView(b.buffer)
  v.setBigUint64(0, BigInt(userdata), true)
  v.setUint8(8, type)
  v.setUint32(16, fd, true)
  return b
}

layer(kernelLayer, { excludeTestServices: true })("stdio regular files", (it) => {
  const STDIN = "0123456789"

  it.effect("fd_pread on a regular-file stdin reads at the offset and does not move the file position", () =>
    Effect.gen(function*() {
      const bytes = yield* probe({
        data: [[0, iovec(100, 4)], [16, iovec(104, 4)], [32, iovec(100, 8)]],
        extra: `
  (func $run (result i32) (local $e i32)
    (local.set $e (call $fd_pread (i32.const 0) (i32.const 0) (i32.const 1) (i64.const 6) (i32.const 8)))
    (if (local.get $e) (then (return (local.get $e))))
    (local.set $e (call $fd_read (i32.const 0) (i32.const 16) (i32.const 1) (i32.const 24)))
    (if (local.get $e) (then (return (local.get $e))))
    (call $fd_write (i32.const 1) (i32.const 32) (i32.const 1) (i32.const 40)))`,
        body: "(call $run)"
      })
      const r = yield* runGuest({ bytes, stdin: STDIN })
      assert.deepStrictEqual(r.status, Exited(0))
      assert.strictEqual(r.stdout, "67890123")
    }))

  it.effect("fd_pwrite on a regular-file stdout writes at the offset", () =>
    Effect.gen(function*() {
      const bytes = yield* probe({
        data: [[0, iovec(100, 12)], [16, iovec(200, 5)], [100, "hello world\n"], [200, "HELLO"]],
        extra: `
  (func $run (result i32) (local $e i32)
    (local.set $e (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (if (local.get $e) (then (return (local.get $e))))
    (call $fd_pwrite (i32.const 1) (i32.const 16) (i32.const 1) (i64.const 0) (i32.const 8)))`,
        body: "(call $run)"
      })
      const r = yield* runGuest({ bytes })
      assert.deepStrictEqual(r.status, Exited(0))
      assert.strictEqual(r.stdout, "HELLO world\n")
    }))

  // Host stdio keeps the host fd's own offset (the sandbox process may share it with others,
  // e.g. `> log 2>&1`), and Node exposes no lseek to read or move it: seeking host stdio is
  // refused with ESPIPE, as for a pipe, while pread/pwrite work at explicit offsets.
  it.effect("fd_seek and fd_tell on a regular-file stdin fail with ESPIPE and move nothing", () =>
    Effect.gen(function*() {
      const bytes = yield* probe({
        data: [[16, iovec(100, 5)]],
        extra: `
  (func $run (result i32) (local $e i32)
    (local.set $e (call $fd_seek (i32.const 0) (i64.const 5) (i32.const 0) (i32.const 0)))
    (if (i32.ne (local.get $e) (i32.const ${Errno.SPIPE})) (then (return (i32.const 200))))
    (local.set $e (call $fd_tell (i32.const 0) (i32.const 0)))
    (if (i32.ne (local.get $e) (i32.const ${Errno.SPIPE})) (then (return (i32.const 201))))
    (local.set $e (call $fd_read (i32.const 0) (i32.const 16) (i32.const 1) (i32.const 24)))
    (if (local.get $e) (then (return (local.get $e))))
    (i32.store (i32.const 20) (i32.load (i32.const 24)))
    (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 8)))`,
        body: "(call $run)"
      })
      const r = yield* runGuest({ bytes, stdin: STDIN })
      assert.deepStrictEqual(r.status, Exited(0))
      assert.strictEqual(r.stdout, "01234")
    }))
})

layer(kernelLayer, { excludeTestServices: true })("files of the root", (it) => {
  const withData = Effect.gen(function*() {
    const dir = yield* tempDir()
    Fs.writeFileSync(Path.join(dir, "data.txt"), "abcdefghij")
    return yield* rootOf(dir)
  })

  /** Opens data.txt (fd 4), then runs `rest` (an i32 expression); exits with its errno. */
  const onData = (rest: string) =>
    probe({
      data: [[1024, "data.txt"], [16, iovec(100, 4)]],
      extra: `
  (func $run (result i32) (local $e i32)
    (local.set $e (call $path_open (i32.const 3) (i32.const 0) (i32.const 1024) (i32.const 8) (i32.const 0) (i64.const 0x200026) (i64.const 0) (i32.const 0) (i32.const 0)))
    (if (local.get $e) (then (return (local.get $e))))
    ${rest})`,
      body: "(call $run)"
    })

  it.scoped("fd_pread past the end of a file returns 0 bytes and leaves the position alone, also beyond 2^53", () =>
    Effect.gen(function*() {
      const root = yield* withData
      for (const offset of [10n, 1000n, 1n << 53n, 1n << 60n]) {
        // pread 4 bytes at `offset` (exit code: bytes read), then read 4 at the file position
        // (still 0) and write them out.
        const bytes = yield* onData(`
    (local.set $e (call $fd_pread (i32.const 4) (i32.const 16) (i32.const 1) (i64.const ${offset}) (i32.const 8)))
    (if (local.get $e) (then (return (i32.add (i32.const 100) (local.get $e)))))
    (local.set $e (i32.load (i32.const 8)))
    (drop (call $fd_read (i32.const 4) (i32.const 16) (i32.const 1) (i32.const 24)))
    (i32.store (i32.const 20) (i32.load (i32.const 24)))
    (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))
    (local.get $e)`)
        const r = yield* runGuest({ bytes, root })
        assert.deepStrictEqual(r.status, Exited(0), `pread at ${offset} read ${JSON.stringify(r.status)} bytes`)
        assert.strictEqual(r.stdout, "abcd", `the file position moved after a pread at ${offset}`)
      }
    }))

  it.scoped("fd_pread reads at the offset; fd_seek validates whence and negative results; fd_filestat_get sizes", () =>
    Effect.gen(function*() {
      const root = yield* withData
      const pread = yield* onData(`
    (local.set $e (call $fd_pread (i32.const 4) (i32.const 16) (i32.const 1) (i64.const 3) (i32.const 8)))
    (if (local.get $e) (then (return (local.get $e))))
    (i32.store (i32.const 20) (i32.load (i32.const 8)))
    (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 8))`)
      const r = yield* runGuest({ bytes: pread, root })
      assert.deepStrictEqual(r.status, Exited(0))
      assert.strictEqual(r.stdout, "defg")
      const badWhence = yield* onData("(call $fd_seek (i32.const 4) (i64.const 0) (i32.const 3) (i32.const 0))")
      assert.deepStrictEqual((yield* runGuest({ bytes: badWhence, root })).status, Exited(Errno.INVAL))
      const negative = yield* onData("(call $fd_seek (i32.const 4) (i64.const -11) (i32.const 2) (i32.const 0))")
      assert.deepStrictEqual((yield* runGuest({ bytes: negative, root })).status, Exited(Errno.INVAL))
      const fromEnd = yield* onData(`
    (local.set $e (call $fd_seek (i32.const 4) (i64.const -2) (i32.const 2) (i32.const 0)))
    (if (local.get $e) (then (return (local.get $e))))
    (i32.wrap_i64 (i64.load (i32.const 0)))`)
      assert.deepStrictEqual((yield* runGuest({ bytes: fromEnd, root })).status, Exited(8))
      const size = yield* onData(`
    (local.set $e (call $fd_filestat_get (i32.const 4) (i32.const 200)))
    (if (local.get $e) (then (return (local.get $e))))
    (i32.add (i32.wrap_i64 (i64.load (i32.const 232))) (i32.mul (i32.load8_u (i32.const 216)) (i32.const 10)))`)
      assert.deepStrictEqual((yield* runGuest({ bytes: size, root })).status, Exited(4 * 10 + 10))
      const write = yield* onData("(call $fd_write (i32.const 4) (i32.const 16) (i32.const 1) (i32.const 8))")
      assert.deepStrictEqual((yield* runGuest({ bytes: write, root })).status, Exited(Errno.NOTCAPABLE))
    }))

  it.scoped("read_file reads a file larger than the channel's data area", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      Fs.writeFileSync(Path.join(dir, "big.bin"), Buffer.alloc(1_000_003, 7))
      const r = yield* runGuest({ bytes: fixture("read_file"), argv: ["read_file", "/big.bin"], root: yield* rootOf(dir) })
      assert.deepStrictEqual(r.status, Exited(0), r.stderr)
      assert.strictEqual(r.stdout, "1000003\n")
    }))
})

layer(kernelLayer, { excludeTestServices: true })("poll_oneoff clocks", (it) => {
  it.effect("sleep 1 takes at least 1 s and well under 3 s", () =>
    Effect.gen(function*() {
      const [r, ms] = yield* timed(runGuest({ bytes: fixture("sleep"), argv: ["sleep", "1"] }))
      assert.deepStrictEqual(r.status, Exited(0))
      assert.strictEqual(r.stdout, "sleeping\nwoke\n")
      assert.isAtLeast(ms, 1000)
      assert.isBelow(ms, 3000)
    }))

  /** The guest measures its own poll with the monotonic clock; exits with elapsed / 10 ms. */
  const measured = (subs: ReadonlyArray<Uint8Array>, before = "") =>
    probe({
      data: subs.map((s, i) => [1024 + i * 48, s] as const),
      extra: `
  (func $run (result i32) (local $e i32) (local $t0 i64)
    (drop (call $clock_time_get (i32.const 1) (i64.const 0) (i32.const 0)))
    (local.set $t0 (i64.load (i32.const 0)))
    ${before}
    (local.set $e (call $poll_oneoff (i32.const 1024) (i32.const 4096) (i32.const ${subs.length}) (i32.const 8)))
    (if (local.get $e) (then (return (i32.add (i32.const 200) (local.get $e)))))
    (drop (call $clock_time_get (i32.const 1) (i64.const 0) (i32.const 0)))
    (i32.wrap_i64 (i64.div_u (i64.sub (i64.load (i32.const 0)) (local.get $t0)) (i64.const 10000000))))`,
      body: "(call $run)"
    })

  const elapsedTicks = (r: { status: ExitStatus }): number =>
    r.status._tag === "Exited" ? r.status.code : assert.fail(`guest ended with ${JSON.stringify(r.status)}`)

  it.effect("a relative monotonic clock waits its timeout", () =>
    Effect.gen(function*() {
      const ticks = elapsedTicks(yield* runGuest({ bytes: yield* measured([clockSub({ userdata: 1, ms: 300 })]) }))
      assert.isAtLeast(ticks, 29)
      assert.isBelow(ticks, 150)
    }))

  it.effect("an absolute monotonic clock waits until that time", () =>
    Effect.gen(function*() {
      // The subscription's timeout is filled in by the guest: t0 + 300 ms.
      const bytes = yield* measured(
        [clockSub({ userdata: 1, absNs: 0n })],
        "(i64.store (i32.const 1048) (i64.add (local.get $t0) (i64.const 300000000)))"
      )
      const ticks = elapsedTicks(yield* runGuest({ bytes }))
      assert.isAtLeast(ticks, 29)
      assert.isBelow(ticks, 150)
    }))

  it.effect("an absolute realtime clock waits until that wall-clock time; one in the past fires at once", () =>
    Effect.gen(function*() {
      const future = yield* probe({
        data: [[1024, clockSub({ userdata: 1, clock: 0, absNs: 0n })]],
        extra: `
  (func $run (result i32) (local $e i32) (local $t0 i64)
    (drop (call $clock_time_get (i32.const 0) (i64.const 0) (i32.const 0)))
    (local.set $t0 (i64.load (i32.const 0)))
    (i64.store (i32.const 1048) (i64.add (local.get $t0) (i64.const 300000000)))
    (local.set $e (call $poll_oneoff (i32.const 1024) (i32.const 4096) (i32.const 1) (i32.const 8)))
    (if (local.get $e) (then (return (i32.add (i32.const 200) (local.get $e)))))
    (drop (call $clock_time_get (i32.const 0) (i64.const 0) (i32.const 0)))
    (i32.wrap_i64 (i64.div_u (i64.sub (i64.load (i32.const 0)) (local.get $t0)) (i64.const 10000000))))`,
        body: "(call $run)"
      })
      const ticks = elapsedTicks(yield* runGuest({ bytes: future }))
      assert.isAtLeast(ticks, 25) // realtime in the worker and in the sentry may differ by a little
      assert.isBelow(ticks, 150)
      const past = elapsedTicks(yield* runGuest({ bytes: yield* measured([clockSub({ userdata: 1, clock: 0, absNs: 1n })]) }))
      assert.isBelow(past, 20)
    }))

  it.effect("several clocks: only the soonest fires, with its userdata", () =>
    Effect.gen(function*() {
      const bytes = yield* probe({
        data: [[1024, clockSub({ userdata: 5, ms: 5000 })], [1072, clockSub({ userdata: 7, ms: 100 })], [1120, clockSub({ userdata: 9, ms: 60_000 })]],
        extra: `
  (func $run (result i32) (local $e i32)
    (local.set $e (call $poll_oneoff (i32.const 1024) (i32.const 4096) (i32.const 3) (i32.const 8)))
    (if (local.get $e) (then (return (i32.add (i32.const 200) (local.get $e)))))
    ;; nevents * 100 + userdata of event 0 (+ its error * 10)
    (i32.add (i32.mul (i32.load (i32.const 8)) (i32.const 100))
      (i32.add (i32.wrap_i64 (i64.load (i32.const 4096))) (i32.mul (i32.load16_u (i32.const 4104)) (i32.const 10)))))`,
        body: "(call $run)"
      })
      const [r, ms] = yield* timed(runGuest({ bytes }))
      assert.deepStrictEqual(r.status, Exited(107))
      assert.isBelow(ms, 3000)
    }))

  it.effect("an fd subscription that is ready returns at once, before any clock", () =>
    Effect.gen(function*() {
      const bytes = yield* probe({
        data: [[1024, clockSub({ userdata: 5, ms: 60_000 })], [1072, fdSub(3, 2, 1)]],
        extra: `
  (func $run (result i32) (local $e i32)
    (local.set $e (call $poll_oneoff (i32.const 1024) (i32.const 4096) (i32.const 2) (i32.const 8)))
    (if (local.get $e) (then (return (i32.add (i32.const 200) (local.get $e)))))
    ;; nevents * 100 + userdata * 10 + type
    (i32.add (i32.mul (i32.load (i32.const 8)) (i32.const 100))
      (i32.add (i32.mul (i32.wrap_i64 (i64.load (i32.const 4096))) (i32.const 10)) (i32.load8_u (i32.const 4106)))))`,
        body: "(call $run)"
      })
      const [r, ms] = yield* timed(runGuest({ bytes }))
      assert.deepStrictEqual(r.status, Exited(132))
      assert.isBelow(ms, 3000)
    }))
})

/** A probe that polls `count` FD_READ subscriptions of its fd 0 and a 300 ms clock; exits with 200 + errno, or the userdata of its first event. */
const pollMany = (count: number) =>
  probe({
    data: [[1024, clockSub({ userdata: 7, ms: 300 })], ...Array.from({ length: count }, (_, i) => [1072 + i * 48, fdSub(100 + i, 1, 0)] as const)],
    extra: `
  (func $run (result i32) (local $e i32)
    (local.set $e (call $poll_oneoff (i32.const 1024) (i32.const 200000) (i32.const ${count + 1}) (i32.const 8)))
    (if (local.get $e) (then (return (i32.add (i32.const 200) (local.get $e)))))
    (i32.wrap_i64 (i64.load (i32.const 200000))))`,
    body: "(call $run)",
    pages: 8
  })

layer(Kernel.layer({ warmWorkers: 1, heapShare: 1024 * 1024 }), { excludeTestServices: true })("poll_oneoff waits against the heap share", (it) => {
  it.effect("2,000 subscriptions of one pipe wait once, charged one wait's heap until the clock fires", () =>
    Effect.gen(function*() {
      const kernel = yield* Kernel
      const pipe = makePipe(1n)
      const before = kernel.memory.heapUsed
      const run = yield* Effect.fork(runGuest({ bytes: yield* pollMany(2000), stdin: pipe.read }))
      yield* Effect.sleep("150 millis")
      assert.strictEqual(kernel.memory.heapUsed - before, POLL_WAIT_HEAP, "one description watched")
      const r = yield* Fiber.join(run)
      assert.deepStrictEqual(r.status, Exited(7), "the clock fired")
      assert.strictEqual(kernel.memory.heapUsed, before)
    }))
})

layer(Kernel.layer({ warmWorkers: 1, heapShare: POLL_WAIT_HEAP - 1 }), { excludeTestServices: true })("poll_oneoff past the heap share", (it) => {
  it.effect("a poll that must wait and cannot be charged fails ENOMEM", () =>
    Effect.gen(function*() {
      const r = yield* runGuest({ bytes: yield* pollMany(1), stdin: makePipe(1n).read })
      assert.deepStrictEqual(r.status, Exited(200 + Errno.NOMEM))
    }))
})
