/**
 * Bad guest input never crashes the sentry (invariant 6): out-of-bounds pointers (EFAULT),
 * bad fds (EBADF), huge lengths, invalid UTF-8 (EILSEQ), malformed poll requests (EINVAL) —
 * each probe exits with the errno it got. Also a fuzz property: random arguments to every
 * syscall. Afterwards no handler defect was logged and the kernel still runs guests.
 */
import { Errno, FileType } from "@runsc/abi"
import { assert, describe, it, layer } from "@effect/vitest"
import { Effect, FastCheck, Logger } from "effect"
import type { FileDescription } from "../src/index.js"
import { Exited, fixture, kernelLayer, probe, probeText, processSignatures, runGuest, wasiSignatures, wat } from "./helpers.js"

/** A logger layer collecting lines into `into` (a handler defect logs "sentry bug"). */
const captureLogsInto = (into: Array<string>) =>
  Logger.replace(
    Logger.defaultLogger,
    Logger.make(({ logLevel, message }) => {
      into.push(`${logLevel.label} ${Array.isArray(message) ? message.join(" ") : String(message)}`)
    })
  )
const logged: Array<string> = []
const captureLogs = captureLogsInto(logged)

const OOB = "0xfffffff0"
const iovec = (buf: number, len: number) => {
  const b = new Uint8Array(8)
  const v = new DataView(b.buffer)
  v.setUint32(0, buf, true)
  v.setUint32(4, len >>> 0, true)
  return b
}

interface Case {
  readonly name: string
  readonly body: string
  readonly expected: number | ReadonlyArray<number>
  readonly data?: ReadonlyArray<readonly [number, Uint8Array | string]>
  readonly pages?: number
  readonly extra?: string
}

/** Reads the u16 `error` of the first event written at 200 (poll_oneoff out buffer). */
const pollEventError = (sub: Uint8Array): Omit<Case, "name" | "expected"> => ({
  data: [[100, sub]],
  extra: `
  (func $run (result i32) (local $e i32)
    (local.set $e (call $poll_oneoff (i32.const 100) (i32.const 200) (i32.const 1) (i32.const 300)))
    (if (local.get $e) (then (return (i32.add (i32.const 1000) (local.get $e)))))
    (if (i32.ne (i32.load (i32.const 300)) (i32.const 1)) (then (return (i32.const 999))))
    (i32.load16_u (i32.const 208)))`,
  body: "(call $run)"
})

const subscription = (tag: number, fill: (v: DataView) => void = () => {}) => {
  const b = new Uint8Array(48)
  const v = new DataView(b.buffer)
  v.setBigUint64(0, 7n, true)
  v.setUint8(8, tag)
  fill(v)
  return b
}

const cases: ReadonlyArray<Case> = [
  // fd_write
  { name: "fd_write: iovec array out of bounds", body: `(call $fd_write (i32.const 1) (i32.const ${OOB}) (i32.const 1) (i32.const 8))`, expected: Errno.FAULT },
  { name: "fd_write: iovec array past the end", body: "(call $fd_write (i32.const 1) (i32.const 65532) (i32.const 1) (i32.const 8))", expected: Errno.FAULT },
  { name: "fd_write: huge iovec count", body: "(call $fd_write (i32.const 1) (i32.const 0) (i32.const 0x10000000) (i32.const 8))", expected: Errno.FAULT },
  { name: "fd_write: buffer out of bounds", data: [[0, iovec(0xfffffff0, 4)]], body: "(call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))", expected: Errno.FAULT },
  { name: "fd_write: huge length", data: [[0, iovec(16, 0x7fffffff)]], body: "(call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))", expected: Errno.FAULT },
  { name: "fd_write: pointer + length wraps around 2^32", data: [[0, iovec(0xffffffff, 2)]], body: "(call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))", expected: Errno.FAULT },
  { name: "fd_write: nwritten out of bounds", data: [[0, iovec(16, 1)]], body: "(call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 65533))", expected: Errno.FAULT },
  { name: "fd_write: bad fd 99", data: [[0, iovec(16, 1)]], body: "(call $fd_write (i32.const 99) (i32.const 0) (i32.const 1) (i32.const 8))", expected: Errno.BADF },
  { name: "fd_write: bad fd -1", data: [[0, iovec(16, 1)]], body: "(call $fd_write (i32.const -1) (i32.const 0) (i32.const 1) (i32.const 8))", expected: Errno.BADF },
  { name: "fd_write: fd 31 (edge of the fast-write table)", data: [[0, iovec(16, 1)]], body: "(call $fd_write (i32.const 31) (i32.const 0) (i32.const 1) (i32.const 8))", expected: Errno.BADF },
  { name: "fd_write: fd 4096", data: [[0, iovec(16, 1)]], body: "(call $fd_write (i32.const 4096) (i32.const 0) (i32.const 1) (i32.const 8))", expected: Errno.BADF },
  { name: "fd_write: to the preopened directory", data: [[0, iovec(16, 1)]], body: "(call $fd_write (i32.const 3) (i32.const 0) (i32.const 1) (i32.const 8))", expected: [Errno.BADF, Errno.NOTCAPABLE, Errno.ISDIR] },
  { name: "fd_write: to a closed stdout", data: [[0, iovec(16, 1)]], body: "(block (result i32) (drop (call $fd_close (i32.const 1))) (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))", expected: Errno.BADF },
  { name: "fd_write: after dropping FD_WRITE from stdout (no fast-path bypass)", data: [[0, iovec(16, 1)]], body: "(block (result i32) (drop (call $fd_fdstat_set_rights (i32.const 1) (i64.const 2) (i64.const 0))) (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))", expected: Errno.NOTCAPABLE },
  { name: "fd_write: to stdout renumbered onto by the directory", data: [[0, iovec(16, 1)]], body: "(block (result i32) (drop (call $fd_renumber (i32.const 3) (i32.const 1))) (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))", expected: [Errno.BADF, Errno.NOTCAPABLE, Errno.ISDIR] },
  // fd_read / fd_pread
  { name: "fd_read: bad fd", data: [[0, iovec(16, 1)]], body: "(call $fd_read (i32.const 77) (i32.const 0) (i32.const 1) (i32.const 8))", expected: Errno.BADF },
  { name: "fd_read: iovecs out of bounds", body: `(call $fd_read (i32.const 0) (i32.const ${OOB}) (i32.const 1) (i32.const 8))`, expected: Errno.FAULT },
  { name: "fd_read: buffer out of bounds", data: [[0, iovec(65000, 1000)]], body: "(call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8))", expected: Errno.FAULT },
  { name: "fd_read: nread out of bounds", data: [[0, iovec(16, 1)]], body: `(call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const ${OOB}))`, expected: Errno.FAULT },
  { name: "fd_read: from the directory", data: [[0, iovec(16, 1)]], body: "(call $fd_read (i32.const 3) (i32.const 0) (i32.const 1) (i32.const 8))", expected: [Errno.BADF, Errno.NOTCAPABLE, Errno.ISDIR] },
  { name: "fd_pread: negative offset", data: [[0, iovec(16, 1)]], body: "(call $fd_pread (i32.const 0) (i32.const 0) (i32.const 1) (i64.const -1) (i32.const 8))", expected: Errno.INVAL },
  // paths
  { name: "path_open: path out of bounds", body: `(call $path_open (i32.const 3) (i32.const 0) (i32.const ${OOB}) (i32.const 4) (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 0))`, expected: Errno.FAULT },
  { name: "path_open: huge path length", body: "(call $path_open (i32.const 3) (i32.const 0) (i32.const 16) (i32.const 0x7fffffff) (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 0))", expected: Errno.FAULT },
  { name: "path_open: path longer than the channel (in bounds)", pages: 5, body: "(call $path_open (i32.const 3) (i32.const 0) (i32.const 16) (i32.const 300000) (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 0))", expected: Errno.NAMETOOLONG },
  { name: "path_open: path longer than PATH_MAX", data: [[16, "a/".repeat(3000)]], body: "(call $path_open (i32.const 3) (i32.const 0) (i32.const 16) (i32.const 6000) (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 0))", expected: Errno.NAMETOOLONG },
  { name: "path_open: fd out pointer out of bounds", data: [[16, "stdin"]], body: `(call $path_open (i32.const 3) (i32.const 0) (i32.const 16) (i32.const 5) (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const ${OOB}))`, expected: Errno.FAULT },
  { name: "path_open: invalid UTF-8", data: [[16, new Uint8Array([0xc3, 0x28])]], body: "(call $path_open (i32.const 3) (i32.const 0) (i32.const 16) (i32.const 2) (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 0))", expected: Errno.ILSEQ },
  { name: "path_open: lone surrogate encoded in UTF-8", data: [[16, new Uint8Array([0xed, 0xa0, 0x80])]], body: "(call $path_open (i32.const 3) (i32.const 0) (i32.const 16) (i32.const 3) (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 0))", expected: Errno.ILSEQ },
  { name: "path_open: dirfd is a stream", data: [[16, "stdin"]], body: "(call $path_open (i32.const 0) (i32.const 0) (i32.const 16) (i32.const 5) (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 0))", expected: [Errno.NOTDIR, Errno.NOTCAPABLE] },
  { name: "path_open: bad dirfd", data: [[16, "stdin"]], body: "(call $path_open (i32.const 55) (i32.const 0) (i32.const 16) (i32.const 5) (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 0))", expected: Errno.BADF },
  { name: "path_open: rights beyond the directory's", data: [[16, "stdin"]], body: "(call $path_open (i32.const 3) (i32.const 0) (i32.const 16) (i32.const 5) (i32.const 0) (i64.const -1) (i64.const 0) (i32.const 0) (i32.const 0))", expected: Errno.NOTCAPABLE },
  { name: "path_filestat_get: invalid UTF-8", data: [[16, new Uint8Array([0xff])]], body: "(call $path_filestat_get (i32.const 3) (i32.const 0) (i32.const 16) (i32.const 1) (i32.const 1024))", expected: Errno.ILSEQ },
  { name: "path_filestat_get: stat buffer out of bounds", data: [[16, "stdin"]], body: "(call $path_filestat_get (i32.const 3) (i32.const 0) (i32.const 16) (i32.const 5) (i32.const 65500))", expected: Errno.FAULT },
  { name: "path_readlink: not a symlink", data: [[16, "stdin"]], body: "(call $path_readlink (i32.const 3) (i32.const 16) (i32.const 5) (i32.const 1024) (i32.const 64) (i32.const 8))", expected: Errno.INVAL },
  { name: "path_readlink: buffer out of bounds", data: [[16, "stdin"]], body: "(call $path_readlink (i32.const 3) (i32.const 16) (i32.const 5) (i32.const 65530) (i32.const 64) (i32.const 8))", expected: Errno.FAULT },
  { name: "path_symlink: both paths out of bounds", body: `(call $path_symlink (i32.const ${OOB}) (i32.const 4) (i32.const 3) (i32.const ${OOB}) (i32.const 4))`, expected: Errno.FAULT },
  // poll_oneoff
  { name: "poll_oneoff: no subscriptions", body: "(call $poll_oneoff (i32.const 100) (i32.const 200) (i32.const 0) (i32.const 300))", expected: Errno.INVAL },
  { name: "poll_oneoff: huge subscription count", body: "(call $poll_oneoff (i32.const 100) (i32.const 200) (i32.const 0x7fffffff) (i32.const 300))", expected: Errno.FAULT },
  { name: "poll_oneoff: subscriptions out of bounds", body: `(call $poll_oneoff (i32.const ${OOB}) (i32.const 200) (i32.const 1) (i32.const 300))`, expected: Errno.FAULT },
  { name: "poll_oneoff: events out of bounds", body: "(call $poll_oneoff (i32.const 100) (i32.const 65530) (i32.const 1) (i32.const 300))", expected: Errno.FAULT },
  { name: "poll_oneoff: nevents out of bounds", body: `(call $poll_oneoff (i32.const 100) (i32.const 200) (i32.const 1) (i32.const ${OOB}))`, expected: Errno.FAULT },
  { name: "poll_oneoff: unknown event type → event error EINVAL", ...pollEventError(subscription(9)), expected: Errno.INVAL },
  { name: "poll_oneoff: fd_read on a bad fd → event error EBADF", ...pollEventError(subscription(1, (v) => v.setUint32(16, 99, true))), expected: Errno.BADF },
  { name: "poll_oneoff: unsupported clock → event error EINVAL", ...pollEventError(subscription(0, (v) => v.setUint32(16, 2, true))), expected: Errno.INVAL },
  { name: "poll_oneoff: clock id out of range → event error EINVAL", ...pollEventError(subscription(0, (v) => v.setUint32(16, 0xffffffff, true))), expected: Errno.INVAL },
  // args / environ / clocks / random
  { name: "args_get: out of bounds", body: `(call $args_get (i32.const ${OOB}) (i32.const ${OOB}))`, expected: Errno.FAULT },
  { name: "args_sizes_get: out of bounds", body: `(call $args_sizes_get (i32.const 65534) (i32.const 0))`, expected: Errno.FAULT },
  { name: "environ_get: buffer out of bounds", body: "(call $environ_get (i32.const 0) (i32.const 65535))", expected: Errno.FAULT },
  { name: "environ_sizes_get: out of bounds", body: `(call $environ_sizes_get (i32.const 0) (i32.const ${OOB}))`, expected: Errno.FAULT },
  { name: "clock_time_get: unknown clock", body: "(call $clock_time_get (i32.const 99) (i64.const 0) (i32.const 0))", expected: Errno.INVAL },
  { name: "clock_time_get: out of bounds", body: `(call $clock_time_get (i32.const 1) (i64.const 0) (i32.const ${OOB}))`, expected: Errno.FAULT },
  { name: "clock_res_get: unknown clock", body: "(call $clock_res_get (i32.const -1) (i32.const 0))", expected: Errno.INVAL },
  { name: "random_get: out of bounds", body: "(call $random_get (i32.const 1) (i32.const 65536))", expected: Errno.FAULT },
  { name: "random_get: huge length", body: "(call $random_get (i32.const 0) (i32.const -1))", expected: Errno.FAULT },
  { name: "random_get: empty at the end of memory", body: "(call $random_get (i32.const 65536) (i32.const 0))", expected: Errno.SUCCESS },
  // fd management
  { name: "fd_close: bad fd", body: "(call $fd_close (i32.const 99))", expected: Errno.BADF },
  { name: "fd_close twice", body: "(block (result i32) (drop (call $fd_close (i32.const 3))) (call $fd_close (i32.const 3)))", expected: Errno.BADF },
  { name: "fd_renumber: to a closed fd", body: "(call $fd_renumber (i32.const 1) (i32.const 99))", expected: Errno.BADF },
  { name: "fd_renumber: from a closed fd", body: "(call $fd_renumber (i32.const 99) (i32.const 1))", expected: Errno.BADF },
  { name: "fd_prestat_get: not a preopen", body: "(call $fd_prestat_get (i32.const 0) (i32.const 16))", expected: Errno.BADF },
  { name: "fd_prestat_get: past the last preopen", body: "(call $fd_prestat_get (i32.const 4) (i32.const 16))", expected: Errno.BADF },
  { name: "fd_prestat_get: out of bounds", body: "(call $fd_prestat_get (i32.const 3) (i32.const 65532))", expected: Errno.FAULT },
  { name: "fd_prestat_dir_name: buffer too small", body: "(call $fd_prestat_dir_name (i32.const 3) (i32.const 16) (i32.const 0))", expected: Errno.NAMETOOLONG },
  { name: "fd_prestat_dir_name: out of bounds", body: `(call $fd_prestat_dir_name (i32.const 3) (i32.const ${OOB}) (i32.const 1))`, expected: Errno.FAULT },
  { name: "fd_readdir: buffer out of bounds", body: "(call $fd_readdir (i32.const 3) (i32.const 65000) (i32.const 1000) (i64.const 0) (i32.const 8))", expected: Errno.FAULT },
  { name: "fd_readdir: bad fd", body: "(call $fd_readdir (i32.const 42) (i32.const 16) (i32.const 100) (i64.const 0) (i32.const 8))", expected: Errno.BADF },
  { name: "fd_readdir: huge cookie", body: "(i32.add (call $fd_readdir (i32.const 3) (i32.const 16) (i32.const 100) (i64.const -1) (i32.const 8)) (i32.load (i32.const 8)))", expected: 0 },
  { name: "fd_fdstat_get: out of bounds", body: "(call $fd_fdstat_get (i32.const 1) (i32.const 65530))", expected: Errno.FAULT },
  { name: "fd_fdstat_get: bad fd", body: "(call $fd_fdstat_get (i32.const 12) (i32.const 16))", expected: Errno.BADF },
  { name: "fd_fdstat_set_rights: adding rights", body: "(call $fd_fdstat_set_rights (i32.const 1) (i64.const -1) (i64.const -1))", expected: Errno.NOTCAPABLE },
  { name: "fd_fdstat_set_flags: unknown flags", body: "(call $fd_fdstat_set_flags (i32.const 1) (i32.const 0x8000))", expected: Errno.INVAL },
  { name: "fd_filestat_get: out of bounds", body: `(call $fd_filestat_get (i32.const 0) (i32.const ${OOB}))`, expected: Errno.FAULT },
  { name: "fd_seek: on a directory", body: "(call $fd_seek (i32.const 3) (i64.const 0) (i32.const 0) (i32.const 16))", expected: [Errno.ISDIR, Errno.BADF, Errno.NOTCAPABLE] },
  { name: "fd_seek: result out of bounds", body: `(call $fd_seek (i32.const 0) (i64.const 0) (i32.const 0) (i32.const ${OOB}))`, expected: Errno.FAULT },
  { name: "fd_advise: bad fd (checked before the advice)", body: "(call $fd_advise (i32.const 99) (i64.const 0) (i64.const 0) (i32.const 99))", expected: Errno.BADF },
  { name: "fd_advise: advice out of range (6)", body: "(call $fd_advise (i32.const 0) (i64.const 0) (i64.const 0) (i32.const 6))", expected: Errno.INVAL },
  { name: "fd_advise: advice out of range (0xffffffff)", body: "(call $fd_advise (i32.const 0) (i64.const 0) (i64.const 0) (i32.const -1))", expected: Errno.INVAL },
  { name: "sock_recv: not a socket", body: "(call $sock_recv (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0))", expected: Errno.NOTSOCK },
  { name: "sock_send: bad fd", body: "(call $sock_send (i32.const 99) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0))", expected: Errno.BADF },
  { name: "sock_shutdown: not a socket", body: "(call $sock_shutdown (i32.const 1) (i32.const 3))", expected: Errno.NOTSOCK },
  { name: "sock_accept: out pointer out of bounds", body: `(call $sock_accept (i32.const 1) (i32.const 0) (i32.const ${OOB}))`, expected: Errno.FAULT },
  { name: "proc_exit: code is taken modulo 256", body: "(i32.const -1)", expected: 255 }
]

layer(kernelLayer, { excludeTestServices: true })("bad guest input", (it) => {
  for (const c of cases) {
    it.effect(c.name, () =>
      Effect.gen(function*() {
        const bytes = yield* probe({ body: c.body, ...(c.data ? { data: c.data } : {}), ...(c.pages ? { pages: c.pages } : {}), ...(c.extra ? { extra: c.extra } : {}) })
        const r = yield* runGuest({ bytes, argv: ["probe", "arg"], env: ["A=1"] })
        const expected = typeof c.expected === "number" ? [c.expected] : c.expected
        assert.strictEqual(r.status._tag, "Exited", `${c.name}: ${JSON.stringify(r.status)}`)
        assert.include(expected, (r.status as { code: number }).code, c.name)
      }).pipe(Effect.provide(captureLogs)))
  }

  it.effect("memory grown by the guest is usable in syscalls", () =>
    Effect.gen(function*() {
      const bytes = yield* probe({
        extra: `
  (func $run (result i32)
    (drop (memory.grow (i32.const 1)))
    (i32.store (i32.const 70000) (i32.const 0x0a6b6f)) ;; "ok\\n"
    (i32.store (i32.const 0) (i32.const 70000))
    (i32.store (i32.const 4) (i32.const 3))
    (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 131068)))`,
        body: "(call $run)"
      })
      const r = yield* runGuest({ bytes })
      assert.deepStrictEqual(r.status, Exited(0))
      assert.strictEqual(r.stdout, "ok\n")
    }).pipe(Effect.provide(captureLogs)))

  // ---- fuzz ------------------------------------------------------------------------------------

  // Left out: proc_signal (kill(0) with a fatal signal is a legitimate way to end) and fd_pipe (a
  // read of a pipe whose write end the reader holds itself waits forever, as it should).
  const signatureOf = (name: string) => wasiSignatures[name] ?? processSignatures[name]!.sig
  const fuzzed = [...Object.keys(wasiSignatures), ...Object.keys(processSignatures)].filter((n) =>
    !["proc_exit", "proc_raise", "poll_oneoff", "proc_signal", "fd_pipe"].includes(n)
  )
  const i32 = FastCheck.oneof(
    FastCheck.constantFrom(0, 1, 2, 3, 4, 8, 16, 24, 1024, 4096, 65532, 65535, 65536, 0x7fffffff, -0x80000000, -1),
    FastCheck.integer({ min: -0x80000000, max: 0x7fffffff })
  )
  const i64 = FastCheck.oneof(
    FastCheck.constantFrom(0n, 1n, 2n, -1n, 1n << 62n, -(1n << 63n), (1n << 63n) - 1n, 1n << 53n),
    FastCheck.bigInt({ min: -(1n << 63n), max: (1n << 63n) - 1n })
  )
  const call = FastCheck.constantFrom(...fuzzed).chain((name) => {
    const params = /\(param ([^)]*)\)/.exec(signatureOf(name))?.[1]?.split(" ") ?? []
    return FastCheck.tuple(...params.map((t) => (t === "i64" ? i64.map((v) => `(i64.const ${v})`) : i32.map((v) => `(i32.const ${v})`))))
      .map((args) => `(drop (call $${name} ${args.join(" ")}))`)
  })

  it.effect.prop(
    "random arguments to every syscall: the guest always gets an errno and exits normally",
    [FastCheck.array(call, { minLength: 1, maxLength: 120 }), FastCheck.uint8Array({ minLength: 0, maxLength: 512 })],
    ([calls, junk]) =>
      Effect.gen(function*() {
        const text = probeText({
          data: [[0, junk], [2048, "stdin"], [2100, "../../x"]],
          extra: `  (func $run (result i32)\n    ${calls.join("\n    ")}\n    (i32.const 0))`,
          body: "(call $run)"
        })
        const r = yield* runGuest({ bytes: yield* wat(text, "fuzz.wat"), argv: ["fuzz", "a", "b"], env: ["X=y"] })
        assert.deepStrictEqual(r.status, Exited(0), calls.join("\n"))
      }).pipe(Effect.provide(captureLogs)),
    { fastCheck: { numRuns: 50 } }
  )

  it.effect("afterwards: no handler defect was logged and a normal guest runs fine", () =>
    Effect.gen(function*() {
      const r = yield* runGuest({ bytes: fixture("echo_args"), argv: ["echo_args", "still", "alive"] })
      assert.deepStrictEqual(r.status, Exited(0))
      assert.strictEqual(r.stdout, "argv[0]=echo_args\nargv[1]=still\nargv[2]=alive\n")
      assert.deepStrictEqual(logged.filter((l) => /sentry bug|ERROR|FATAL/i.test(l)), [])
    }).pipe(Effect.provide(captureLogs)))
})

layer(kernelLayer, { excludeTestServices: true })("a defect in a handler", (it) => {
  it.effect("is logged as a sentry bug, the guest sees EIO, and the sentry keeps serving", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const broken: FileDescription = {
        filetype: FileType.UNKNOWN,
        read: () => Effect.die(new Error("boom")),
        write: () => Effect.die(new Error("boom")),
        seek: () => Effect.die(new Error("boom")),
        stat: Effect.die(new Error("boom")),
        close: Effect.void
      }
      const bytes = yield* probe({
        data: [[0, iovec(16, 4)]],
        body: "(i32.add (i32.mul (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)) (i32.const 100)) (call $fd_filestat_get (i32.const 0) (i32.const 64)))"
      })
      const r = yield* runGuest({ bytes, stdin: broken }).pipe(Effect.provide(captureLogsInto(lines)))
      assert.deepStrictEqual(r.status, Exited((Errno.IO * 100 + Errno.IO) & 0xff))
      assert.strictEqual(lines.filter((l) => /sentry bug in fd_read/.test(l)).length, 1, lines.join("\n"))
      assert.strictEqual(lines.filter((l) => /sentry bug in fd_filestat_get/.test(l)).length, 1)
    }))
})

layer(kernelLayer, { excludeTestServices: true })("a handler that throws (a sentry bug on the synchronous path)", (it) => {
  it.effect("is logged as a sentry bug, the guest sees EIO, and the sentry keeps serving the same guest", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const throwing: FileDescription = {
        filetype: FileType.REGULAR_FILE,
        read: () => Effect.succeed(new Uint8Array(0)),
        write: () => Effect.succeed(0),
        seek: () => {
          throw new Error("boom")
        },
        stat: Effect.die(new Error("unused")),
        statNow: () => {
          throw new Error("boom")
        },
        close: Effect.void
      }
      // fd_seek, then fd_filestat_get: each answers EIO; then fd_fdstat_get still answers (0).
      const bytes = yield* probe({
        body: `(i32.add (i32.add
          (i32.mul (call $fd_seek (i32.const 0) (i64.const 0) (i32.const 0) (i32.const 16)) (i32.const 100))
          (i32.mul (call $fd_filestat_get (i32.const 0) (i32.const 64)) (i32.const 10)))
          (call $fd_fdstat_get (i32.const 0) (i32.const 200)))`
      })
      const r = yield* runGuest({ bytes, stdin: throwing }).pipe(Effect.provide(captureLogsInto(lines)))
      assert.deepStrictEqual(r.status, Exited((Errno.IO * 100 + Errno.IO * 10) & 0xff))
      assert.strictEqual(lines.filter((l) => /sentry bug in fd_seek/.test(l)).length, 1, lines.join("\n"))
      assert.strictEqual(lines.filter((l) => /sentry bug in fd_filestat_get/.test(l)).length, 1, lines.join("\n"))
    }))
})

describe("probe text", () => {
  it("imports every function with a signature", () => {
    assert.strictEqual(Object.keys(wasiSignatures).length, 46)
  })
})
