/**
 * Running a throw-away sandbox in this process (do): the Loader built from the global flags,
 * the root container started attached to this process's stdio, and the CLI's exit status set
 * to the guest's. The layer's scope closes (SIGKILL, wait, release) before the status is set.
 * A guest that a fault killed (a wasm trap) gets one stderr line saying so, as a shell reports
 * a signal death: `/bin/prog: killed by SIGSEGV (wasm trap: call stack exhausted)`. Given a
 * time limit, the root init is sent SIGKILL when it elapses, and says so the same way.
 */
import { signalName, toShellCode } from "@runsc/abi"
import { Loader, type LoaderArgs } from "@runsc/loader"
import { type Duration, Effect, Ref } from "effect"
import * as Fs from "node:fs"
import { setExitCode, StartedThreads } from "../processContext.js"
import { configure } from "../globals.js"
import { rootCommand } from "../root.js"

export const runSandbox = (
  args: Omit<LoaderArgs, "kernel" | "panicSignal" | "forwardSignals">,
  limit?: { readonly duration: Duration.Duration; readonly text: string }
) =>
  Effect.gen(function*() {
    const flags = yield* rootCommand
    const runtime = yield* configure(flags)
    const startedThreads = yield* StartedThreads
    const loaderArgs: LoaderArgs = {
      ...args,
      networkMode: flags.network,
      logConnections: flags.debug,
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
    const status = yield* Effect.gen(function*() {
      const loader = yield* Loader
      const overTime = yield* Ref.make(false)
      if (limit !== undefined) {
        // Forked in this scope, which ends before the Loader's: never signals a released sandbox.
        yield* Effect.sleep(limit.duration).pipe(
          Effect.zipRight(Ref.set(overTime, true)),
          Effect.zipRight(Effect.ignore(loader.signal(9))),
          Effect.forkScoped
        )
      }
      const status = yield* Loader.run
      yield* Effect.logDebug(`container ${args.containerId} ended: ${JSON.stringify(status)}`)
      const killedOverTime = status._tag === "Signaled" && status.signal === 9 && (yield* Ref.get(overTime))
      const fault = killedOverTime ? `ran over --timeout ${limit!.text}` : yield* loader.rootFault
      if (status._tag === "Signaled" && fault !== undefined) {
        // The command as the user gave it, as a shell names it.
        const program = typeof args.bundle === "string" ? "guest" : args.bundle.spec.process?.args[0] ?? "guest"
        yield* Effect.try(() => Fs.writeSync(2, `${program}: killed by ${signalName(status.signal)} (${fault})\n`)).pipe(Effect.ignore)
      }
      return status
    }).pipe(
      Effect.scoped,
      Effect.provide(Loader.layer(loaderArgs)),
      // Outside: the Loader's construction (and the fibers it forks) log through it too.
      Effect.provide(runtime.logger)
    )
    yield* setExitCode(toShellCode(status))
  }).pipe(Effect.scoped)
