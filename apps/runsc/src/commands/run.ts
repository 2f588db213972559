/**
 * `runsc run ID`: create + start + wait, as runsc does it — the container's sandbox is its own
 * process (listed, reachable by exec, kill, ps while it runs), attached to this CLI's stdio.
 * Signals this CLI receives go to the container's init; it exits with the init's status and
 * removes the container. With --detach it returns once the container has started.
 */
import { Args, Command, Options } from "@effect/cli"
import { forwardableHostSignals } from "@runsc/abi"
import { call } from "@runsc/control"
import { terminalSignals } from "@runsc/kernel"
import { loadBundle } from "@runsc/spec"
import { Effect, Runtime } from "effect"
import * as Os from "node:os"
import { setExitCode } from "../processContext.js"
import { consoleSocketOption, createContainer, removeContainer, startContainer, waitForExit } from "./container.js"

export const runCommand = Command.make(
  "run",
  {
    bundle: Options.directory("bundle").pipe(
      Options.withAlias("b"),
      Options.withDescription("bundle directory (default: the current directory)"),
      Options.withDefault(".")
    ),
    detach: Options.boolean("detach").pipe(Options.withAlias("d"), Options.withDescription("return once the container has started")),
    pidFile: Options.file("pid-file").pipe(Options.withDescription("write the sandbox's pid here"), Options.optional),
    consoleSocket: consoleSocketOption,
    id: Args.text({ name: "container-id" })
  },
  ({ bundle, consoleSocket, detach, id, pidFile }) =>
    Effect.gen(function*() {
      // Listening from the start: a signal that arrives before the container runs is delivered
      // once it does, rather than ending this CLI and orphaning the sandbox.
      const runFork = Runtime.runFork(yield* Effect.runtime<never>())
      const early: Array<number> = []
      let deliver = (signo: number) => void early.push(signo)
      const listeners = forwardableHostSignals.map((name) => {
        const signo = Os.constants.signals[name as keyof typeof Os.constants.signals]
        return { name: name as NodeJS.Signals, listener: () => deliver(signo) }
      })
      yield* Effect.acquireRelease(
        Effect.sync(() => listeners.forEach(({ listener, name }) => process.on(name, listener))),
        () => Effect.sync(() => listeners.forEach(({ listener, name }) => process.off(name, listener)))
      )
      const { record, states } = yield* createContainer(id, bundle, pidFile, consoleSocket)
      // A start that fails leaves nothing behind: not the sandbox, not the state.
      yield* startContainer(states, record).pipe(Effect.tapError(() => Effect.ignore(removeContainer(states, record))))
      if (detach) return
      // What a terminal generates goes to its foreground job; everything else to the init.
      const terminal = (yield* loadBundle(record.bundle)).spec.process?.terminal ?? false
      const signal = (signo: number) =>
        call(record.socket, "Signal", (c) =>
          c.Signal({ id: record.id, pid: 0, signo, mode: terminal && terminalSignals.has(signo) ? "ForegroundProcessGroup" : "Process" }))
      deliver = (signo) => void runFork(Effect.ignore(signal(signo)))
      for (const signo of early.splice(0)) deliver(signo)
      const code = yield* waitForExit(states, record).pipe(Effect.ensuring(Effect.ignore(removeContainer(states, record, 5000))))
      yield* setExitCode(code)
    }).pipe(Effect.scoped)
).pipe(Command.withDescription("create, start and wait for a container, attached; exit with its status"))
