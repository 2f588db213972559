/**
 * Running a throw-away sandbox in this process (do): the Loader built from the global flags,
 * the root container started attached to this process's stdio, and the CLI's exit status set
 * to the guest's. The layer's scope closes (SIGKILL, wait, release) before the status is set.
 */
import { toShellCode } from "@runsc/abi"
import { Loader, type LoaderArgs } from "@runsc/loader"
import { Effect } from "effect"
import { setExitCode, StartedThreads } from "../processContext.js"
import { configure } from "../globals.js"
import { rootCommand } from "../root.js"

export const runSandbox = (args: Omit<LoaderArgs, "kernel" | "panicSignal" | "forwardSignals">) =>
  Effect.gen(function*() {
    const flags = yield* rootCommand
    const runtime = yield* configure(flags)
    const startedThreads = yield* StartedThreads
    const loaderArgs: LoaderArgs = {
      ...args,
      forwardSignals: true,
      kernel: {
        // The root init is the only process: one worker — the one the executable started on
        // its first line, if any — and none kept idle.
        warmWorkers: 0,
        prestartWorkers: 1,
        startedThreads,
        watchdog: { action: flags.watchdogAction },
        ...(runtime.strace ? { strace: runtime.strace } : {})
      },
      ...(runtime.panicSignal !== undefined ? { panicSignal: runtime.panicSignal } : {})
    }
    const status = yield* Loader.run.pipe(
      Effect.tap((status) => Effect.logDebug(`container ${args.containerId} ended: ${JSON.stringify(status)}`)),
      Effect.provide(Loader.layer(loaderArgs)),
      // Outside: the Loader's construction (and the fibers it forks) log through it too.
      Effect.provide(runtime.logger)
    )
    yield* setExitCode(toShellCode(status))
  }).pipe(Effect.scoped)
