/**
 * Holders: the host processes that stand for a process in the sandbox, as runc's contract
 * wants (the pid an engine's --pid-file names, waits on and signals). A holder lives exactly
 * as long as its process, exits with its status (128 + signal when it was killed), and passes
 * the signals it receives on to it; killing the holder kills the process (the sandbox does so
 * when the holder's wait is cut short). `exec` holds its process itself, or leaves an
 * exec-waiter with --detach; a pod's sub-container, which has no host process of its own (it
 * runs in its pod's sandbox), is held by a container-waiter its `create` leaves.
 */
import { forwardableHostSignals } from "@runsc/abi"
import { call } from "@runsc/control"
import { Data, Duration, Effect, Runtime } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import { spawnDetached } from "./detached.js"
import { isAlive } from "./hostProcess.js"

/** What a holder needs to reach its process's container. */
export interface HeldContainer {
  readonly id: string
  readonly socket: string
}

/**
 * Passes the signals this process receives on to process `pid` of the container (0: its init),
 * or its terminal's foreground process group, for as long as the scope is open.
 */
export const forwardSignals = (container: HeldContainer, pid: number, terminal: boolean) =>
  Effect.gen(function*() {
    const runFork = Runtime.runFork(yield* Effect.runtime<never>())
    const mode = terminal ? "ForegroundProcessGroup" as const : "Process" as const
    const forward = (signal: NodeJS.Signals) => () =>
      runFork(Effect.ignore(call(container.socket, "Signal", (c) =>
        c.Signal({ id: container.id, pid, signo: Os.constants.signals[signal], mode }))))
    const listeners = (forwardableHostSignals as ReadonlyArray<NodeJS.Signals>).map((signal) => [signal, forward(signal)] as const)
    yield* Effect.acquireRelease(
      Effect.sync(() => listeners.forEach(([signal, listener]) => process.on(signal, listener))),
      () => Effect.sync(() => listeners.forEach(([signal, listener]) => process.off(signal, listener)))
    )
  })

/** A waiter could not be started (what it would have held is killed). */
export class WaiterFailed extends Data.TaggedError("WaiterFailed")<{ readonly what: string; readonly reason: string }> {
  override get message(): string {
    return `the ${this.what}'s waiter: ${this.reason}`
  }
}

/** /dev/null as a waiter's stdio: it must not hold the engine's pipes open. */
const devNullStdio = Effect.acquireRelease(
  Effect.sync(() => {
    const fd = Fs.openSync("/dev/null", "r+")
    return [fd, fd, fd] as const
  }),
  ([fd]) => Effect.sync(() => Fs.closeSync(fd))
)

/** How long a waiter may take to hold its process (a sandbox that does not answer fails the command). */
const HOLD_LIMIT = Duration.seconds(30)

/**
 * Starts a waiter (`runsc <args>`, detached, /dev/null as stdio) and returns its pid once it
 * holds its process; it is killed if the enclosing scope fails, or if it does not hold its
 * process within HOLD_LIMIT.
 */
export const spawnWaiter = (what: string, args: ReadonlyArray<string>) =>
  Effect.flatMap(devNullStdio, (stdio) =>
    spawnDetached({ args, stdio }).pipe(
      Effect.map(({ pid }) => pid),
      Effect.mapError(({ reason }) => new WaiterFailed({ what, reason })),
      Effect.timeoutFail({
        duration: HOLD_LIMIT,
        onTimeout: () => new WaiterFailed({ what, reason: `it did not hold the process within ${Duration.format(HOLD_LIMIT)}` })
      })
    ))

/**
 * An engine takes a holder's exit for the end of the output (conmon stops reading): the relay
 * helper lending the process its stdio (`PID:START`) must have written all of it first. Waits
 * until it has exited, for at most 2 s (a child the process left behind may hold the stream).
 */
export const awaitRelay = (relay: string) =>
  Effect.gen(function*() {
    const [helperPid, start] = relay.split(":")
    for (let i = 0; i < 200 && isAlive(Number(helperPid), start ?? ""); i++) yield* Effect.sleep("10 millis")
  })
