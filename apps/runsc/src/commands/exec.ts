/**
 * `runsc exec ID CMD [ARGS...]`: a process in a running container. Its stdio is this CLI's own:
 * the sandbox opens `/proc/<this pid>/fd/{0,1,2}`, which reaches the same pipes, files or
 * terminal. Without --detach the CLI waits and exits with the process's status (what
 * containerd watches through --pid-file); with -t the process gets a terminal, and the signals
 * this CLI receives go to the terminal's foreground process group. A regular file given as
 * stdio is appended to (it is reopened, not shared); an fd that is a socket is relayed.
 */
import { Args, Command, Options } from "@effect/cli"
import { forwardableHostSignals, toShellCode } from "@runsc/abi"
import { call, RELAY_PREFIX, type StdioPaths } from "@runsc/control"
import { parseEnvAssignment } from "@runsc/spec"
import { Deferred, Duration, Effect, Either, Exit, Option, Runtime } from "effect"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { CannotWrite, InvalidFlag } from "../errors.js"
import { setExitCode } from "../processContext.js"
import { findContainer, ownFdPath, print } from "./container.js"

export const execOptionsWithValue = ["--cwd", "--env", "--user", "--pid-file", "--internal-pid-file"]
export const execFlags = ["--detach", "-d", "--tty", "-t"]

/**
 * How the sandbox reaches this process's fd (`ownFdPath`); a socket through a relay socket this
 * CLI listens on and copies to and from the fd. `done` resolves once relayed output is complete.
 */
const ownFd = (fd: number, relayDir: string, detach: boolean) =>
  Effect.gen(function*() {
    const reopen = ownFdPath(fd)
    if (reopen !== "socket") return { path: reopen, done: Effect.void }
    // A detached exec outlives this CLI, and with it the relay: that fd is not attached.
    if (detach) return { path: undefined, done: Effect.void }
    const path = Path.join(relayDir, `exec-${process.pid}-${fd}.sock`)
    const ended = yield* Deferred.make<void>()
    const server = yield* Effect.acquireRelease(
      Effect.async<Net.Server>((resume) => {
        const server = Net.createServer((conn) => {
          server.close()
          if (fd === 0) {
            process.stdin.pipe(conn)
            conn.on("error", () => {})
            conn.on("close", () => Deferred.unsafeDone(ended, Exit.void))
          } else {
            conn.on("data", (chunk) => Fs.writeSync(fd, chunk))
            conn.on("error", () => {})
            conn.on("close", () => Deferred.unsafeDone(ended, Exit.void))
          }
        })
        server.listen(path, () => resume(Effect.succeed(server)))
        server.once("error", (e) => resume(Effect.die(e)))
      }),
      (server) => Effect.sync(() => {
        server.close()
        Fs.rmSync(path, { force: true })
      })
    )
    void server
    // Output is complete once the sandbox closed its side (the process and its children are done with it).
    return { path: `${RELAY_PREFIX}${path}`, done: fd === 0 ? Effect.void : Deferred.await(ended) }
  })

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
    pidFile: Options.text("pid-file").pipe(Options.withDescription("this CLI's pid (it holds the process's status)"), Options.optional),
    internalPidFile: Options.text("internal-pid-file").pipe(
      Options.withDescription("the process's pid in the sandbox (as ps and kill --pid name it)"),
      Options.optional
    ),
    id: Args.text({ name: "container-id" }),
    argv: Args.text({ name: "command" }).pipe(Args.atLeast(1))
  },
  ({ argv, cwd, detach, env, id, internalPidFile, pidFile, tty, user }) =>
    Effect.gen(function*() {
      const assignments = yield* Effect.forEach(env, (text) =>
        Either.match(parseEnvAssignment(text), {
          onLeft: (reason) => Effect.fail(new InvalidFlag({ flag: "--env", reason })),
          onRight: ({ key, value }) => Effect.succeed(`${key}=${value}`)
        }))
      const uid = Option.isSome(user) ? Number(user.value.split(":")[0]) : undefined
      if (uid !== undefined && !(Number.isInteger(uid) && uid >= 0)) {
        return yield* new InvalidFlag({ flag: "--user", reason: "must be uid[:gid], numeric" })
      }
      const { record, states } = yield* findContainer(id)
      const streams = yield* Effect.forEach([0, 1, 2], (fd) => ownFd(fd, states.root, detach))
      const stdio: StdioPaths = Object.fromEntries(
        (["stdin", "stdout", "stderr"] as const).flatMap((name, fd) => {
          const path = streams[fd]!.path
          return path === undefined ? [] : [[name, path]]
        })
      )
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
      yield* Effect.forEach(streams, (s) => s.done, { discard: true }).pipe(Effect.timeout("2 seconds"), Effect.ignore)
      yield* setExitCode(toShellCode(status))
    }).pipe(Effect.scoped)
).pipe(Command.withDescription("run a process in a running container, attached to this CLI's stdio"))
