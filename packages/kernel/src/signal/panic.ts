/**
 * A kernel panic (a watchdog's "panic" action, a panic signal): every process of the sandbox
 * is SIGKILLed and the reason recorded, for whoever waits on the sandbox to report it.
 */
import { Deferred, Effect } from "effect"
import type { PidNamespace } from "../task/pidNamespace.js"
import type { ThreadGroup } from "../task/threadGroup.js"
import type { Kill } from "./kill.js"

export interface Panic {
  /** Ends the sandbox: SIGKILLs every process and records why. */
  readonly panic: (reason: string) => Effect.Effect<void>
  /** Waits until the kernel panics; yields the reason (the first, if it panics again). */
  readonly panicked: Effect.Effect<string>
}

export const makePanic = (processes: PidNamespace<ThreadGroup>, kill: Kill): Effect.Effect<Panic> =>
  Effect.map(Deferred.make<string>(), (reason) => ({
    panic: (why) =>
      Effect.zipRight(
        Deferred.succeed(reason, why),
        kill.all(processes.processes.map(([, tg]) => tg))
      ),
    panicked: Deferred.await(reason)
  }))
