/**
 * `runsc exec ID CMD [ARGS...]` (or `exec --process FILE ID`, the process JSON engines pass): a
 * process in a running container. Its stdio is this CLI's own, lent to the sandbox (see
 * relay.ts). With -t (or the process file's `terminal`) the process gets a terminal.
 *
 * As with runc, the process's status is held by a host process, whose pid --pid-file names and
 * which an engine waits on and signals: this CLI itself when attached (it exits with the
 * status); with --detach, a waiter it leaves behind (`runsc exec-waiter`), since the CLI exits
 * once the process has started. Either exits with the process's status (128 + signal when it
 * was killed) and passes the signals it receives on to the process (to the terminal's
 * foreground process group when there is one). Nothing but the guest writes to stdout.
 */
import { Args, Command, Options } from "@effect/cli"
import { signaled, toShellCode } from "@runsc/abi"
import { call, donationSocketOf } from "@runsc/control"
import { donate } from "@runsc/kernel"
import { parseEnvAssignment, parseProcess, readRegularFile } from "@runsc/spec"
import { Duration, Effect, Either, Exit, Fiber, Option } from "effect"
import * as Crypto from "node:crypto"
import * as Os from "node:os"
import { InvalidFlag } from "../errors.js"
import { globalArgs } from "../globals.js"
import { forwardSignals, spawnWaiter } from "../holder.js"
import { preparePidFile } from "../pidFile.js"
import { setExitCode } from "../processContext.js"
import { lendStdio } from "../relay.js"
import { rootCommand } from "../root.js"
import type { ContainerRecord } from "../state.js"
import { callSandbox, consoleFor, consoleSocketOption, findContainer, preservedFds, preserveFdsOption, statusOf, WrongStatus } from "./container.js"

export const execOptionsWithValue = ["--cwd", "--env", "--user", "--process", "--pid-file", "--internal-pid-file", "--console-socket", "--preserve-fds"]
export const execFlags = ["--detach", "-d", "--tty", "-t"]

const SIGKILL = Os.constants.signals.SIGKILL

/** What to run, from the command line or from a process file. */
interface ExecProcess {
  readonly argv: ReadonlyArray<string>
  /** The whole environment (undefined: the container's). */
  readonly env: ReadonlyArray<string> | undefined
  readonly cwd: string | undefined
  readonly uid: number | undefined
  readonly terminal: boolean
}

/** The process of `exec --process FILE`: the file's, whole; a FIFO in its place is refused, never waited on. */
const processFromFile = (path: string) =>
  Effect.gen(function*() {
    const text = yield* readRegularFile(path, { followSymlinks: true }).pipe(
      Effect.mapError((e) => new InvalidFlag({ flag: "--process", reason: e.reason }))
    )
    const process = yield* parseProcess(text).pipe(
      Effect.mapError((e) => new InvalidFlag({ flag: "--process", reason: e.path === "" ? e.reason : `${e.path}: ${e.reason}` }))
    )
    return {
      argv: process.args,
      env: process.env ?? [],
      cwd: process.cwd,
      uid: process.user?.uid,
      terminal: process.terminal ?? false
    } satisfies ExecProcess
  })

/**
 * Waits for process `pid` of the container as its holder, passing signals on, and gives its
 * status as a shell code (this process exits with it). `ready` runs once this process holds the
 * process (from then on, killing this process kills it): that is when its pid may be published.
 */
const holdStatus = <E>(record: ContainerRecord, pid: number, terminal: boolean, ready: Effect.Effect<void, E>) =>
  Effect.gen(function*() {
    yield* forwardSignals(record, pid, terminal)
    // As the holder: should this process be killed, the sandbox kills the exec'd process. The
    // sandbox serves one connection's requests in order, so once a query sent after the wait
    // is answered, the wait is registered and `ready` may let the engine kill this process.
    const exited = yield* callSandbox(record, "WaitPid", (c) =>
      Effect.gen(function*() {
        const wait = yield* Effect.fork(c.WaitPid({ id: record.id, pid, holder: true }))
        yield* c.IsPaused()
        yield* ready
        return yield* Fiber.join(wait)
      }), { timeout: Duration.infinity }).pipe(
        // The sandbox ended under the process (its root container's init exited): its teardown
        // SIGKILLed every process before it went, this one too, as runc's exec reports it.
        Effect.catchTag("WrongStatus", () => Effect.succeed(signaled(SIGKILL)))
      )
    return toShellCode(exited)
  }).pipe(Effect.scoped)

export const execCommand = Command.make(
  "exec",
  {
    process: Options.text("process").pipe(
      Options.withDescription("a process JSON (OCI process: args, env, cwd, user, terminal) to run instead of CMD"),
      Options.optional
    ),
    cwd: Options.text("cwd").pipe(Options.optional),
    env: Options.text("env").pipe(Options.withDescription("K=V (repeatable)"), Options.repeated),
    user: Options.text("user").pipe(Options.withDescription("uid[:gid]"), Options.optional),
    detach: Options.boolean("detach").pipe(Options.withAlias("d")),
    tty: Options.boolean("tty").pipe(Options.withAlias("t")),
    consoleSocket: consoleSocketOption,
    pidFile: Options.text("pid-file").pipe(
      Options.withDescription("the pid of the host process that holds the process's status (this CLI, or with --detach its waiter)"),
      Options.optional
    ),
    internalPidFile: Options.text("internal-pid-file").pipe(
      Options.withDescription("the process's pid in the sandbox (as ps and kill --pid name it)"),
      Options.optional
    ),
    preserveFds: preserveFdsOption,
    id: Args.text({ name: "container-id" }),
    argv: Args.text({ name: "command" }).pipe(Args.repeated)
  },
  (options) =>
    Effect.gen(function*() {
      const { consoleSocket, detach, id, internalPidFile, pidFile } = options
      const preserved = yield* preservedFds(options.preserveFds)
      const run = yield* execProcess(options)
      const { record, states } = yield* findContainer(id)
      const status = yield* statusOf(record)
      if (status !== "running" && status !== "paused") return yield* new WrongStatus({ id: record.id, status, wanted: "running" })
      // Pid files that cannot be written are found before the process starts.
      const prepare = (path: Option.Option<string>) =>
        Option.match(path, { onNone: () => Effect.succeed(undefined), onSome: preparePidFile })
      const internalAside = yield* prepare(internalPidFile)
      const holderAside = yield* prepare(pidFile)
      const pty = yield* consoleFor(consoleSocket, run.terminal)
      const global = globalArgs(yield* rootCommand)
      const { done, helper, stdio } = yield* lendStdio({
        dir: states.root,
        confined: record.confinement !== undefined,
        outlivesCli: detach,
        globalArgs: global,
        ...(pty !== undefined ? { fds: pty.stdio } : {})
      })
      // Handed to the sandbox before the call that claims them (as a pod container's trees are).
      const donation = preserved.length > 0 ? Crypto.randomUUID() : undefined
      if (donation !== undefined) yield* donate(donationSocketOf(record.socket), donation, preserved)
      const pid = yield* Effect.acquireRelease(
        callSandbox(record, "ExecuteAsync", (c) =>
          c.ExecuteAsync({
            id: record.id,
            argv: run.argv,
            stdio,
            ...(run.env !== undefined ? { env: run.env } : {}),
            ...(run.cwd !== undefined ? { cwd: run.cwd } : {}),
            ...(run.uid !== undefined ? { uid: run.uid } : {}),
            ...(run.terminal ? { terminal: true } : {}),
            ...(donation !== undefined ? { preserved: donation } : {})
          })),
        // This command failing after the process started (its pid files, its terminal, its
        // waiter) leaves no process that nobody knows of.
        (pid, exit) =>
          Exit.isFailure(exit) && !Exit.isInterrupted(exit)
            ? Effect.ignore(call(record.socket, "Signal", (c) => c.Signal({ id: record.id, pid, signo: SIGKILL, mode: "Process" })))
            : Effect.void
      )
      if (pty !== undefined) yield* pty.send
      // The sandbox pid first: whoever watches --pid-file may read the other at once.
      if (internalAside !== undefined) yield* internalAside.write(`${pid}`)
      if (detach) {
        const waiter = yield* spawnWaiter("exec'd process", [
          "exec-waiter",
          "--sync-fd",
          "3",
          "--socket",
          record.socket,
          ...(run.terminal ? ["--terminal"] : []),
          ...(helper !== undefined ? ["--relay", `${helper.pid}:${helper.start}`] : []),
          record.id,
          `${pid}`
        ])
        if (holderAside !== undefined) yield* holderAside.write(`${waiter}`)
        return
      }
      const code = yield* holdStatus(record, pid, run.terminal, holderAside === undefined ? Effect.void : holderAside.write(`${process.pid}`))
      // Relayed output still in flight is written before this CLI exits (bounded: a child the
      // process left behind may hold the stream open).
      yield* done.pipe(Effect.timeout("2 seconds"), Effect.ignore)
      yield* setExitCode(code)
    }).pipe(Effect.scoped)
).pipe(Command.withDescription("run a process in a running container, attached to this CLI's stdio"))

/** What `exec` runs: the process file's, or the command line's. */
const execProcess = (options: {
  readonly process: Option.Option<string>
  readonly argv: ReadonlyArray<string>
  readonly cwd: Option.Option<string>
  readonly env: ReadonlyArray<string>
  readonly user: Option.Option<string>
  readonly tty: boolean
}): Effect.Effect<ExecProcess, InvalidFlag> =>
  Effect.gen(function*() {
    if (Option.isSome(options.process)) {
      if (options.argv.length > 0) {
        return yield* new InvalidFlag({ flag: "--process", reason: "the process file names the command; give no COMMAND after the container id" })
      }
      return yield* processFromFile(options.process.value)
    }
    if (options.argv.length === 0) return yield* new InvalidFlag({ flag: "COMMAND", reason: "missing: give a command, or --process FILE" })
    const assignments = yield* Effect.forEach(options.env, (text) =>
      Either.match(parseEnvAssignment(text), {
        onLeft: (reason) => Effect.fail(new InvalidFlag({ flag: "--env", reason })),
        onRight: ({ key, value }) => Effect.succeed(`${key}=${value}`)
      }))
    // uid[:gid], each a 32-bit id as Linux's uid_t and gid_t ("" is not uid 0).
    const user = options.user
    const ids = Option.isSome(user) ? /^(\d+)(?::(\d+))?$/.exec(user.value) : undefined
    if (ids === null || (ids !== undefined && ids.slice(1).some((id) => id !== undefined && Number(id) > 0xffffffff))) {
      return yield* new InvalidFlag({ flag: "--user", reason: "must be uid[:gid], each a number from 0 to 4294967295" })
    }
    return {
      argv: options.argv,
      env: assignments.length > 0 ? assignments : undefined,
      cwd: Option.getOrUndefined(options.cwd),
      uid: ids === undefined ? undefined : Number(ids[1]),
      terminal: options.tty
    }
  })
