/**
 * The sandbox's control server: the Loader's methods served on a Unix socket file.
 *
 * - The socket is a file under runsc's root directory (never an abstract socket, which anyone
 *   could reach), created with mode 0600 in a directory the server makes 0700 when it creates it.
 * - A socket file left by a killed sandbox is stale: nobody accepts on it. The server removes it
 *   only after a connection attempt is refused; a live server's socket is never taken over
 *   (SocketInUse), and a path that is not a socket is never removed.
 * - Calls that change the sandbox (start, create, destroy, exec, signal, pause, resume) run to
 *   the end even when their client disconnects; waits and queries stop with their client.
 * - Frames are newline-delimited JSON of bounded size: a malformed or oversized frame fails that
 *   connection only.
 */
import type { SocketServerError } from "@effect/platform/SocketServer"
import { NodeSocketServer } from "@effect/platform-node"
import { RpcSerialization, RpcServer } from "@effect/rpc"
import { type FileDescription, hostStream } from "@runsc/kernel"
import { Loader, type LoaderShape, type Stdio } from "@runsc/loader"
import { Effect, Layer, Schema } from "effect"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import { RELAY_PREFIX, SandboxRpcs, StdioUnavailable, type StdioPaths } from "./protocol.js"
import { connectRelay } from "./socketStream.js"

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
    const dir = Path.dirname(path)
    yield* Effect.try({
      try: () => Fs.mkdirSync(dir, { recursive: true, mode: 0o700 }),
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

/**
 * Opens the host paths a call named for a process's stdio (unset: /dev/null) as descriptions
 * that own their fds: the process's fd table closes each when its last reference goes. `use`
 * failing (the process never started) closes them at once.
 */
const withStdio = <A, E>(
  paths: StdioPaths,
  use: (stdio: Stdio) => Effect.Effect<A, E>
): Effect.Effect<A, E | StdioUnavailable> =>
  Effect.gen(function*() {
    const opened: Array<FileDescription> = []
    const closeAll = Effect.forEach(opened, (d) => d.close, { discard: true })
    const open = (path: string | undefined, flags: string) =>
      (path?.startsWith(RELAY_PREFIX)
        ? Effect.mapError(
          connectRelay(path.slice(RELAY_PREFIX.length)),
          (e) => new StdioUnavailable({ path, reason: e.message })
        )
        : Effect.try({
          try: () => hostStream(Fs.openSync(path ?? "/dev/null", flags), { owned: true }),
          catch: (e) => new StdioUnavailable({ path: path ?? "/dev/null", reason: (e as Error).message })
        })).pipe(
          Effect.map((description) => {
            opened.push(description)
            return description
          }),
          Effect.tapError(() => closeAll)
        )
    const stdio: Stdio = {
      stdin: yield* open(paths.stdin, "r"),
      stdout: yield* open(paths.stdout, "a"),
      stderr: yield* open(paths.stderr, "a")
    }
    return yield* Effect.tapError(use(stdio), () => closeAll)
  })

/** Opens stdio paths now, for a later start; the descriptions are closed if nothing takes them. */
const openHeld = (paths: StdioPaths) => withStdio(paths, (stdio) => Effect.succeed(stdio))

/** Closes what withStdio opened for a process that never took it. */
const closeStdio = (stdio: Stdio) =>
  Effect.forEach([stdio.stdin, stdio.stdout, stdio.stderr], (d) => (typeof d === "object" ? d.close : Effect.void), {
    discard: true
  })

const handlers = (loader: LoaderShape) => {
  // Stdio opened at a sub-container's create, waiting for its start (or its destroy).
  const held = new Map<string, Stdio>()
  const release = (id: string) =>
    Effect.suspend(() => {
      const stdio = held.get(id)
      held.delete(id)
      return stdio === undefined ? Effect.void : closeStdio(stdio)
    })
  return SandboxRpcs.of({
    // Lifecycle calls finish even if their client goes away (a half-done start helps nobody).
    StartRoot: () => Effect.uninterruptible(loader.startRoot),
    CreateSubcontainer: ({ id, stdio }) =>
      Effect.uninterruptible(Effect.gen(function*() {
        const opened = stdio === undefined ? undefined : yield* openHeld(stdio)
        yield* loader.createSubcontainer(id).pipe(Effect.tapError(() => (opened === undefined ? Effect.void : closeStdio(opened))))
        if (opened !== undefined) held.set(id, opened)
      })),
    StartSubcontainer: ({ bundle, id, stdio }) =>
      Effect.uninterruptible(
        held.has(id) && stdio.stdin === undefined && stdio.stdout === undefined && stdio.stderr === undefined
          ? Effect.suspend(() => {
            const opened = held.get(id)!
            held.delete(id)
            return loader.startSubcontainer({ containerId: id, bundle, stdio: opened }).pipe(
              Effect.tapError(() => closeStdio(opened))
            )
          })
          : withStdio(stdio, (opened) => loader.startSubcontainer({ containerId: id, bundle, stdio: opened }))
      ),
    DestroySubcontainer: ({ id }) => Effect.uninterruptible(Effect.zipRight(release(id), loader.destroySubcontainer(id))),
    ExecuteAsync: ({ argv, cwd, env, id, stdio, terminal, uid }) =>
      Effect.uninterruptible(
        withStdio(stdio, (opened) =>
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
    WaitPid: ({ id, pid }) => loader.waitPid(id, pid),
    Signal: ({ id, mode, pid, signo }) => Effect.uninterruptible(loader.signalContainer(id, pid, signo, mode)),
    Processes: ({ id }) => loader.processes(id),
    Event: ({ id }) => loader.event(id),
    Pause: () => Effect.uninterruptible(loader.pause),
    Resume: () => Effect.uninterruptible(loader.resume),
    IsPaused: () => loader.isPaused,
    RuntimeState: ({ id }) => loader.runtimeState(id)
  })
}

/**
 * Serves the Loader of this process on the Unix socket `path` for as long as the layer lives.
 * Fails (SocketInUse, SocketPathInvalid) before serving when the path cannot be taken safely.
 */
export const serveControl = (
  path: string
): Layer.Layer<never, SocketInUse | SocketPathInvalid | SocketServerError, Loader> =>
  RpcServer.layer(SandboxRpcs).pipe(
    Layer.provide(SandboxRpcs.toLayer(Effect.map(Loader, handlers))),
    Layer.provide(RpcServer.layerProtocolSocketServer),
    Layer.provide(
      Layer.scopedDiscard(
        Effect.acquireRelease(Effect.void, () => Effect.sync(() => Fs.rmSync(path, { force: true })))
      )
    ),
    Layer.provide(
      Layer.unwrapEffect(Effect.as(prepareSocketPath(path), NodeSocketServer.layer({ path })))
    ),
    Layer.provide(RpcSerialization.layerNdjsonWith({ maxBufferSize: MAX_FRAME_BYTES })),
    Layer.tap(() => Effect.sync(() => Fs.chmodSync(path, 0o600)))
  )
