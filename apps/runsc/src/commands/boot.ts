/**
 * `runsc boot`: the sandbox process (started by `create`, not by hand). It hosts the Loader and
 * serves it on the control socket; once serving it tells its creator so on the sync fd (the
 * start-sync handshake), then lives until the root container's init has exited, records that
 * exit for `wait`, and exits with it.
 */
import { Args, Command, Options } from "@effect/cli"
import { toShellCode } from "@runsc/abi"
import { serveControl } from "@runsc/control"
import { Loader } from "@runsc/loader"
import { Effect, Layer, Option } from "effect"
import { ConfinementRefused, refusedGrants } from "../confinement.js"
import { reportReady } from "../detached.js"
import { configure, rootDirOf } from "../globals.js"
import { setExitCode, StartedThreads } from "../processContext.js"
import { rootCommand } from "../root.js"
import { StateStore } from "../state.js"

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
    id: Args.text({ name: "container-id" })
  },
  ({ bundle, id, socket, syncFd }) =>
    Effect.gen(function*() {
      const refused = refusedGrants(process.execArgv)
      if (refused.length > 0) return yield* new ConfinementRefused({ paths: refused })
      const flags = yield* rootCommand
      const runtime = yield* configure(flags)
      const store = new StateStore(rootDirOf(flags))
      const startedThreads = yield* StartedThreads
      const sandbox = serveControl(socket).pipe(
        Layer.provideMerge(
          Loader.layer({
            containerId: id,
            bundle,
            forwardSignals: true,
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
      const status = yield* Effect.gen(function*() {
        const loader = yield* Loader
        // Serving: the creator may return (and a start may come) from here on.
        if (Option.isSome(syncFd)) yield* reportReady(syncFd.value, "ready")
        const status = yield* loader.awaitRootExit
        // Recorded before the teardown: a `wait` that finds the sandbox going away reads it.
        yield* store.writeExit(id, toShellCode(status))
        return status
      }).pipe(Effect.provide(sandbox), Effect.provide(runtime.logger))
      yield* setExitCode(toShellCode(status))
    }).pipe(Effect.scoped)
).pipe(Command.withDescription("internal: the sandbox process that `create` starts"))
