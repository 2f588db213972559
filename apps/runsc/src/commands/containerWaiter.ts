/**
 * `runsc container-waiter --socket S ID`: the holder of a pod's sub-container (see holder.ts),
 * left by its `create`, whose --pid-file names it: the container has no host process of its
 * own, and an engine's shim waits on that pid for the container's end. It waits from the create
 * until the container's init has started and exited, and exits with its status; a container
 * stopped without a start (destroyed, its start failed), or a sandbox gone, is 137, as an init
 * killed before it ran.
 */
import { Args, Command, Options } from "@effect/cli"
import { SIGKILL, toShellCode } from "@runsc/abi"
import { call } from "@runsc/control"
import { Duration, Effect, Fiber, Option } from "effect"
import { reportReady } from "../detached.js"
import { awaitRelay, forwardSignals } from "../holder.js"
import { setExitCode } from "../processContext.js"

const NEVER_RAN = 128 + SIGKILL

export const containerWaiterCommand = Command.make(
  "container-waiter",
  {
    syncFd: Options.integer("sync-fd"),
    socket: Options.text("socket").pipe(Options.withDescription("the pod sandbox's control socket")),
    terminal: Options.boolean("terminal"),
    relay: Options.text("relay").pipe(Options.withDescription("PID:START of the relay helper lending the container's stdio"), Options.optional),
    id: Args.text({ name: "container-id" })
  },
  ({ id, relay, socket, syncFd, terminal }) =>
    Effect.gen(function*() {
      yield* forwardSignals({ id, socket }, 0, terminal)
      // The sandbox serves one connection's requests in order: once the query after the hold
      // is answered, the hold is registered, and this process may be published as its holder.
      const code = yield* call(socket, "HoldContainer", (c) =>
        Effect.gen(function*() {
          const hold = yield* Effect.fork(c.HoldContainer({ id }))
          yield* c.IsPaused()
          yield* reportReady(syncFd, "ready")
          return yield* Fiber.join(hold)
        }), Duration.infinity).pipe(
          Effect.map(toShellCode),
          Effect.catchTags({
            ContainerNotFound: () => Effect.succeed(NEVER_RAN),
            ContainerNotStarted: () => Effect.succeed(NEVER_RAN),
            SandboxUnreachable: () => Effect.succeed(NEVER_RAN)
          })
        )
      if (Option.isSome(relay)) yield* awaitRelay(relay.value)
      yield* setExitCode(code)
    }).pipe(Effect.scoped)
).pipe(Command.withDescription("internal: holds a pod sub-container's status (started by its create)"))
