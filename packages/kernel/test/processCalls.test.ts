/**
 * The process calls of docs/process-api.md, driven by WAT probes: identities, pipes, dup,
 * spawning C fixtures, joining children, process groups and sessions, and every bad argument
 * getting its errno.
 */
import { Errno, JoinStatusType, SIGPIPE } from "@runsc/abi"
import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { Kernel } from "../src/index.js"
import { eventually, Exited, fixture, kernelLayer, probe, rootOf, runGuest, Signaled, startGuest, tempDir, timed } from "./helpers.js"

/** Packed NUL-terminated strings (proc_spawn's argv/envp layout). */
const packed = (strings: ReadonlyArray<string>) => strings.map((s) => `${s}\0`).join("")

/** Little-endian i32s. */
const i32s = (...values: ReadonlyArray<number>) => {
  const bytes = new Uint8Array(values.length * 4)
  const v = new DataView(bytes.buffer)
  values.forEach((x, i) => v.setInt32(i * 4, x, true))
  return bytes
}

/** A container root with the C fixtures under /bin, a directory and a non-wasm file. */
const fixtureRoot = Effect.gen(function*() {
  const dir = yield* tempDir("runsc-proc-root-")
  Fs.mkdirSync(Path.join(dir, "bin"))
  for (const name of ["exit", "echo_args", "sleep", "cat"]) {
    Fs.writeFileSync(Path.join(dir, "bin", name), fixture(name), { mode: 0o755 })
  }
  Fs.writeFileSync(Path.join(dir, "bin", "text"), "just text\n", { mode: 0o755 })
  Fs.mkdirSync(Path.join(dir, "bin", "dir"))
  return yield* rootOf(dir)
})

// Memory map of the spawning probes.
const PATH = 1000
const ARGV = 1100
const ENV = 1300
const FDS = 1400
const PID = 1420
const OPTION = 1440
const STATUS = 1460
const BUF = 2000
const IOV = 1480

interface SpawnCall {
  readonly path: string
  readonly argv: ReadonlyArray<string>
  readonly env?: ReadonlyArray<string>
  readonly fds?: ReadonlyArray<number>
  readonly pgid?: number
  readonly flags?: number
}

/** Data segments and the call expression of one proc_spawn. */
const spawnCall = (call: SpawnCall) => {
  const argv = packed(call.argv)
  const env = packed(call.env ?? [])
  const fds = call.fds ?? []
  return {
    data: [[PATH, call.path], [ARGV, argv], [ENV, env], [FDS, i32s(...fds, 0, 0, 0)]] as Array<readonly [number, Uint8Array | string]>,
    expr: `(call $proc_spawn (i32.const ${PATH}) (i32.const ${new TextEncoder().encode(call.path).length})
      (i32.const ${ARGV}) (i32.const ${argv.length}) (i32.const ${ENV}) (i32.const ${env.length})
      (i32.const ${FDS}) (i32.const ${fds.length}) (i32.const ${call.pgid ?? -1}) (i32.const ${call.flags ?? 0}) (i32.const ${PID}))`
  }
}

/** Joins any child (flags), failing with 200 + errno; answers the status word at STATUS. */
const join = (flags = 0) =>
  `(i32.store8 (i32.const ${OPTION}) (i32.const 0))
   (local.set $e (call $proc_join (i32.const ${OPTION}) (i32.const ${flags}) (i32.const ${STATUS})))
   (if (local.get $e) (then (return (i32.add (i32.const 200) (local.get $e)))))`

layer(kernelLayer, { excludeTestServices: true })("process calls", (it) => {
  it.scoped("proc_id is the pid; a runtime-started process has no parent; proc_parent of a missing pid is ESRCH", () =>
    Effect.gen(function*() {
      const run = yield* startGuest({
        bytes: yield* probe({
          extra: `(func $run (result i32) (local $e i32)
            (local.set $e (call $proc_id (i32.const 0)))
            (if (local.get $e) (then (return (i32.const 1))))
            (local.set $e (call $proc_parent (i32.load (i32.const 0)) (i32.const 4)))
            (if (local.get $e) (then (return (i32.const 2))))
            (if (i32.load (i32.const 4)) (then (return (i32.const 3))))
            (call $proc_parent (i32.const 999999) (i32.const 4)))`,
          body: "(call $run)"
        })
      })
      assert.deepStrictEqual(yield* run.exit, Exited(Errno.SRCH))
    }))

  it.scoped("fd_pipe: bytes written come out of the read end; EOF once the write end closes", () =>
    Effect.gen(function*() {
      const r = yield* runGuest({
        bytes: yield* probe({
          data: [[100, "through a pipe\n"], [IOV, i32s(100, 15)]],
          extra: `(func $run (result i32) (local $e i32) (local $r i32) (local $w i32)
            (local.set $e (call $fd_pipe (i32.const 0) (i32.const 4)))
            (if (local.get $e) (then (return (i32.const 1))))
            (local.set $r (i32.load (i32.const 0)))
            (local.set $w (i32.load (i32.const 4)))
            ;; fds 0-2 are stdio and 3 the preopen: the pipe is 4 and 5
            (if (i32.ne (local.get $r) (i32.const 4)) (then (return (i32.const 2))))
            (if (i32.ne (local.get $w) (i32.const 5)) (then (return (i32.const 3))))
            (drop (call $fd_write (local.get $w) (i32.const ${IOV}) (i32.const 1) (i32.const 8)))
            (drop (call $fd_close (local.get $w)))
            (i32.store (i32.const ${IOV}) (i32.const ${BUF}))
            (i32.store (i32.const ${IOV + 4}) (i32.const 100))
            (drop (call $fd_read (local.get $r) (i32.const ${IOV}) (i32.const 1) (i32.const 8)))
            (if (i32.ne (i32.load (i32.const 8)) (i32.const 15)) (then (return (i32.const 4))))
            (i32.store (i32.const ${IOV + 4}) (i32.load (i32.const 8)))
            (drop (call $fd_write (i32.const 1) (i32.const ${IOV}) (i32.const 1) (i32.const 8)))
            (i32.store (i32.const ${IOV + 4}) (i32.const 100))
            (local.set $e (call $fd_read (local.get $r) (i32.const ${IOV}) (i32.const 1) (i32.const 8)))
            (if (local.get $e) (then (return (i32.const 5))))
            ;; end of file: 0 bytes
            (i32.load (i32.const 8)))`,
          body: "(call $run)"
        })
      })
      assert.deepStrictEqual(r.status, Exited(0))
      assert.strictEqual(r.stdout, "through a pipe\n")
    }))

  it.scoped("poll_oneoff waits for a pipe to become readable, or for its clock when it does not", () =>
    Effect.gen(function*() {
      const root = yield* fixtureRoot
      // Subscriptions at 3000: [0] fd_read of the pipe's read end (fd 4), [1] a 5 s clock;
      // at 3100: one 100 ms clock alone with [0] (an empty pipe whose writer we hold).
      const sub = (userdata: number, tag: number, fdOrClock: number, timeoutMs: number) => {
        const b = new Uint8Array(48)
        const v = new DataView(b.buffer)
        v.setBigUint64(0, BigInt(userdata), true)
        v.setUint8(8, tag)
        v.setUint32(16, fdOrClock, true)
        v.setBigUint64(24, BigInt(timeoutMs) * 1_000_000n, true)
        return b
      }
      const spawn = spawnCall({ path: "/bin/sleep", argv: ["sleep", "1"], fds: [0, 5, 2] })
      const [r, ms] = yield* timed(runGuest({
        root,
        bytes: yield* probe({
          data: [...spawn.data, [3000, sub(7, 1, 4, 0)], [3048, sub(8, 0, 1, 5000)], [3096, sub(9, 0, 1, 100)]],
          extra: `(func $run (result i32) (local $e i32)
            (drop (call $fd_pipe (i32.const 0) (i32.const 4)))
            ;; nothing written yet, our own write end open: the 100 ms clock fires
            (memory.copy (i32.const 3200) (i32.const 3000) (i32.const 48))
            (memory.copy (i32.const 3248) (i32.const 3096) (i32.const 48))
            (local.set $e (call $poll_oneoff (i32.const 3200) (i32.const 4000) (i32.const 2) (i32.const 8)))
            (if (local.get $e) (then (return (i32.const 1))))
            (if (i32.ne (i32.load (i32.const 8)) (i32.const 1)) (then (return (i32.const 2))))
            (if (i32.ne (i32.load (i32.const 4000)) (i32.const 9)) (then (return (i32.const 3))))
            ;; a child prints "sleeping" into the pipe: the fd fires long before the 5 s clock
            (local.set $e ${spawn.expr})
            (if (local.get $e) (then (return (i32.add (i32.const 100) (local.get $e)))))
            (local.set $e (call $poll_oneoff (i32.const 3000) (i32.const 4000) (i32.const 2) (i32.const 8)))
            (if (local.get $e) (then (return (i32.const 4))))
            (if (i32.ne (i32.load (i32.const 4000)) (i32.const 7)) (then (return (i32.const 5))))
            (i32.const 0))`,
          body: "(call $run)"
        })
      }))
      assert.deepStrictEqual(r.status, Exited(0))
      assert.isBelow(ms, 4000, "woken by the pipe, not by the 5 s clock")
    }))

  it.scoped("a write to a pipe with no reader left fails EPIPE and raises SIGPIPE", () =>
    Effect.gen(function*() {
      const r = yield* runGuest({
        bytes: yield* probe({
          data: [[100, "x"], [IOV, i32s(100, 1)]],
          body: `(block (result i32)
            (drop (call $fd_pipe (i32.const 0) (i32.const 4)))
            (drop (call $fd_close (i32.load (i32.const 0))))
            (call $fd_write (i32.load (i32.const 4)) (i32.const ${IOV}) (i32.const 1) (i32.const 8)))`
        })
      })
      assert.deepStrictEqual(r.status, Signaled(SIGPIPE))
    }))

  it.scoped("fd_dup shares the description: a pipe stays open while a duplicate of its write end is", () =>
    Effect.gen(function*() {
      const r = yield* runGuest({
        bytes: yield* probe({
          data: [[100, "dup"], [IOV, i32s(100, 3)]],
          extra: `(func $run (result i32) (local $e i32)
            (drop (call $fd_pipe (i32.const 0) (i32.const 4)))
            (local.set $e (call $fd_dup (i32.load (i32.const 4)) (i32.const 12)))
            (if (local.get $e) (then (return (i32.const 1))))
            (drop (call $fd_close (i32.load (i32.const 4))))
            ;; the duplicate still writes into the pipe
            (local.set $e (call $fd_write (i32.load (i32.const 12)) (i32.const ${IOV}) (i32.const 1) (i32.const 8)))
            (if (local.get $e) (then (return (i32.const 2))))
            (drop (call $fd_close (i32.load (i32.const 12))))
            (i32.store (i32.const ${IOV}) (i32.const ${BUF}))
            (i32.store (i32.const ${IOV + 4}) (i32.const 100))
            (drop (call $fd_read (i32.load (i32.const 0)) (i32.const ${IOV}) (i32.const 1) (i32.const 8)))
            (if (i32.ne (i32.load (i32.const 8)) (i32.const 3)) (then (return (i32.const 3))))
            (drop (call $fd_read (i32.load (i32.const 0)) (i32.const ${IOV}) (i32.const 1) (i32.const 8)))
            ;; every write end closed: end of file
            (i32.load (i32.const 8)))`,
          body: "(call $run)"
        })
      })
      assert.deepStrictEqual(r.status, Exited(0))
    }))

  it.scoped("proc_spawn runs a program as a child; proc_join reaps it and reports its pid and exit code", () =>
    Effect.gen(function*() {
      const root = yield* fixtureRoot
      const spawn = spawnCall({ path: "/bin/exit", argv: ["exit", "7"] })
      const r = yield* runGuest({
        root,
        bytes: yield* probe({
          data: spawn.data,
          extra: `(func $run (result i32) (local $e i32)
            (local.set $e ${spawn.expr})
            (if (local.get $e) (then (return (i32.add (i32.const 100) (local.get $e)))))
            ${join()}
            ;; the joined pid is written back, with tag some
            (if (i32.ne (i32.load8_u (i32.const ${OPTION})) (i32.const 1)) (then (return (i32.const 1))))
            (if (i32.ne (i32.load (i32.const ${OPTION + 4})) (i32.load (i32.const ${PID}))) (then (return (i32.const 2))))
            (if (i32.ne (i32.load8_u (i32.const ${STATUS})) (i32.const ${JoinStatusType.EXIT_NORMAL})) (then (return (i32.const 3))))
            (if (i32.ne (i32.load16_u (i32.const ${STATUS + 2})) (i32.const 7)) (then (return (i32.const 4))))
            ;; no child left
            (i32.store8 (i32.const ${OPTION}) (i32.const 0))
            (call $proc_join (i32.const ${OPTION}) (i32.const 0) (i32.const ${STATUS})))`,
          body: "(call $run)"
        })
      })
      assert.deepStrictEqual(r.status, Exited(Errno.CHILD))
    }))

  it.scoped("a child's stdout can be a new pipe whose read end the parent gets", () =>
    Effect.gen(function*() {
      const root = yield* fixtureRoot
      const spawn = spawnCall({ path: "/bin/echo_args", argv: ["echo_args", "hello", "pipe"], fds: [0, -2, 2] })
      const r = yield* runGuest({
        root,
        bytes: yield* probe({
          data: spawn.data,
          extra: `(func $run (result i32) (local $e i32) (local $n i32)
            (local.set $e ${spawn.expr})
            (if (local.get $e) (then (return (i32.add (i32.const 100) (local.get $e)))))
            ;; copy what the child writes to our stdout until end of file
            (i32.store (i32.const ${IOV}) (i32.const ${BUF}))
            (loop $copy
              (i32.store (i32.const ${IOV + 4}) (i32.const 1000))
              (local.set $e (call $fd_read (i32.load (i32.const ${FDS + 4})) (i32.const ${IOV}) (i32.const 1) (i32.const 8)))
              (if (local.get $e) (then (return (i32.const 1))))
              (local.set $n (i32.load (i32.const 8)))
              (if (local.get $n) (then
                (i32.store (i32.const ${IOV + 4}) (local.get $n))
                (drop (call $fd_write (i32.const 1) (i32.const ${IOV}) (i32.const 1) (i32.const 8)))
                (br $copy))))
            ${join()}
            (i32.load16_u (i32.const ${STATUS + 2})))`,
          body: "(call $run)"
        })
      })
      assert.deepStrictEqual(r.status, Exited(0))
      assert.strictEqual(r.stdout, "argv[0]=echo_args\nargv[1]=hello\nargv[2]=pipe\n")
    }))

  it.scoped("proc_spawn errors: ENOENT, EACCES, ENOEXEC, EBADF, EINVAL; nothing is left behind", () =>
    Effect.gen(function*() {
      const root = yield* fixtureRoot
      const cases: ReadonlyArray<readonly [SpawnCall, number]> = [
        [{ path: "/bin/missing", argv: ["missing"] }, Errno.NOENT],
        [{ path: "/bin/dir", argv: ["dir"] }, Errno.ACCES],
        [{ path: "/bin/text", argv: ["text"] }, Errno.NOEXEC],
        [{ path: "/bin/exit", argv: ["exit"], fds: [0, 17, 2] }, Errno.BADF],
        [{ path: "/bin/exit", argv: ["exit"], fds: [0, -3, 2] }, Errno.INVAL],
        [{ path: "/bin/exit", argv: [] }, Errno.INVAL],
        [{ path: "/bin/exit", argv: ["exit"], pgid: 999999 }, Errno.PERM],
        [{ path: "exit", argv: ["exit"], flags: 1, env: ["PATH=/nowhere:/bin"] }, Errno.SUCCESS],
        [{ path: "exit", argv: ["exit"], env: ["PATH=/bin"] }, Errno.NOENT],
        [{ path: "/bin/missing", argv: ["missing"], fds: [-2, -2, -2] }, Errno.NOENT]
      ]
      for (const [call, errno] of cases) {
        const spawn = spawnCall(call)
        const r = yield* runGuest({
          root,
          bytes: yield* probe({
            data: spawn.data,
            extra: `(func $run (result i32) (local $e i32)
              (local.set $e ${spawn.expr})
              ;; a failed spawn leaves no pipe end behind: fd 4 is the lowest free fd
              (drop (call $fd_pipe (i32.const 0) (i32.const 4)))
              (if (i32.ne (i32.load (i32.const 0)) (i32.const 4)) (then (return (i32.const 250))))
              (local.get $e))`,
            body: "(call $run)"
          })
        })
        assert.deepStrictEqual(r.status, Exited(errno), JSON.stringify(call))
      }
      // proc_spawn with more than three fds, and a failing nfds check before any pointer is used
      const r = yield* runGuest({
        bytes: yield* probe({
          body: `(call $proc_spawn (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 2) (i32.const 0) (i32.const 0)
            (i32.const 0) (i32.const 4) (i32.const -1) (i32.const 0) (i32.const 8))`
        })
      })
      assert.deepStrictEqual(r.status, Exited(Errno.INVAL))
    }))

  it.scoped("proc_join: WNOHANG with a running child reports nothing; a child killed by a signal to its group reports it", () =>
    Effect.gen(function*() {
      const root = yield* fixtureRoot
      const spawn = spawnCall({ path: "/bin/sleep", argv: ["sleep", "60"], pgid: 0, fds: [0, -1, 2] })
      const r = yield* runGuest({
        root,
        bytes: yield* probe({
          data: spawn.data,
          extra: `(func $run (result i32) (local $e i32)
            (local.set $e ${spawn.expr})
            (if (local.get $e) (then (return (i32.add (i32.const 100) (local.get $e)))))
            ${join(1)}
            (if (i32.ne (i32.load8_u (i32.const ${STATUS})) (i32.const ${JoinStatusType.NOTHING})) (then (return (i32.const 1))))
            (if (i32.ne (i32.load8_u (i32.const ${OPTION})) (i32.const 0)) (then (return (i32.const 2))))
            ;; the child leads its own group: its pgid is its pid
            (drop (call $proc_getpgid (i32.load (i32.const ${PID})) (i32.const 16)))
            (if (i32.ne (i32.load (i32.const 16)) (i32.load (i32.const ${PID}))) (then (return (i32.const 3))))
            ;; SIGTERM (WASI 15) to the child's group
            (local.set $e (call $proc_signal (i32.sub (i32.const 0) (i32.load (i32.const ${PID}))) (i32.const 15)))
            (if (local.get $e) (then (return (i32.const 4))))
            ${join()}
            (if (i32.ne (i32.load8_u (i32.const ${STATUS})) (i32.const ${JoinStatusType.EXIT_SIGNAL})) (then (return (i32.const 5))))
            (i32.load8_u (i32.const ${STATUS + 4})))`,
          body: "(call $run)"
        })
      })
      assert.deepStrictEqual(r.status, Exited(15))
    }))

  it.scoped("groups and sessions: a runtime process leads its session (setsid EPERM); a child moves between groups", () =>
    Effect.gen(function*() {
      const root = yield* fixtureRoot
      const spawn = spawnCall({ path: "/bin/sleep", argv: ["sleep", "60"], fds: [0, -1, 2] })
      const r = yield* runGuest({
        root,
        bytes: yield* probe({
          data: spawn.data,
          extra: `(func $run (result i32) (local $e i32) (local $me i32) (local $child i32)
            (drop (call $proc_id (i32.const 0)))
            (local.set $me (i32.load (i32.const 0)))
            (if (i32.ne (call $proc_setsid (i32.const 4)) (i32.const ${Errno.PERM})) (then (return (i32.const 1))))
            (drop (call $proc_getsid (i32.const 0) (i32.const 4)))
            (if (i32.ne (i32.load (i32.const 4)) (local.get $me)) (then (return (i32.const 2))))
            (local.set $e ${spawn.expr})
            (if (local.get $e) (then (return (i32.add (i32.const 100) (local.get $e)))))
            (local.set $child (i32.load (i32.const ${PID})))
            ;; in the parent's group, then its own, then back
            (drop (call $proc_getpgid (local.get $child) (i32.const 4)))
            (if (i32.ne (i32.load (i32.const 4)) (local.get $me)) (then (return (i32.const 3))))
            (if (call $proc_setpgid (local.get $child) (i32.const 0)) (then (return (i32.const 4))))
            (drop (call $proc_getpgid (local.get $child) (i32.const 4)))
            (if (i32.ne (i32.load (i32.const 4)) (local.get $child)) (then (return (i32.const 5))))
            (if (call $proc_setpgid (local.get $child) (local.get $me)) (then (return (i32.const 6))))
            ;; a group that does not exist, and a process that is not our child
            (if (i32.ne (call $proc_setpgid (local.get $child) (i32.const 999999)) (i32.const ${Errno.PERM})) (then (return (i32.const 7))))
            (if (i32.ne (call $proc_setpgid (i32.const 999999) (i32.const 0)) (i32.const ${Errno.SRCH})) (then (return (i32.const 8))))
            ;; the session leader cannot change its group
            (if (i32.ne (call $proc_setpgid (i32.const 0) (local.get $child)) (i32.const ${Errno.PERM})) (then (return (i32.const 9))))
            ;; not a terminal
            (if (i32.ne (call $tty_getpgrp (i32.const 1) (i32.const 4)) (i32.const ${Errno.NOTTY})) (then (return (i32.const 10))))
            ;; proc_parent of the child is us
            (drop (call $proc_parent (local.get $child) (i32.const 4)))
            (if (i32.ne (i32.load (i32.const 4)) (local.get $me)) (then (return (i32.const 11))))
            (drop (call $proc_signal (local.get $child) (i32.const 9)))
            ${join()}
            (i32.load8_u (i32.const ${STATUS + 4})))`,
          body: "(call $run)"
        })
      })
      assert.deepStrictEqual(r.status, Exited(9))
    }))

  it.scoped("proc_sigignore: an ignored SIGTERM is discarded; children inherit it unless spawned with RESET_SIGNALS; KILL/STOP cannot be ignored", () =>
    Effect.gen(function*() {
      const root = yield* fixtureRoot
      const inherit = spawnCall({ path: "/bin/sleep", argv: ["sleep", "60"], fds: [0, -1, 2] })
      const reset = { ...spawnCall({ path: "/bin/sleep", argv: ["sleep", "60"], fds: [0, -1, 2], flags: 2 }), data: [] }
      const r = yield* runGuest({
        root,
        bytes: yield* probe({
          data: inherit.data,
          extra: `(func $run (result i32) (local $e i32) (local $me i32)
            (if (i32.ne (call $proc_sigignore (i32.const 9) (i32.const 1)) (i32.const ${Errno.INVAL})) (then (return (i32.const 1))))
            (if (i32.ne (call $proc_sigignore (i32.const 18) (i32.const 1)) (i32.const ${Errno.INVAL})) (then (return (i32.const 2))))
            (if (i32.ne (call $proc_sigignore (i32.const 31) (i32.const 1)) (i32.const ${Errno.INVAL})) (then (return (i32.const 3))))
            (if (call $proc_sigignore (i32.const 15) (i32.const 1)) (then (return (i32.const 4))))
            (drop (call $proc_id (i32.const 0)))
            ;; SIGTERM to ourselves: discarded
            (if (call $proc_signal (i32.load (i32.const 0)) (i32.const 15)) (then (return (i32.const 5))))
            ;; a child that inherits the ignore survives SIGTERM; SIGKILL ends it
            (local.set $e ${inherit.expr})
            (if (local.get $e) (then (return (i32.add (i32.const 100) (local.get $e)))))
            (drop (call $proc_signal (i32.load (i32.const ${PID})) (i32.const 15)))
            ${join(1)}
            (if (i32.ne (i32.load8_u (i32.const ${STATUS})) (i32.const ${JoinStatusType.NOTHING})) (then (return (i32.const 6))))
            (drop (call $proc_signal (i32.load (i32.const ${PID})) (i32.const 9)))
            ${join()}
            (if (i32.ne (i32.load8_u (i32.const ${STATUS + 4})) (i32.const 9)) (then (return (i32.const 7))))
            ;; a child spawned with RESET_SIGNALS dies of SIGTERM
            (local.set $e ${reset.expr})
            (if (local.get $e) (then (return (i32.add (i32.const 150) (local.get $e)))))
            (drop (call $proc_signal (i32.load (i32.const ${PID})) (i32.const 15)))
            ${join()}
            (if (i32.ne (i32.load8_u (i32.const ${STATUS + 4})) (i32.const 15)) (then (return (i32.const 8))))
            ;; back to the default: SIGTERM ends us
            (drop (call $proc_sigignore (i32.const 15) (i32.const 0)))
            (drop (call $proc_signal (i32.load (i32.const 0)) (i32.const 15)))
            (i32.const 9))`,
          body: "(call $run)"
        })
      })
      assert.deepStrictEqual(r.status, Signaled(15))
    }))

  it.scoped("an orphan whose parent exits (and whose namespace init is gone) is reaped by the sentry when it exits", () =>
    Effect.gen(function*() {
      const kernel = yield* Kernel
      const root = yield* fixtureRoot
      const spawn = spawnCall({ path: "/bin/sleep", argv: ["sleep", "60"], fds: [0, -1, 2] })
      const parent = yield* startGuest({
        root,
        bytes: yield* probe({ data: spawn.data, body: `(block (result i32) (drop ${spawn.expr}) (i32.const 0))` })
      })
      assert.deepStrictEqual(yield* parent.exit, Exited(0))
      const all = yield* kernel.processes
      const orphan = all.find((tg) => tg.argv[0] === "sleep" && tg.isAlive)
      assert.isDefined(orphan)
      assert.isUndefined(orphan!.parent)
      yield* kernel.signal(orphan!, 9)
      yield* eventually(() => orphan!.reaped, "orphan reaped")
    }))
})
