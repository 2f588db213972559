/**
 * The sandbox's control server: the Loader's methods served on a Unix socket file.
 *
 * - The socket is a file under runsc's root directory (never an abstract socket, which anyone
 *   could reach), created with mode 0600 in a directory the server makes 0700 when it creates it.
 * - A socket file left by a killed sandbox is stale: nobody accepts on it. The server removes it
 *   only after a connection attempt is refused; a live server's socket is never taken over
 *   (SocketInUse), and a path that is not a socket is never removed. On its way out a server
 *   removes its socket file by name (libuv does so as it closes a listening socket): whoever
 *   manages these paths must never take the path of a server that still listens. A path too
 *   long for a socket address is refused (Node would bind it under a name cut short).
 * - The host files a call names for a process's stdio are opened without ever blocking the
 *   sentry (a FIFO nobody has open at its other end would hold it in open(2)).
 * - Calls that change the sandbox (start, create, destroy, exec, signal, pause, resume) run to
 *   the end even when their client disconnects; waits and queries stop with their client (a
 *   wait by the host process that holds an exec'd process SIGKILLs it then: WaitPid `holder`).
 * - Frames are newline-delimited JSON of bounded size (framing.ts): a malformed or oversized
 *   frame closes that connection, and only it.
 * - Beside the socket, a second one takes the host trees a sub-container's creator donates
 *   (descriptors, which Node's sockets cannot carry: @runsc/kernel's donation.ts).
 */
import type { SocketServerError } from "@effect/platform/SocketServer"
import { NodeSocketServer } from "@effect/platform-node"
import { RpcServer } from "@effect/rpc"
import { SIGKILL } from "@runsc/abi"
import {
  type DonatedFds,
  type DonationPoint,
  DonationFailed,
  type FileDescription,
  hostStream,
  listenForDonations
} from "@runsc/kernel"
import { Loader, type LoaderShape, type Stdio } from "@runsc/loader"
import { hostTreesOf } from "@runsc/spec"
import { Duration, Effect, Layer, Schedule, Schema, Stream } from "effect"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import { ForwardFailed, RELAY_PREFIX, SandboxRpcs, StdioUnavailable, type StdioPaths } from "./protocol.js"
import { framing } from "./framing.js"
import { connectRelay } from "./socketStream.js"

/** The longest path a Unix socket may be bound to (sun_path, less its NUL). */
export const MAX_SOCKET_PATH = 107

/** Largest frame a client may send (a spec path, an argv, an env: far below this). */
export const MAX_FRAME_BYTES = 1024 * 1024

export class SocketInUse extends Schema.TaggedError<SocketInUse>()("SocketInUse", { path: Schema.String }) {
  override get message(): string {
    return `control socket ${this.path} is in use by a live sandbox`
  }
}

export class SocketPathInvalid extends Schema.TaggedError<SocketPathInvalid>()("SocketPathInvalid", {
  path: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `control socket ${this.path}: ${this.reason}`
  }
}

/** Whether something accepts connections on the socket at `path`. */
const isServing = (path: string): Effect.Effect<boolean> =>
  Effect.async<boolean>((resume) => {
    const socket = Net.createConnection({ path })
    socket.once("connect", () => {
      socket.destroy()
      resume(Effect.succeed(true))
    })
    socket.once("error", () => resume(Effect.succeed(false)))
    return Effect.sync(() => socket.destroy())
  })

/** Makes `path` free for a new socket: its directory exists (0700 if made here), no stale socket. */
export const prepareSocketPath = (path: string): Effect.Effect<void, SocketInUse | SocketPathInvalid> =>
  Effect.gen(function*() {
    // Longer paths do not fit a socket address: the socket would be bound under a name cut short.
    if (Buffer.byteLength(path) > MAX_SOCKET_PATH) {
      return yield* new SocketPathInvalid({ path, reason: `longer than ${MAX_SOCKET_PATH} bytes, the most a Unix socket's path may have` })
    }
    const dir = Path.dirname(path)
    yield* Effect.try({
      try: () => {
        try {
          Fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
        } catch (e) {
          // A sandbox under Node's permission model may touch its socket only: whoever confined
          // it made the directory (if not, listening fails with a clear error).
          if ((e as NodeJS.ErrnoException).code !== "ERR_ACCESS_DENIED") throw e
        }
      },
      catch: (e) => new SocketPathInvalid({ path, reason: (e as Error).message })
    })
    const existing = yield* Effect.sync(() => Fs.lstatSync(path, { throwIfNoEntry: false }))
    if (existing === undefined) return
    if (!existing.isSocket()) return yield* new SocketPathInvalid({ path, reason: "exists and is not a socket" })
    if (yield* isServing(path)) return yield* new SocketInUse({ path })
    yield* Effect.try({
      try: () => Fs.rmSync(path, { force: true }),
      catch: (e) => new SocketPathInvalid({ path, reason: `stale socket not removable: ${(e as Error).message}` })
    })
  })

/** What a call opened for a process's fds 0, 1 and 2: descriptions that own their host fds. */
interface OpenedStdio {
  readonly stdin: FileDescription
  readonly stdout: FileDescription
  readonly stderr: FileDescription
  readonly preserved?: ReadonlyArray<FileDescription>
}

/** Closes stdio that no process took (its fd table would have closed it otherwise). */
const closeStdio = (stdio: OpenedStdio) =>
  Effect.forEach([stdio.stdin, stdio.stdout, stdio.stderr, ...(stdio.preserved ?? [])], (d) => d.close, { discard: true })

/**
 * How long an open for writing waits for a FIFO's reader: a FIFO whose reader is about to come
 * (a reader between two opens) is written to, as a blocking open would; one nobody reads fails
 * the call rather than hold it for ever.
 */
const FIFO_READER_WAIT = Duration.seconds(10)

/** Between attempts to open a FIFO that has no reader yet. */
const readerPoll = Schedule.spaced(Duration.millis(50)).pipe(Schedule.upTo(FIFO_READER_WAIT))

type Slot = "stdin" | "stdout" | "stderr"

/**
 * Never blocking (O_NONBLOCK): an open of a FIFO waits for its other end, and would hold the
 * sentry's one thread — every container of the sandbox, and the control plane — for as long.
 * O_NOCTTY: a terminal must not become the sandbox's controlling one. The descriptor stays
 * non-blocking: hostStream waits out EAGAIN on it (and reads and writes through a description of
 * its own besides).
 */
const openFlags: Record<Slot, number> = {
  stdin: Fs.constants.O_RDONLY | Fs.constants.O_NONBLOCK | Fs.constants.O_NOCTTY,
  stdout: Fs.constants.O_WRONLY | Fs.constants.O_APPEND | Fs.constants.O_CREAT | Fs.constants.O_NONBLOCK | Fs.constants.O_NOCTTY,
  stderr: Fs.constants.O_WRONLY | Fs.constants.O_APPEND | Fs.constants.O_CREAT | Fs.constants.O_NONBLOCK | Fs.constants.O_NOCTTY
}

const isFifo = (path: string) => {
  try {
    return Fs.statSync(path).isFIFO()
  } catch {
    return false
  }
}

/**
 * Opens the host file at `path` as `slot`. A FIFO without a writer opens at once for reading (its
 * reads see end of file until a writer comes, as on Linux); one without a reader cannot be opened
 * for writing (ENXIO): attempts go on, off the sentry's thread, for FIFO_READER_WAIT.
 */
const openHost = (path: string, slot: Slot): Effect.Effect<number, StdioUnavailable> => {
  const noReader = (e: NodeJS.ErrnoException) => e.code === "ENXIO" && isFifo(path)
  return Effect.try({
    try: () => Fs.openSync(path, openFlags[slot], 0o666),
    catch: (e) => e as NodeJS.ErrnoException
  }).pipe(
    Effect.retry({ schedule: readerPoll, while: noReader }),
    Effect.mapError((e) =>
      new StdioUnavailable({
        path,
        reason: noReader(e)
          ? `${slot} is a FIFO that no process has open for reading (none came within ${Duration.format(FIFO_READER_WAIT)})`
          : `${slot}: ${e.message}`
      })
    )
  )
}

const openOne = (path: string | undefined, slot: Slot): Effect.Effect<FileDescription, StdioUnavailable> =>
  path?.startsWith(RELAY_PREFIX)
    ? Effect.mapError(connectRelay(path.slice(RELAY_PREFIX.length)), (e) => new StdioUnavailable({ path, reason: e.message }))
    : Effect.map(openHost(path ?? "/dev/null", slot), (fd) => hostStream(fd, { owned: true }))

/**
 * Opens the host paths a call named for a process's stdio (unset: /dev/null) as descriptions
 * that own their fds: the process's fd table closes each when its last reference goes. When
 * one fails to open, those already open are closed.
 */
const openStdio = (paths: StdioPaths): Effect.Effect<OpenedStdio, StdioUnavailable> =>
  Effect.gen(function*() {
    const stdin = yield* openOne(paths.stdin, "stdin")
    const stdout = yield* openOne(paths.stdout, "stdout").pipe(Effect.tapError(() => stdin.close))
    const stderr = yield* openOne(paths.stderr, "stderr").pipe(Effect.tapError(() => Effect.zipRight(stdin.close, stdout.close)))
    return { stdin, stdout, stderr }
  })

/**
 * `openStdio`, and the files the process is to get besides (--preserve-fds), claimed first from
 * their donation and owned the same way (closed if the stdio cannot be opened).
 */
const openWithPreserved = (
  paths: StdioPaths,
  preserved: Effect.Effect<DonatedFds, DonationFailed>
): Effect.Effect<OpenedStdio, StdioUnavailable | DonationFailed> =>
  Effect.gen(function*() {
    const more = (yield* preserved).takeAll().map((fd) => hostStream(fd, { owned: true }))
    const stdio = yield* Effect.tapError(openStdio(paths), () => Effect.forEach(more, (d) => d.close, { discard: true }))
    return { ...stdio, preserved: more }
  })

/** Runs `start` with the stdio `open` gives; a start that fails (nothing took the fds) closes them. */
const withStdio = <A, E, E2>(
  open: Effect.Effect<OpenedStdio, E2>,
  start: (stdio: Stdio) => Effect.Effect<A, E>
): Effect.Effect<A, E | E2> =>
  Effect.flatMap(open, (stdio) => Effect.tapError(start(stdio), () => closeStdio(stdio)))

const handlers = (loader: LoaderShape, donations: DonationPoint) => {
  // Stdio opened at a sub-container's create, waiting for its start (or its destroy).
  const held = new Map<string, OpenedStdio>()
  const release = (id: string) =>
    Effect.suspend(() => {
      const stdio = held.get(id)
      held.delete(id)
      return stdio === undefined ? Effect.void : closeStdio(stdio)
    })
  /** A sub-container starts with the stdio held since its create, unless the start names some. */
  const stdioAtStart = (id: string, paths: StdioPaths) =>
    Effect.suspend(() => {
      const opened = held.get(id)
      held.delete(id)
      const named = paths.stdin !== undefined || paths.stdout !== undefined || paths.stderr !== undefined
      if (opened === undefined) return openStdio(paths)
      return named ? Effect.zipRight(closeStdio(opened), openStdio(paths)) : Effect.succeed(opened)
    })
  return SandboxRpcs.of({
    // Lifecycle calls finish even if their client goes away (a half-done start helps nobody).
    StartRoot: () => Effect.uninterruptible(loader.startRoot),
    CreateSubcontainer: ({ bundle, donation, id, stdio }) =>
      Effect.uninterruptible(Effect.gen(function*() {
        const trees = yield* donations.claim(donation)
        // One descriptor for each tree the spec mounts, or none is used.
        const wanted = hostTreesOf(bundle).length
        if (trees.count !== wanted) {
          trees.close()
          return yield* new DonationFailed({ reason: `${trees.count} descriptors were donated for the ${wanted} host trees the spec mounts` })
        }
        const opened = stdio === undefined ? undefined : yield* Effect.tapError(openStdio(stdio), () => Effect.sync(() => trees.close()))
        // The loader owns the trees from here, and closes them if the create fails.
        yield* loader.createSubcontainer(id, { bundle, trees }).pipe(
          Effect.tapError(() => (opened === undefined ? Effect.void : closeStdio(opened)))
        )
        if (opened !== undefined) held.set(id, opened)
      })),
    StartSubcontainer: ({ id, stdio }) =>
      Effect.uninterruptible(
        withStdio(stdioAtStart(id, stdio), (opened) => loader.startSubcontainer({ containerId: id, stdio: opened }))
      ),
    DestroySubcontainer: ({ id }) =>
      Effect.uninterruptible(Effect.zipRight(release(id), loader.destroySubcontainer(id))),
    ExecuteAsync: ({ argv, cwd, env, id, preserved, stdio, terminal, uid }) =>
      Effect.uninterruptible(
        withStdio(preserved === undefined ? openStdio(stdio) : openWithPreserved(stdio, donations.claim(preserved)), (opened) =>
          loader.execute({
            containerId: id,
            argv,
            stdio: opened,
            ...(env !== undefined ? { env } : {}),
            ...(cwd !== undefined ? { cwd } : {}),
            ...(uid !== undefined ? { uid } : {}),
            ...(terminal !== undefined ? { terminal } : {})
          }))
      ),
    Wait: ({ id }) => loader.wait(id),
    HoldContainer: ({ id }) =>
      Effect.onInterrupt(loader.awaitExit(id), () => Effect.ignore(loader.signalContainer(id, 0, SIGKILL, "Process"))),
    WaitPid: ({ holder, id, pid }) =>
      holder === true
        ? Effect.onInterrupt(loader.waitPid(id, pid), () => Effect.ignore(loader.signalContainer(id, pid, SIGKILL, "Process")))
        : loader.waitPid(id, pid),
    Signal: ({ id, mode, pid, signo }) => Effect.uninterruptible(loader.signalContainer(id, pid, signo, mode)),
    Processes: ({ id }) => loader.processes(id),
    Event: ({ id }) => loader.event(id),
    Forward: (port) =>
      Stream.unwrapScoped(
        loader.forward(port).pipe(
          Effect.mapError((e) => new ForwardFailed({ address: e.address, reason: e.reason })),
          Effect.as(Stream.concat(Stream.succeed("listening" as const), Stream.never))
        )
      ),
    Pause: () => Effect.uninterruptible(loader.pause),
    Resume: () => Effect.uninterruptible(loader.resume),
    IsPaused: () => loader.isPaused,
    RuntimeState: ({ id }) => loader.runtimeState(id)
  })
}

/**
 * Where the sandbox serving the control socket `socket` takes donated host trees (donation.ts):
 * beside it, a name no longer than its own (`<id>.sock` → `<id>.fds`), so it fits wherever the
 * control socket's does.
 */
export const donationSocketOf = (socket: string): string =>
  socket.endsWith(".sock") ? `${socket.slice(0, -".sock".length)}.fds` : `${socket}.fds`

/**
 * Serves the Loader of this process on the Unix socket `path` for as long as the layer lives,
 * and takes donated host trees at `donationSocketOf(path)`, made once `path` is held.
 * Fails (SocketInUse, SocketPathInvalid) before serving when the path cannot be taken safely.
 */
export const serveControl = (
  path: string
): Layer.Layer<never, SocketInUse | SocketPathInvalid | SocketServerError, Loader> =>
  RpcServer.layer(SandboxRpcs).pipe(
    Layer.provide(SandboxRpcs.toLayer(Effect.zipWith(Loader, listenForDonations(donationSocketOf(path)), handlers))),
    Layer.provide(RpcServer.layerProtocolSocketServer),
    Layer.provide(
      Layer.scopedDiscard(
        Effect.acquireRelease(Effect.void, () => Effect.sync(() => Fs.rmSync(path, { force: true })))
      )
    ),
    Layer.provide(
      Layer.unwrapEffect(Effect.as(prepareSocketPath(path), NodeSocketServer.layer({ path })))
    ),
    Layer.provide(framing(MAX_FRAME_BYTES)),
    Layer.tap(() => Effect.sync(() => Fs.chmodSync(path, 0o600)))
  )
