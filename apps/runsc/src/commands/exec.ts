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
import { Duration, Effect, Either, Option, Runtime } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import { CannotWrite, InvalidFlag } from "../errors.js"
import { globalArgs } from "../globals.js"
import { setExitCode } from "../processContext.js"
import { lendStdio } from "../relay.js"
import { rootCommand } from "../root.js"
import { consoleFor, consoleSocketOption, findContainer, print } from "./container.js"

export const execOptionsWithValue = ["--cwd", "--env", "--user", "--pid-file", "--internal-pid-file", "--console-socket"]
export const execFlags = ["--detach", "-d", "--tty", "-t"]

const writeFile = (path: string, text: string) =>
  Effect.try({ try: () => Fs.writeFileSync(path, text), catch: (e) => new CannotWrite({ path, reason: (e as Error).message }) })


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
      const pty = yield* consoleFor(consoleSocket, tty)
      const { done, stdio } = yield* lendStdio({
        dir: states.root,
        confined: record.confinement !== undefined,
        outlivesCli: detach,
        globalArgs: globalArgs(yield* rootCommand),
        ...(pty !== undefined ? { fds: pty.stdio } : {})
      })
      const pid = yield* call(record.socket, "ExecuteAsync", (c) =>
        c.ExecuteAsync({
          id: record.id,
          argv,
          stdio,
          ...(assignments.length > 0 ? { env: assignments } : {}),
          ...(Option.isSome(cwd) ? { cwd: cwd.value } : {}),
          ...(uid !== undefined ? { uid } : {}),
          ...(tty ? { terminal: true } : {})
        }))
      if (pty !== undefined) yield* pty.send
      // The sandbox pid first: whoever watches --pid-file may read the other at once.
      yield* Option.match(internalPidFile, { onNone: () => Effect.void, onSome: (path) => writeFile(path, `${pid}`) })
      yield* Option.match(pidFile, { onNone: () => Effect.void, onSome: (path) => writeFile(path, `${process.pid}`) })
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
      const status = yield* call(record.socket, "WaitPid", (c) => c.WaitPid({ id: record.id, pid }), Duration.infinity)
      // Relayed output still in flight is written before this CLI exits (bounded: a child the
      // process left behind may hold the stream open).
      yield* done.pipe(Effect.timeout("2 seconds"), Effect.ignore)
      yield* setExitCode(toShellCode(status))
    }).pipe(Effect.scoped)
).pipe(Command.withDescription("run a process in a running container, attached to this CLI's stdio"))
