/**
 * `runsc exec ID CMD [ARGS...]`: a process in a running container. Its stdio is this CLI's own,
 * lent to the sandbox (see relay.ts). Without --detach the CLI waits and exits with the
 * process's status (what containerd watches through --pid-file); with -t the process gets a
 * terminal, and the signals this CLI receives go to the terminal's foreground process group.
 */
import { Args, Command, Options } from "@effect/cli"
import { forwardableHostSignals, toShellCode } from "@runsc/abi"
import { call } from "@runsc/control"
import { parseEnvAssignment } from "@runsc/spec"
import { Duration, Effect, Either, Exit, Option, Runtime } from "effect"
import * as Os from "node:os"
import { InvalidFlag } from "../errors.js"
import { globalArgs } from "../globals.js"
import { preparePidFile } from "../pidFile.js"
import { setExitCode } from "../processContext.js"
import { lendStdio } from "../relay.js"
import { rootCommand } from "../root.js"
import { callSandbox, consoleFor, consoleSocketOption, findContainer, print, statusOf, WrongStatus } from "./container.js"

export const execOptionsWithValue = ["--cwd", "--env", "--user", "--pid-file", "--internal-pid-file", "--console-socket"]
export const execFlags = ["--detach", "-d", "--tty", "-t"]

const SIGKILL = Os.constants.signals.SIGKILL


export const execCommand = Command.make(
  "exec",
  {
    cwd: Options.text("cwd").pipe(Options.optional),
    env: Options.text("env").pipe(Options.withDescription("K=V (repeatable)"), Options.repeated),
    user: Options.text("user").pipe(Options.withDescription("uid[:gid]"), Options.optional),
    detach: Options.boolean("detach").pipe(Options.withAlias("d")),
    tty: Options.boolean("tty").pipe(Options.withAlias("t")),
    consoleSocket: consoleSocketOption,
    pidFile: Options.text("pid-file").pipe(Options.withDescription("this CLI's pid (it holds the process's status)"), Options.optional),
    internalPidFile: Options.text("internal-pid-file").pipe(
      Options.withDescription("the process's pid in the sandbox (as ps and kill --pid name it)"),
      Options.optional
    ),
    id: Args.text({ name: "container-id" }),
    argv: Args.text({ name: "command" }).pipe(Args.atLeast(1))
  },
  ({ argv, consoleSocket, cwd, detach, env, id, internalPidFile, pidFile, tty, user }) =>
    Effect.gen(function*() {
      const assignments = yield* Effect.forEach(env, (text) =>
        Either.match(parseEnvAssignment(text), {
          onLeft: (reason) => Effect.fail(new InvalidFlag({ flag: "--env", reason })),
          onRight: ({ key, value }) => Effect.succeed(`${key}=${value}`)
        }))
      // uid[:gid], each a 32-bit id as Linux's uid_t and gid_t ("" is not uid 0).
      const ids = Option.isSome(user) ? /^(\d+)(?::(\d+))?$/.exec(user.value) : undefined
      if (ids === null || (ids !== undefined && ids.slice(1).some((id) => id !== undefined && Number(id) > 0xffffffff))) {
        return yield* new InvalidFlag({ flag: "--user", reason: "must be uid[:gid], each a number from 0 to 4294967295" })
      }
      const uid = ids === undefined ? undefined : Number(ids[1])
      const { record, states } = yield* findContainer(id)
      const status = yield* statusOf(record)
      if (status !== "running" && status !== "paused") return yield* new WrongStatus({ id: record.id, status, wanted: "running" })
      // Pid files that cannot be written are found before the process starts.
      const prepare = (path: Option.Option<string>) =>
        Option.match(path, { onNone: () => Effect.succeed(undefined), onSome: preparePidFile })
      const internalAside = yield* prepare(internalPidFile)
      const helperAside = yield* prepare(pidFile)
      const pty = yield* consoleFor(consoleSocket, tty)
      const { done, stdio } = yield* lendStdio({
        dir: states.root,
        confined: record.confinement !== undefined,
        outlivesCli: detach,
        globalArgs: globalArgs(yield* rootCommand),
        ...(pty !== undefined ? { fds: pty.stdio } : {})
      })
      const pid = yield* Effect.acquireRelease(
        callSandbox(record, "ExecuteAsync", (c) =>
          c.ExecuteAsync({
            id: record.id,
            argv,
            stdio,
            ...(assignments.length > 0 ? { env: assignments } : {}),
            ...(Option.isSome(cwd) ? { cwd: cwd.value } : {}),
            ...(uid !== undefined ? { uid } : {}),
            ...(tty ? { terminal: true } : {})
          })),
        // This command failing after the process started (its pid files, its terminal) leaves
        // no process that nobody knows of.
        (pid, exit) =>
          Exit.isFailure(exit) && !Exit.isInterrupted(exit)
            ? Effect.ignore(call(record.socket, "Signal", (c) => c.Signal({ id: record.id, pid, signo: SIGKILL, mode: "Process" })))
            : Effect.void
      )
      if (pty !== undefined) yield* pty.send
      // The sandbox pid first: whoever watches --pid-file may read the other at once.
      if (internalAside !== undefined) yield* internalAside.write(`${pid}`)
      if (helperAside !== undefined) yield* helperAside.write(`${process.pid}`)
      if (detach) return yield* print(`${pid}`)
      if (tty) {
        const runFork = Runtime.runFork(yield* Effect.runtime<never>())
        const forward = (signal: NodeJS.Signals) => () =>
          runFork(Effect.ignore(call(record.socket, "Signal", (c) =>
            c.Signal({ id: record.id, pid, signo: Os.constants.signals[signal], mode: "ForegroundProcessGroup" }))))
        const listeners = (forwardableHostSignals as ReadonlyArray<NodeJS.Signals>).map((signal) => [signal, forward(signal)] as const)
        yield* Effect.acquireRelease(
          Effect.sync(() => listeners.forEach(([signal, listener]) => process.on(signal, listener))),
          () => Effect.sync(() => listeners.forEach(([signal, listener]) => process.off(signal, listener)))
        )
      }
      const exited = yield* callSandbox(record, "WaitPid", (c) => c.WaitPid({ id: record.id, pid }), { timeout: Duration.infinity })
      // Relayed output still in flight is written before this CLI exits (bounded: a child the
      // process left behind may hold the stream open).
      yield* done.pipe(Effect.timeout("2 seconds"), Effect.ignore)
      yield* setExitCode(toShellCode(exited))
    }).pipe(Effect.scoped)
).pipe(Command.withDescription("run a process in a running container, attached to this CLI's stdio"))
