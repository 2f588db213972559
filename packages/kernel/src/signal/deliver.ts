/**
 * Signal delivery with each signal's default action, the only disposition a WASI guest can
 * have besides "ignore" (it installs no handlers): terminate (or core) kills the process, stop
 * and continue are job control, the rest is discarded.
 */
import { defaultAction, SIGCONT } from "@runsc/abi"
import { Effect } from "effect"
import type { ThreadGroup } from "../task/threadGroup.js"
import type { Kill } from "./kill.js"

/** Delivers a signal with its default action. */
export type Signal = (tg: ThreadGroup, signo: number) => Effect.Effect<void>

/**
 * `signal`, given how a fatal one kills and how a task is told to enter the sentry at its next
 * call (`setAttention`, which reads the process's stop and the sandbox's pause).
 */
export const makeSignal = (kill: Kill, setAttention: (tg: ThreadGroup) => void): Signal => (tg, signo) =>
  Effect.suspend(() => {
    // An ignored signal is discarded when it is sent (SIGKILL and SIGSTOP cannot be ignored);
    // SIGCONT continues a stopped process even so.
    if (signo === 0 || !tg.isAlive || (tg.ignoredSignals.has(signo) && signo !== SIGCONT)) return Effect.void
    switch (defaultAction(signo)) {
      case "terminate":
      case "core":
        return kill(tg, signo)
      case "ignore":
        return Effect.void
      case "stop":
        // Takes effect when the task next enters the sentry.
        if (tg.stop(signo)) setAttention(tg)
        return Effect.void
      case "continue":
        if (tg.continue()) setAttention(tg)
        return Effect.void
    }
  })
