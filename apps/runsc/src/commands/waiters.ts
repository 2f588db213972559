/**
 * The waiters, holders left behind (holder.ts): `runsc exec-waiter ID PID`, which `exec
 * --detach` leaves to hold its process, and `runsc container-waiter ID`, which a pod
 * container's create leaves to hold the container (it has no host process of its own: it runs
 * in its pod's sandbox). Each is the pid its engine's --pid-file names; it waits (from the
 * create, for a container) until its process has exited, and exits with its status; a process
 * that never ran (a container destroyed before its start, or whose start failed), or whose
 * sandbox is gone, is 137, as one killed before it ran.
 *
 * bin/runsc.cjs runs them through the fast path (fastPath.ts), with no CLI loaded: these are
 * what RUNSC_NO_FAST_PATH=1 runs, and the fast path's contract holds (the same behaviour).
 */
import { Args, Command, Options } from "@effect/cli"
import { type ExitStatus, SIGKILL, toShellCode } from "@runsc/abi"
import { call } from "@runsc/control"
import { Duration, Effect, Fiber, Option } from "effect"
import { reportReady } from "../detached.js"
import { awaitRelay, forwardSignals } from "../holder.js"
import { setExitCode } from "../processContext.js"

const NEVER_RAN = 128 + SIGKILL

const waiterOptions = {
  syncFd: Options.integer("sync-fd"),
  socket: Options.text("socket").pipe(Options.withDescription("the sandbox's control socket")),
  terminal: Options.boolean("terminal"),
  relay: Options.text("relay").pipe(Options.withDescription("PID:START of the relay helper lending the process's stdio"), Options.optional),
  id: Args.text({ name: "container-id" })
}

/**
 * Holds process `pid` of container `id` (0: the container itself, from its create) until it
 * has exited, passing signals on, then exits with its status.
 */
const holdAndExit = (
  options: { readonly id: string; readonly socket: string; readonly terminal: boolean; readonly syncFd: number; readonly relay: Option.Option<string> },
  pid: number
) =>
  Effect.gen(function*() {
    const { id, socket } = options
    yield* forwardSignals({ id, socket }, pid, options.terminal)
    // The sandbox serves one connection's requests in order: once the query after the hold is
    // answered, the hold is registered, and this process may be published as its holder.
    const code = yield* call(socket, "Hold", (c) =>
      Effect.gen(function*() {
        const held: Effect.Effect<ExitStatus, unknown> = pid === 0 ? c.HoldContainer({ id }) : c.WaitPid({ id, pid, holder: true })
        const hold = yield* Effect.fork(held)
        yield* c.IsPaused()
        yield* reportReady(options.syncFd, "ready")
        return yield* Fiber.join(hold)
      }), Duration.infinity).pipe(
        Effect.map(toShellCode),
        Effect.catchAll(() => Effect.succeed(NEVER_RAN))
      )
    if (Option.isSome(options.relay)) yield* awaitRelay(options.relay.value)
    yield* setExitCode(code)
  }).pipe(Effect.scoped)

export const execWaiterCommand = Command.make(
  "exec-waiter",
  { ...waiterOptions, pid: Args.integer({ name: "pid" }) },
  (options) => holdAndExit(options, options.pid)
).pipe(Command.withDescription("internal: holds a detached exec's status (started by exec --detach)"))

export const containerWaiterCommand = Command.make(
  "container-waiter",
  waiterOptions,
  (options) => holdAndExit(options, 0)
).pipe(Command.withDescription("internal: holds a pod container's status (started by its create)"))
