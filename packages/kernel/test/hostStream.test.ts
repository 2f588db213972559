/**
 * Host stdio descriptions as the sentry uses them (the path `--strace`, fds past the worker's
 * table and O_NONBLOCK calls take): writes to a host pipe go in whole or, with O_NONBLOCK, are
 * short; a pipe without a reader fails EPIPE; reads wait for the host's bytes, keep their order
 * with what poll read ahead, and fail EAGAIN with O_NONBLOCK; only terminals are terminals.
 * The pipes are FIFOs whose ends the test holds.
 */
import { Errno, FileType, Whence } from "@runsc/abi"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, type Scope } from "effect"
import { execFileSync, spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { type FileDescription, hostStream, type SyscallError } from "../src/index.js"
import { tempDir } from "./helpers.js"

/** A FIFO's two ends, both blocking, closed with the scope. */
const hostPipe = Effect.gen(function*() {
  const dir = yield* tempDir("runsc-host-stream-")
  const fifo = Path.join(dir, "pipe")
  execFileSync("mkfifo", [fifo])
  return yield* Effect.acquireRelease(
    Effect.sync(() => {
      // A non-blocking read end lets the write end open at once; then a blocking read end
      // replaces it, as a shell's pipe is.
      const opener = Fs.openSync(fifo, Fs.constants.O_RDONLY | Fs.constants.O_NONBLOCK)
      const write = Fs.openSync(fifo, "w")
      const read = Fs.openSync(fifo, "r")
      Fs.closeSync(opener)
      return { read, write, ends: new Set([read, write]) }
    }),
    ({ ends }) => Effect.sync(() => ends.forEach((fd) => Fs.closeSync(fd)))
  )
})

/** Closes one end early (the set keeps the scope's finalizer from closing it again). */
const closeEnd = (pipe: { readonly ends: Set<number> }, fd: number) =>
  Effect.sync(() => {
    pipe.ends.delete(fd)
    Fs.closeSync(fd)
  })

/** `fd` as a host stream; closing it (which its holder may do early) happens once. */
const described = (fd: number): Effect.Effect<FileDescription, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const description = hostStream(fd)
      return { ...description, close: Effect.once(description.close).pipe(Effect.runSync) }
    }),
    (d) => d.close
  )

const errnoOf = <A>(effect: Effect.Effect<A, SyscallError>) => Effect.map(Effect.flip(effect), (e) => e.errno)

/**
 * A host process that reads the pipe after `delayMs` (a slow reader) into a file, which
 * `output` returns once the process has seen end of file (a file, not a pipe to this process,
 * so that the reader never waits for this thread). The test's own copy of the read end is
 * closed: the pipe's only reader is that process.
 */
const slowReader = (pipe: { readonly read: number; readonly ends: Set<number> }, delayMs: number) =>
  Effect.gen(function*() {
    const dir = yield* tempDir("runsc-host-stream-out-")
    const file = Path.join(dir, "out")
    const fd = Fs.openSync(file, "w")
    const child = spawn("sh", ["-c", `sleep ${delayMs / 1000}; exec cat`], { stdio: [pipe.read, fd, "ignore"] })
    Fs.closeSync(fd)
    yield* Effect.addFinalizer(() => Effect.sync(() => child.kill("SIGKILL")))
    yield* closeEnd(pipe, pipe.read)
    const output = Effect.async<Buffer>((resume) => {
      child.once("close", () => resume(Effect.sync(() => Fs.readFileSync(file))))
    })
    return { output }
  })

describe("host streams, through the sentry", () => {
  it.scopedLive("a blocking write of 1 MiB to a host pipe read slowly goes in whole, and the sentry's thread stays free meanwhile", () =>
    Effect.gen(function*() {
      const pipe = yield* hostPipe
      const out = yield* described(pipe.write)
      const reader = yield* slowReader(pipe, 500)
      let ticks = 0
      const ticking = yield* Effect.fork(Effect.forever(Effect.zipRight(Effect.sleep("10 millis"), Effect.sync(() => ticks++))))
      const data = Buffer.alloc(1024 * 1024, "x")
      assert.strictEqual(yield* out.write(data, undefined, false), data.length)
      yield* Fiber.interrupt(ticking)
      // The reader slept 0.5 s before it began: a write holding the thread would have let no tick run.
      assert.isAtLeast(ticks, 3)
      // The reader sees end of file once no write end is left: the test's, and the stream's own.
      yield* closeEnd(pipe, pipe.write)
      yield* out.close
      assert.isTrue((yield* reader.output).equals(data))
    }))

  it.scopedLive("with O_NONBLOCK, a write larger than the pipe's room is short, and the next one fails EAGAIN", () =>
    Effect.gen(function*() {
      const pipe = yield* hostPipe
      const out = yield* described(pipe.write)
      yield* slowReader(pipe, 500)
      const data = Buffer.alloc(1024 * 1024, "x")
      const first = yield* out.write(data, undefined, true)
      assert.isTrue(first > 0 && first < data.length, `first write: ${first}`)
      assert.strictEqual(yield* errnoOf(out.write(data, undefined, true)), Errno.AGAIN)
    }))

  it.scopedLive("a write to a pipe whose reader has gone fails EPIPE (the syscall then raises SIGPIPE)", () =>
    Effect.gen(function*() {
      const pipe = yield* hostPipe
      const out = yield* described(pipe.write)
      yield* closeEnd(pipe, pipe.read)
      assert.strictEqual(yield* errnoOf(out.write(Buffer.from("lost"), undefined, false)), Errno.PIPE)
    }))

  it.scopedLive("a read of an empty pipe: EAGAIN with O_NONBLOCK; else it waits for the host's bytes, and reads no more than asked", () =>
    Effect.gen(function*() {
      const pipe = yield* hostPipe
      const input = yield* described(pipe.read)
      assert.strictEqual(yield* errnoOf(input.read(16, undefined, true)), Errno.AGAIN)
      const waiting = yield* Effect.fork(input.read(3, undefined, false))
      yield* Effect.sleep("50 millis")
      Fs.writeSync(pipe.write, "abcdef")
      assert.strictEqual(Buffer.from(yield* Fiber.join(waiting)).toString(), "abc")
      // The rest is still the pipe's, for whoever reads it next (here, the host).
      const rest = Buffer.alloc(16)
      assert.strictEqual(rest.subarray(0, Fs.readSync(pipe.read, rest)).toString(), "def")
    }))

  it.scopedLive("what poll read ahead comes before what is in the pipe; end of file once the writer has gone", () =>
    Effect.gen(function*() {
      const pipe = yield* hostPipe
      const input = yield* described(pipe.read)
      const readiness = input.readiness!
      assert.isFalse(readiness.ready("read"))
      const changed = yield* Effect.fork(readiness.changed)
      Fs.writeSync(pipe.write, "first ")
      yield* Fiber.join(changed)
      assert.isTrue(readiness.ready("read"))
      Fs.writeSync(pipe.write, "second")
      yield* closeEnd(pipe, pipe.write)
      let text = ""
      for (;;) {
        const bytes = yield* input.read(4, undefined, false)
        if (bytes.length === 0) break
        text += Buffer.from(bytes).toString()
      }
      assert.strictEqual(text, "first second")
    }))

  it.scopedLive("a pipe and /dev/null are not terminals; /dev/null seeks to 0, a pipe cannot seek", () =>
    Effect.gen(function*() {
      const pipe = yield* hostPipe
      const fromPipe = yield* described(pipe.read)
      assert.isUndefined(fromPipe.isTerminal)
      assert.strictEqual(yield* errnoOf(fromPipe.seek(0n, Whence.CUR)), Errno.SPIPE)
      const devNull = yield* Effect.acquireRelease(Effect.sync(() => Fs.openSync("/dev/null", "r+")), (fd) => Effect.sync(() => Fs.closeSync(fd)))
      const nul = yield* described(devNull)
      assert.strictEqual(nul.filetype, FileType.CHARACTER_DEVICE)
      assert.isUndefined(nul.isTerminal)
      assert.strictEqual(yield* nul.seek(5n, Whence.SET), 0n)
      assert.strictEqual((yield* nul.read(10, undefined, false)).length, 0)
      assert.strictEqual(yield* nul.write(Buffer.from("gone"), undefined, false), 4)
    }))
})
