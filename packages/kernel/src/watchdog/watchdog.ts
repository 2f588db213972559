/**
 * The watchdog (runsc's, adapted): a fiber in the kernel's scope that, every `period`, looks
 * for tasks that have been inside the kernel — one syscall being served by the sentry — for
 * longer than `timeout`, and reports them (action "log": a rate-limited warning; "panic": an
 * error, then `onPanic`, which the embedder makes end the sandbox). A heartbeat watched from a
 * separate thread (heartbeat.ts) catches the sentry's own thread stalling, which no fiber can.
 *
 * Time comes from Effect's Clock only (sleeps, reads), so a TestClock drives it. What it reads
 * of a task (its SyscallAccount) is recorded by serveSyscalls.
 */
import { syscallNames } from "@runsc/abi"
import { Clock, Duration, Effect, Schedule, type Scope } from "effect"
import { startHeartbeatMonitor } from "./heartbeat.js"
import type { SyscallAccount } from "../task/syscallAccount.js"

export interface WatchdogOptions {
  /** How often the tasks are looked at (default 45 s). */
  readonly period?: Duration.DurationInput
  /** How long a task may stay inside one syscall before it counts as stuck (default 3 min). */
  readonly timeout?: Duration.DurationInput
  /** What a stuck task causes (default "log"). */
  readonly action?: "log" | "panic"
  /** Action "log": at most one report per interval (default 1 min); the others are counted. */
  readonly logInterval?: Duration.DurationInput
  /** Action "panic": called once with the report, after it is logged; the watchdog then stops. */
  readonly onPanic?: (report: string) => Effect.Effect<void>
  /** How long the sentry's main thread may go without a heartbeat (default: `timeout`). */
  readonly stallTimeout?: Duration.DurationInput
  /** Whether to start the heartbeat monitor thread (default true). */
  readonly heartbeat?: boolean
  /** Where the heartbeat monitor writes its stall line (default 2, stderr). */
  readonly stallReportFd?: number
}

/** What the watchdog reads of a process; `ThreadGroup` is one. */
export interface WatchedTask {
  readonly rootPid: number
  readonly argv: ReadonlyArray<string>
  /** Its time inside the kernel (task/syscallAccount.ts). */
  readonly inKernel: Pick<SyscallAccount, "current" | "enteredAt" | "blocked">
}

const formatAge = (nanos: bigint): string => {
  const millis = Number(nanos / 1_000_000n)
  return millis === 0 ? "0ms" : Duration.format(Duration.millis(millis))
}

/**
 * The report of the tasks that have been inside one syscall for longer than `timeout` at
 * `now` (Clock nanoseconds), or undefined when there is none.
 */
export const stuckTasksReport = (
  tasks: ReadonlyArray<WatchedTask>,
  now: bigint,
  timeout: Duration.DurationInput
): string | undefined => {
  const limit = Duration.decode(timeout)
  if (!Duration.isFinite(limit)) return undefined
  const limitNanos = Duration.unsafeToNanos(limit)
  const lines: Array<string> = []
  for (const task of tasks) {
    const n = task.inKernel.current
    if (n < 0 || task.inKernel.blocked) continue
    const age = now - task.inKernel.enteredAt
    if (age <= limitNanos) continue
    const name = syscallNames[n] ?? `syscall_${n}`
    lines.push(`Task tid: ${task.rootPid} (${task.argv[0] ?? "?"}), syscall: ${name}, entered ${formatAge(age)} ago`)
  }
  if (lines.length === 0) return undefined
  return [`Sentry detected ${lines.length} stuck task(s):`, ...lines].join("\n")
}

/**
 * Starts the watchdog in the current scope: its fiber, and (unless `heartbeat: false`) the
 * heartbeat and its monitor thread. Returns at once; closing the scope stops all of them.
 */
export const makeWatchdog = (
  options: WatchdogOptions,
  processes: Effect.Effect<ReadonlyArray<WatchedTask>>
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function*() {
    const period = Duration.decode(options.period ?? "45 seconds")
    const timeout = Duration.decode(options.timeout ?? "3 minutes")
    const logInterval = Duration.unsafeToNanos(options.logInterval ?? "1 minute")
    const action = options.action ?? "log"
    const onPanic = options.onPanic ?? (() => Effect.void)
    const periodNanos = Duration.unsafeToNanos(period)

    let lastLoggedAt: bigint | undefined
    let suppressed = 0

    /** Acts on one round's verdict; false once the watchdog has panicked (it stops). */
    const verdict = (now: bigint): Effect.Effect<boolean> =>
      Effect.flatMap(processes, (tasks) => {
        const report = stuckTasksReport(tasks, now, timeout)
        if (report === undefined) return Effect.succeed(true)
        if (action === "panic") return Effect.logError(report).pipe(Effect.zipRight(onPanic(report)), Effect.as(false))
        if (lastLoggedAt !== undefined && now - lastLoggedAt < logInterval) {
          suppressed++
          return Effect.succeed(true)
        }
        const text = suppressed > 0
          ? `${report}\n(${suppressed} more stuck-task report(s) suppressed since the last one)`
          : report
        lastLoggedAt = now
        suppressed = 0
        return Effect.as(Effect.logWarning(text), true)
      })

    const watch = Effect.gen(function*() {
      for (;;) {
        const asleepAt = yield* Clock.currentTimeNanos
        yield* Effect.sleep(period)
        const now = yield* Clock.currentTimeNanos
        // Woke far later than scheduled: the whole sandbox was starved of CPU (or stopped),
        // so every task looks stuck for that long. runsc discounts such time; we skip this
        // round's verdict, and the next on-time round judges with fresh eyes.
        if (now - asleepAt - periodNanos > 2n * periodNanos) {
          yield* Effect.logDebug(`watchdog: woke ${formatAge(now - asleepAt - periodNanos)} late; skipping this round`)
          continue
        }
        if (!(yield* verdict(now))) return
      }
    })
    yield* Effect.forkScoped(watch)

    if (options.heartbeat === false) return
    const stallTimeout = Duration.decode(options.stallTimeout ?? timeout)
    // Several beats per stall timeout (and per period), so one late beat is no stall.
    const beatEvery = Duration.unsafeDivide(Duration.min(period, stallTimeout), 4)
    // The monitor thread starts after one beat interval: no stall can be seen before that, and a
    // thread started with the sandbox would compete with the sandbox's own start-up for CPU.
    const heartbeat = Effect.gen(function*() {
      yield* Effect.sleep(beatEvery)
      const monitor = yield* startHeartbeatMonitor({
        stallTimeout,
        ...(options.stallReportFd !== undefined ? { fd: options.stallReportFd } : {})
      })
      yield* monitor.started.pipe(
        Effect.catchAll((e) => Effect.logWarning(`watchdog: ${e.reason}; a stalled sentry thread would go unnoticed`)),
        Effect.forkScoped
      )
      yield* Effect.repeat(monitor.beat, Schedule.spaced(beatEvery))
    })
    yield* Effect.forkScoped(Effect.scoped(heartbeat))
  })
