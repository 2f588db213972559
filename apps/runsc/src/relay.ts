/**
 * How a CLI lends its stdio to a process in a sandbox: its own fds 0-2, or others it holds (a
 * console's terminal). Node cannot pass an fd over a socket, so the sandbox reaches each one
 * of two ways:
 *
 * - by reopening `/proc/<cli>/fd/<n>`: the same pipe, file or terminal, no copying. Only an
 *   unconfined sandbox may (a confined one reads no /proc), and only for fds that are not sockets;
 * - through a relay: a Unix socket the lender listens on and the sandbox connects to once, after
 *   which bytes are copied between the connection and the fd.
 *
 * A relay lives as long as its lender. When the process outlives this CLI (a sub-container's
 * create, a detached exec), the relays are lent by `runsc relay`, a detached helper holding
 * copies of the fds, much as containerd's shim holds a container's stdio. It exits once every
 * relay it serves has ended, or when the sandbox never connected.
 */
import { Command, Options } from "@effect/cli"
import { MAX_SOCKET_PATH, RELAY_PREFIX, type StdioPaths } from "@runsc/control"
import { Data, Deferred, Duration, Effect, Exit, Option, Queue, Schedule, type Scope } from "effect"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import { reportReady, spawnDetached, type Stdio } from "./detached.js"
import { processStart, type ProcessIdentity } from "./hostProcess.js"

export class RelayFailed extends Data.TaggedError("RelayFailed")<{ readonly reason: string }> {
  override get message(): string {
    return `cannot relay stdio to the sandbox: ${this.reason}`
  }
}

const NAMES = ["stdin", "stdout", "stderr"] as const

/** How long a relay waits for the sandbox to connect before it gives up. */
const CONNECT_LIMIT = Duration.seconds(30)

/** Whether this process's `fd` is open, and whether a path reopens it (a socket cannot be). */
const fdKind = (fd: number): "closed" | "socket" | "reopenable" => {
  try {
    return Fs.fstatSync(fd).isSocket() ? "socket" : "reopenable"
  } catch {
    return "closed"
  }
}

interface Relay {
  /** Which of the process's stdio it is: 0, 1 or 2. */
  readonly slot: number
  /** The stdio entry that names it (`unix:<socket>`). */
  readonly path: string
  readonly connected: Effect.Effect<void>
  readonly done: Effect.Effect<void>
}

/**
 * Listens on `path` for the sandbox's connection, then copies this process's `fd` to it (as
 * stdin, `slot` 0) or from it (stdout and stderr). `done` resolves once the sandbox has closed
 * its side: every process that held the fd is done with it, and for output, everything it wrote
 * has been written here.
 */
const relayFd = (slot: number, fd: number, path: string): Effect.Effect<Relay, RelayFailed, Scope.Scope> =>
  Effect.gen(function*() {
    // Node binds a longer path under a name cut short, where the sandbox would never find it.
    if (Buffer.byteLength(path) > MAX_SOCKET_PATH) {
      return yield* new RelayFailed({ reason: `${path}: longer than ${MAX_SOCKET_PATH} bytes, the most a Unix socket's path may have` })
    }
    const connected = yield* Deferred.make<void>()
    const ended = yield* Deferred.make<void>()
    const end = () => Deferred.unsafeDone(ended, Exit.void)
    // Output: what the sandbox sent, in order, with the connection paused while a chunk goes out
    // (so a slow reader of `fd` slows the writer in the sandbox, whose writes then wait); the
    // relay has ended once the connection has and everything before its end is written.
    const output = yield* Queue.unbounded<{ readonly chunk: Buffer; readonly conn: Net.Socket } | "end">()
    yield* Effect.forkScoped(
      Effect.forever(Effect.flatMap(Queue.take(output), (next) =>
        next === "end" ? Effect.sync(end) : writeInWhole(fd, next.chunk).pipe(
          Effect.match({
            // Nobody reads this fd any more: the writer in the sandbox gets EPIPE.
            onFailure: () => next.conn.destroy(),
            onSuccess: () => next.conn.resume()
          })
        )))
    )
    yield* Effect.acquireRelease(
      Effect.async<Net.Server, RelayFailed>((resume) => {
        const server = Net.createServer((conn) => {
          Deferred.unsafeDone(connected, Exit.void)
          // One connection: the socket file has served its purpose.
          server.close()
          Fs.rmSync(path, { force: true })
          if (slot === 0) {
            conn.on("error", end)
            conn.on("close", end)
            // This process's own stdin through Node's stream for it (a tty, pipe, socket or file alike).
            const input = fd === 0 ? process.stdin : Fs.createReadStream("", { fd, autoClose: false })
            input.on("error", () => conn.end()).pipe(conn)
          } else {
            const ending = () => Queue.unsafeOffer(output, "end")
            conn.on("error", ending)
            conn.on("close", ending)
            conn.on("data", (chunk: Buffer) => {
              conn.pause()
              Queue.unsafeOffer(output, { chunk, conn })
            })
          }
        })
        server.once("error", (e) => resume(Effect.fail(new RelayFailed({ reason: `${path}: ${e.message}` }))))
        server.listen(path, () => resume(Effect.succeed(server)))
      }),
      (server) =>
        Effect.sync(() => {
          server.close()
          Fs.rmSync(path, { force: true })
        })
    )
    return { slot, path: `${RELAY_PREFIX}${path}`, connected: Deferred.await(connected), done: Deferred.await(ended) }
  })

/**
 * Writes all of `chunk` to `fd`, on libuv's pool: a blocking fd waits there for room, and one
 * that is non-blocking (Node makes its own stdout so once it is used) says EAGAIN, after which
 * the write is tried again a little later. A write that is short goes on with the rest.
 */
const writeInWhole = (fd: number, chunk: Buffer): Effect.Effect<void, NodeJS.ErrnoException> => {
  const once = (from: number) =>
    Effect.async<number, NodeJS.ErrnoException>((resume) =>
      Fs.write(fd, chunk, from, chunk.length - from, null, (error, written) => resume(error ? Effect.fail(error) : Effect.succeed(written)))
    ).pipe(Effect.retry(retryAgain))
  const from = (at: number): Effect.Effect<void, NodeJS.ErrnoException> =>
    at >= chunk.length ? Effect.void : Effect.flatMap(once(at), (written) => from(at + written))
  return from(0)
}

/** Attempts on a full non-blocking fd: 1 ms apart at first, doubling to 20 ms. */
const retryAgain = Schedule.exponential(Duration.millis(1), 2).pipe(
  Schedule.union(Schedule.spaced(Duration.millis(20))),
  Schedule.whileInput((e: NodeJS.ErrnoException) => e.code === "EAGAIN")
)

/** This process's stdio as the sandbox reaches it, and what completes once relayed output is written. */
export interface LentStdio {
  readonly stdio: StdioPaths
  readonly done: Effect.Effect<void>
  /**
   * The detached `runsc relay` lending it, if one does: relayed output is complete once it has
   * exited (it exits when every relay has ended).
   */
  readonly helper: ProcessIdentity | undefined
}

/** Relays for `slots` of `fds`, lent by this process for as long as `Scope` is open; sockets go in `dir`. */
const relayHere = (slots: ReadonlyArray<number>, fds: Stdio, dir: string) =>
  Effect.forEach(slots, (slot) => relayFd(slot, fds[slot]!, Path.join(dir, `relay-${process.pid}-${slot}.sock`)))

/**
 * Relays for `slots` of `fds` lent by a detached `runsc relay` helper (given them as its own
 * stdio), so that they outlive this CLI. The helper is killed if the scope fails (nobody will
 * connect); otherwise it is left to its work.
 */
const relayDetached = (slots: ReadonlyArray<number>, fds: Stdio, dir: string, globalArgs: ReadonlyArray<string>) =>
  spawnDetached({ args: [...globalArgs, "relay", "--dir", dir, "--fds", slots.join(","), "--sync-fd", "3"], stdio: fds }).pipe(
    Effect.mapError(({ reason }) => new RelayFailed({ reason: `the relay helper: ${reason}` })),
    Effect.map(({ line, pid }) => {
      const paths = JSON.parse(line) as Record<string, string>
      return {
        relays: slots.map((slot) => ({ slot, path: paths[slot]!, done: Effect.void })),
        helper: { pid, start: processStart(pid) }
      }
    })
  )

/**
 * `fds` (default: this CLI's 0-2) as stdio of a process in a sandbox: reopened by path where the
 * sandbox may (`confined` false, not a socket), relayed otherwise; relays are lent by this
 * process, or by a helper when the process `outlivesCli`. A closed fd is left out (the sandbox
 * uses /dev/null).
 */
export const lendStdio = (options: {
  readonly dir: string
  readonly confined: boolean
  readonly outlivesCli: boolean
  readonly globalArgs: ReadonlyArray<string>
  readonly fds?: Stdio
}): Effect.Effect<LentStdio, RelayFailed, Scope.Scope> =>
  Effect.gen(function*() {
    const fds = options.fds ?? [0, 1, 2]
    const kinds = fds.map(fdKind)
    const slots = [0, 1, 2]
    const reopened = slots.filter((slot) => kinds[slot] === "reopenable" && !options.confined)
    const relayed = slots.filter((slot) => kinds[slot] !== "closed" && !reopened.includes(slot))
    const { helper, relays } = relayed.length === 0
      ? { relays: [], helper: undefined }
      : options.outlivesCli
      ? yield* relayDetached(relayed, fds, options.dir, options.globalArgs)
      : { relays: yield* relayHere(relayed, fds, options.dir), helper: undefined }
    const paths = [
      ...reopened.map((slot) => [NAMES[slot]!, `/proc/${process.pid}/fd/${fds[slot]}`] as const),
      ...relays.map(({ path, slot }) => [NAMES[slot]!, path] as const)
    ]
    // Output relayed here is complete once the sandbox has closed it; stdin needs no waiting.
    const output = relays.filter(({ slot }) => slot !== 0)
    return {
      stdio: Object.fromEntries(paths),
      done: Effect.forEach(output, ({ done }) => done, { discard: true }),
      helper
    }
  })

/**
 * `runsc relay`: the helper `lendStdio` starts. It lends its inherited fds, tells its starter the
 * relay paths as one JSON line on the sync fd, and exits once every relay has ended, or when
 * the sandbox has not connected to one within a time limit.
 */
export const relayCommand = Command.make(
  "relay",
  {
    dir: Options.directory("dir"),
    fds: Options.text("fds"),
    syncFd: Options.integer("sync-fd")
  },
  ({ dir, fds, syncFd }) =>
    Effect.gen(function*() {
      const slots = fds.split(",").map(Number).filter((slot) => slot === 0 || slot === 1 || slot === 2)
      const relays = yield* relayHere(slots, [0, 1, 2], dir)
      yield* reportReady(syncFd, JSON.stringify(Object.fromEntries(relays.map(({ path, slot }) => [slot, path]))))
      const all = (f: (relay: Relay) => Effect.Effect<void>) => Effect.forEach(relays, f, { discard: true, concurrency: "unbounded" })
      const connected = yield* all((r) => r.connected).pipe(Effect.timeoutOption(CONNECT_LIMIT))
      if (Option.isSome(connected)) yield* all((r) => r.done)
    }).pipe(Effect.scoped)
).pipe(Command.withDescription("internal: lends its stdio to a sandbox over relay sockets (started by create and exec --detach)"))
