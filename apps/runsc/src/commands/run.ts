/**
 * `runsc run ID`: create + start + wait, as runsc does it — the container's sandbox is its own
 * process (listed, reachable by exec, kill, ps while it runs), attached to this CLI's stdio.
 * Signals this CLI receives go to the container's init; it exits with the init's status and
 * removes the container. With --detach it returns once the container has started.
 *
 * Before the container runs, SIGINT, SIGTERM, SIGHUP and SIGQUIT stop the run: what it did so far
 * is undone (sandbox, state) and it exits 128 + the signal; any other signal is delivered to
 * the init once it runs.
 */
import { Args, Command, Options } from "@effect/cli"
import { forwardableHostSignals } from "@runsc/abi"
import { call } from "@runsc/control"
import { terminalSignals } from "@runsc/kernel"
import { loadBundle } from "@runsc/spec"
import { Deferred, Effect, Option, Runtime } from "effect"
import * as Os from "node:os"
import { setExitCode } from "../processContext.js"
import { consoleSocketOption, createContainer, preserveFdsOption, preservedFds, removeContainer, runcOnlyOptions, startContainer, waitForExit } from "./container.js"

/** Signals that stop a run whose container has not started yet. */
const stopping: ReadonlySet<string> = new Set(["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT"])

export const runCommand = Command.make(
  "run",
  {
    bundle: Options.directory("bundle").pipe(
      Options.withAlias("b"),
      Options.withDescription("bundle directory (default: the current directory)"),
      Options.withDefault(".")
    ),
    detach: Options.boolean("detach").pipe(Options.withAlias("d"), Options.withDescription("return once the container has started")),
    pidFile: Options.text("pid-file").pipe(Options.withDescription("write the sandbox's pid here"), Options.optional),
    consoleSocket: consoleSocketOption,
    ...runcOnlyOptions,
    preserveFds: preserveFdsOption,
    id: Args.text({ name: "container-id" })
  },
  ({ bundle, consoleSocket, detach, id, pidFile, preserveFds }) =>
    Effect.gen(function*() {
      const preserved = yield* preservedFds(preserveFds)
      // Listening from the start: a signal that arrives before the container runs either stops
      // the run (undoing it) or is delivered once it does, rather than ending this CLI and
      // orphaning the sandbox.
      const runFork = Runtime.runFork(yield* Effect.runtime<never>())
      const stop = yield* Deferred.make<number>()
      const early: Array<number> = []
      // Every signal is kept for the init (in case the container starts all the same); the
      // first stopping one also stops the run.
      let deliver = (signo: number, name: string) => {
        early.push(signo)
        if (stopping.has(name)) Deferred.unsafeDone(stop, Effect.succeed(signo))
      }
      const listeners = forwardableHostSignals.map((name) => {
        const signo = Os.constants.signals[name as keyof typeof Os.constants.signals]
        return { name: name as NodeJS.Signals, listener: () => deliver(signo, name) }
      })
      yield* Effect.acquireRelease(
        Effect.sync(() => listeners.forEach(({ listener, name }) => process.on(name, listener))),
        () => Effect.sync(() => listeners.forEach(({ listener, name }) => process.off(name, listener)))
      )
      const started = yield* Effect.gen(function*() {
        const { record, states } = yield* createContainer(id, bundle, pidFile, consoleSocket, preserved)
        // A start that fails, or is stopped, leaves nothing behind: not the sandbox, not the state.
        yield* startContainer(record, { justCreated: true }).pipe(Effect.onError(() => Effect.ignore(removeContainer(states, record))))
        return { record, states }
      }).pipe(
        Effect.asSome,
        Effect.raceFirst(Effect.as(Deferred.await(stop), Option.none()))
      )
      if (Option.isNone(started)) return yield* setExitCode(128 + (yield* Deferred.await(stop)))
      const { record, states } = started.value
      if (detach) return
      // What a terminal generates goes to its foreground job; everything else to the init.
      const terminal = (yield* loadBundle(record.bundle)).spec.process?.terminal ?? false
      const signal = (signo: number) =>
        call(record.socket, "Signal", (c) =>
          c.Signal({ id: record.id, pid: 0, signo, mode: terminal && terminalSignals.has(signo) ? "ForegroundProcessGroup" : "Process" }))
      deliver = (signo) => void runFork(Effect.ignore(signal(signo)))
      for (const signo of early.splice(0)) deliver(signo, "")
      const code = yield* waitForExit(states, record).pipe(Effect.ensuring(Effect.ignore(removeContainer(states, record, 5000))))
      yield* setExitCode(code)
    }).pipe(Effect.scoped)
).pipe(Command.withDescription("create, start and wait for a container, attached; exit with its status"))
