/**
 * Published ports (runsc's `--network=sandbox`, as `docker -p` gives them): a host address and
 * port that the sandbox process listens on with Node's `net`, each connection it accepts
 * bridged to a guest listener on the sandbox's loopback. The guest sees a connection from
 * 127.0.0.1; the host client sees the guest's bytes.
 *
 * The bridge (hostBridge.ts) keeps both sides' backpressure, and each bridged connection is
 * charged to the sandbox's memory as any connection is: a flood of host connections is refused
 * (the host socket closed) once that memory is full.
 */
import { Data, Deferred, Effect, FiberSet, type Scope } from "effect"
import * as Net from "node:net"
import type { Network, SocketOwner } from "@runsc/kernel"
import { type IpAddress, loopbackOf } from "./address.js"
import { bridge } from "./hostBridge.js"

export interface PublishedPort {
  /** The host address to listen on (default 127.0.0.1: never every interface unless asked). */
  readonly hostAddress: string
  readonly hostPort: number
  /** The guest's port on the sandbox's loopback. */
  readonly guestPort: number
  /** The guest address connections are bridged to (default 127.0.0.1). */
  readonly guestAddress?: IpAddress
}

/** The host address and port could not be listened on (in use, not the host's, no permission). */
export class PublishFailed extends Data.TaggedError("PublishFailed")<{
  readonly address: string
  readonly reason: string
  /** The host's error code (EADDRINUSE, EACCES, …), when it gave one. */
  readonly code?: string | undefined
}> {
  override get message(): string {
    return `cannot publish ${this.address}: ${this.reason}`
  }
}

/**
 * How long the sandbox's end waits for bridged connections to finish (a guest that answered
 * and exited at once has its answer delivered, as a host kernel would) before it cuts them.
 */
const DRAIN = "1 second"

/**
 * Listens on `port.hostAddress:port.hostPort` until the scope closes, bridging each connection
 * to 127.0.0.1:`port.guestPort` in `network` (its buffers charged to `owner`). A connection
 * nobody listens for in the guest is closed at once, as a refused one would be.
 */
export const publishPort = (network: Network, port: PublishedPort, owner: SocketOwner): Effect.Effect<void, PublishFailed, Scope.Scope> =>
  Effect.gen(function*() {
    const bridges = yield* FiberSet.make<void, never>()
    const run = yield* FiberSet.runtime(bridges)<never>()
    // Half-open: a client that ends its side still reads the answer (Node would end ours too).
    const server = Net.createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, (host) => {
      host.on("error", () => {})
      run(Effect.gen(function*() {
        const to = port.guestAddress ?? loopbackOf("inet4", port.guestPort)
        const guest = yield* network.open(to.family, "stream", owner)
        const connected = yield* Effect.either(guest.socket.connect({ ...to, port: port.guestPort }, false))
        if (connected._tag === "Left") {
          yield* guest.close
          return yield* Effect.fail(connected.left)
        }
        yield* Effect.logDebug(`net: published ${port.hostAddress}:${port.hostPort} <- host ${host.remoteAddress ?? "?"}:${host.remotePort ?? "?"}, to the guest's port ${port.guestPort}`)
        yield* bridge(host, guest)
      }).pipe(Effect.catchAll(() => Effect.sync(() => host.destroy()))))
    })
    const address = `${port.hostAddress}:${port.hostPort}`
    const listening = yield* Deferred.make<void, PublishFailed>()
    server.once("error", (e: NodeJS.ErrnoException) => Deferred.unsafeDone(listening, Effect.fail(new PublishFailed({ address, reason: e.message, code: e.code }))))
    server.listen(port.hostPort, port.hostAddress, () => Deferred.unsafeDone(listening, Effect.void))
    // Stops listening and lets open bridges finish for a moment; those still open then end with
    // the scope's fibers (made first, so interrupted after this), which close both sides.
    yield* Effect.addFinalizer(() =>
      // Interruptible: a finalizer runs uninterruptibly, and the timeout must be able to end the wait.
      Effect.zipRight(Effect.sync(() => server.close()), Effect.interruptible(FiberSet.awaitEmpty(bridges)).pipe(Effect.timeout(DRAIN), Effect.ignore))
    )
    yield* Deferred.await(listening)
  })
