/**
 * Host signal handling of the sandbox process, as runsc's boot process does it: signals sent to
 * the sandbox go to the root container's init. A signal already on its way is not queued again
 * (standard signals coalesce); SIGCHLD, SIGPIPE and SIGURG concern the sandbox process itself
 * and are not forwarded. The panic signal, when set, is not forwarded: it ends the sandbox with
 * a state dump. Listeners live exactly as long as the enclosing scope.
 */
import { forwardableHostSignals, signalName } from "@runsc/abi"
import { Effect, Runtime, type Scope } from "effect"
import * as Os from "node:os"

export interface HostSignalOptions {
  readonly forward: boolean
  readonly panicSignal?: number | undefined
  readonly deliver: (signo: number) => Effect.Effect<void>
  readonly panic: (signo: number) => Effect.Effect<void>
}

const signalNumber = (name: string): number | undefined =>
  Os.constants.signals[name as keyof typeof Os.constants.signals]

export const handleHostSignals = (options: HostSignalOptions): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function*() {
    const runFork = Runtime.runFork(yield* Effect.runtime<never>())
    const names = new Set(options.forward ? forwardableHostSignals : [])
    if (options.panicSignal !== undefined) names.add(signalName(options.panicSignal))
    const pending = new Set<number>()
    const listeners = [...names].flatMap((name) => {
      const signo = signalNumber(name)
      if (signo === undefined) return []
      const listener = () => {
        if (signo === options.panicSignal) {
          runFork(options.panic(signo))
          return
        }
        if (pending.has(signo)) return
        pending.add(signo)
        runFork(Effect.ensuring(options.deliver(signo), Effect.sync(() => pending.delete(signo))))
      }
      return [{ name: name as NodeJS.Signals, listener }]
    })
    yield* Effect.acquireRelease(
      Effect.sync(() => listeners.forEach(({ listener, name }) => process.on(name, listener))),
      () => Effect.sync(() => listeners.forEach(({ listener, name }) => process.off(name, listener)))
    )
  })
