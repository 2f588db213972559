/**
 * The CLI's side of the control socket: one connection per call, as RUNSC.md's topology says,
 * never retried (a CLI must not hang on a dead sandbox), and every call bounded in time.
 *
 * Failures of the transport are typed: SandboxUnreachable (no socket, or nobody accepting on
 * it: the sandbox is gone), ControlTimeout (it did not answer in time). Failures of the call
 * itself arrive as the Loader's own tagged errors.
 */
import { Socket } from "@effect/platform"
import { NodeSocket } from "@effect/platform-node"
import { type RpcClientError, RpcClient, RpcSerialization } from "@effect/rpc"
import { Duration, Effect, Layer, Option, Schema, type Scope } from "effect"
import { SandboxRpcs } from "./protocol.js"
import { MAX_FRAME_BYTES } from "./server.js"

export class SandboxUnreachable extends Schema.TaggedError<SandboxUnreachable>()("SandboxUnreachable", {
  socket: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `sandbox is not reachable at ${this.socket}: ${this.reason}`
  }
}

export class ControlTimeout extends Schema.TaggedError<ControlTimeout>()("ControlTimeout", {
  socket: Schema.String,
  method: Schema.String,
  millis: Schema.Number
}) {
  override get message(): string {
    return `sandbox at ${this.socket} did not answer ${this.method} within ${this.millis} ms`
  }
}

/** The client of one sandbox's control socket. */
export type SandboxClient = RpcClient.FromGroup<typeof SandboxRpcs, RpcClientError.RpcClientError>

/** A connection to the sandbox at `socket`, for the enclosing scope. */
export const connect = (socket: string): Effect.Effect<SandboxClient, SandboxUnreachable, Scope.Scope> =>
  Effect.gen(function*() {
    // Built in the caller's scope: `Effect.provide(layer)` would close the connection as soon
    // as the client is made.
    const protocol = yield* Layer.build(
      RpcClient.layerProtocolSocket({ retryTransientErrors: false }).pipe(
        Layer.provide(NodeSocket.layerNet({ path: socket })),
        Layer.provide(RpcSerialization.layerNdjsonWith({ maxBufferSize: MAX_FRAME_BYTES }))
      )
    )
    return yield* Effect.provide(RpcClient.make(SandboxRpcs), protocol)
  }).pipe(Effect.mapError((e) => new SandboxUnreachable({ socket, reason: e.message })))

/**
 * Runs one call on a fresh connection: transport failures become SandboxUnreachable, and the
 * call fails ControlTimeout after `timeout` (waits pass `Duration.infinity`).
 */
export const call = <A, E>(
  socket: string,
  method: string,
  f: (client: SandboxClient) => Effect.Effect<A, E | RpcClientError.RpcClientError>,
  timeout: Duration.DurationInput = "30 seconds"
): Effect.Effect<A, Exclude<E, RpcClientError.RpcClientError> | SandboxUnreachable | ControlTimeout> => {
  const bounded = Duration.isFinite(Duration.decode(timeout))
  const run = Effect.scoped(Effect.flatMap(connect(socket), f)).pipe(
    Effect.catchIf(
      (e): e is Extract<E | RpcClientError.RpcClientError, RpcClientError.RpcClientError> =>
        typeof e === "object" && e !== null && (e as { _tag?: unknown })._tag === "RpcClientError",
      (e) => Effect.fail(new SandboxUnreachable({ socket, reason: e.message }))
    ),
    // The rpc client makes a failed write of a request a defect; the socket's end closing
    // under it (a sandbox that exits as the call goes out) is a sandbox gone, not a bug.
    Effect.catchSomeDefect((defect) =>
      Socket.isSocketError(defect) ? Option.some(Effect.fail(new SandboxUnreachable({ socket, reason: defect.message }))) : Option.none()
    )
  ) as Effect.Effect<A, Exclude<E, RpcClientError.RpcClientError> | SandboxUnreachable>
  return bounded
    ? Effect.timeoutFail(run, {
      duration: timeout,
      onTimeout: () => new ControlTimeout({ socket, method, millis: Duration.toMillis(timeout) })
    })
    : run
}
