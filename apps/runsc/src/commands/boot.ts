/**
 * `runsc boot`: the sandbox process (started by `create`, not by hand). It hosts the Loader and
 * serves it on the control socket; once serving it tells its creator so on the sync fd (the
 * start-sync handshake) and waits for its creator's confirmation that the container is
 * registered (without it, it exits at once: see detached.ts); then lives until the root
 * container's init has exited, records that exit for `wait`, and exits with it.
 */
import { Args, Command, Options } from "@effect/cli"
import { toShellCode } from "@runsc/abi"
import { serveControl } from "@runsc/control"
import { Loader } from "@runsc/loader"
import { validateContainerId } from "@runsc/spec"
import { Effect, Fiber, Layer, Option } from "effect"
import { ConfinementRefused, refusedGrants } from "../confinement.js"
import { awaitConfirmation, NOT_READY, reportReady } from "../detached.js"
import { configure } from "../globals.js"
import { setExitCode, StartedThreads } from "../processContext.js"
import { rootCommand } from "../root.js"
import { StateStore } from "../state.js"

/** The status of a sandbox whose creator never confirmed it (nobody waits for it). */
const ABANDONED = 128


export const bootCommand = Command.make(
  "boot",
  {
    // Text, not a checked directory: create has checked it, and a confined sandbox need not
    // look at the directory's own entry.
    bundle: Options.text("bundle").pipe(Options.withDescription("bundle of the root container")),
    socket: Options.text("socket").pipe(Options.withDescription("control socket to serve")),
    syncFd: Options.integer("sync-fd").pipe(
      Options.withDescription("fd to write one line on once the control socket is served"),
      Options.optional
    ),
    preservedFds: Options.integer("preserved-fds").pipe(
      Options.withDescription("this process's fds 4..4+N-1 are the root init's (create --preserve-fds)"),
      Options.withDefault(0)
    ),
    id: Args.text({ name: "container-id" })
  },
  ({ bundle, id, preservedFds, socket, syncFd }) =>
    Effect.gen(function*() {
      const refused = refusedGrants(process.execArgv)
      if (refused.length > 0) return yield* new ConfinementRefused({ paths: refused })
      // It names files under the state root.
      const containerId = yield* validateContainerId(id)
      const flags = yield* rootCommand
      const runtime = yield* configure(flags)
      const store = yield* StateStore
      const startedThreads = yield* StartedThreads
      const sandbox = serveControl(socket).pipe(
        Layer.provideMerge(
          Loader.layer({
            containerId,
            bundle,
            forwardSignals: true,
            networkMode: flags.network,
            logConnections: flags.debug,
            ...(preservedFds > 0 ? { stdio: { preserved: Array.from({ length: preservedFds }, (_, i) => 4 + i) } } : {}),
            ...(runtime.panicSignal !== undefined ? { panicSignal: runtime.panicSignal } : {}),
            kernel: {
              warmWorkers: 1,
              startedThreads,
              watchdog: { action: flags.watchdogAction },
              ...(runtime.strace ? { strace: runtime.strace } : {})
            }
          })
        )
      )
      // The creator's answer, watched from the start: a creator that goes away without
      // confirming (killed at any point of the boot) ends this sandbox, which nobody knows of.
      const confirmation = Option.isSome(syncFd) ? yield* Effect.fork(awaitConfirmation(syncFd.value)) : undefined
      const abandoned = confirmation === undefined
        ? Effect.never
        : Effect.flatMap(Fiber.join(confirmation), (confirmed) => (confirmed ? Effect.never : Effect.void))
      const serve = Effect.gen(function*() {
        const loader = yield* Loader
        if (Option.isSome(syncFd) && confirmation !== undefined) {
          // The root's init prepared, as runc's create sets its process up: a program that is
          // missing or not wasm fails the create, whose creator gets the reason on the sync fd.
          const prepared = yield* Effect.either(loader.prepareRoot)
          if (prepared._tag === "Left") {
            // The creator reports it (to its caller and --log), not this process, whose stderr is the container's.
            yield* reportReady(syncFd.value, `${NOT_READY}${prepared.left.message.replace(/\n/g, " ")}`)
            return undefined
          }
          // Serving: the creator registers the container, then confirms; a start may come from then on.
          yield* reportReady(syncFd.value, "ready", { close: false })
          if (!(yield* Fiber.join(confirmation))) return "abandoned" as const
        }
        const status = yield* loader.awaitRootExit
        // Recorded before the teardown: a `wait` that finds the sandbox going away reads it. A
        // record that cannot be written (a full disk) leaves waiters with the live answer only.
        yield* store.writeExit(containerId, toShellCode(status)).pipe(
          Effect.catchAll((e) => Effect.logWarning(`cannot record the exit status of ${containerId}: ${e.message}`))
        )
        return status
      }).pipe(Effect.provide(sandbox), Effect.provide(runtime.logger))
      // undefined: not ready (its create fails, and kills this process); "abandoned": its create
      // went away without confirming it.
      const status = yield* Effect.raceFirst(serve, Effect.as(abandoned, "abandoned" as const))
      if (status === "abandoned") {
        yield* Effect.logDebug(`container ${containerId}: not registered by its create; the sandbox exits`).pipe(
          Effect.provide(runtime.logger)
        )
        // Its create may have written the container's record before it went: readers then find
        // this and remove that record, as nothing of the container was ever made.
        yield* Effect.ignore(store.writeAbandoned(containerId))
      }
      yield* setExitCode(status === undefined || status === "abandoned" ? ABANDONED : toShellCode(status))
    }).pipe(Effect.scoped)
).pipe(Command.withDescription("internal: the sandbox process that `create` starts"))
