/**
 * The watchdog: the stuck-task report, its rate limit and panic action on virtual time, a real
 * guest sleeping in poll_oneoff seen as stuck, and the heartbeat monitor thread noticing a
 * main thread that stops running.
 */
import { type SyscallName, syscallNumber } from "@runsc/abi"
import { assert, describe, it, layer } from "@effect/vitest"
import { Clock, Duration, Effect, Logger, Schedule, TestClock } from "effect"
import { Kernel, makeWatchdog, startHeartbeatMonitor, stuckTasksReport, type WatchedTask } from "../src/index.js"
import { captureFile, eventually, fixture, startGuest, tempDir } from "./helpers.js"

const MINUTE = 60_000_000_000n
const SECOND = 1_000_000_000n

const task = (pid: number, argv0: string, syscall: SyscallName | undefined, enteredAt: bigint): WatchedTask => ({
  rootPid: pid,
  argv: [argv0, "arg"],
  inKernel: { current: syscall === undefined ? -1 : syscallNumber[syscall], enteredAt, blocked: false }
})

interface LogLine {
  readonly level: string
  readonly message: string
}

/** A logger that collects what is logged (replacing the default one), and the lines so far. */
const captureLogs = () => {
  const lines: Array<LogLine> = []
  const logger = Logger.make(({ logLevel, message }) => {
    lines.push({ level: logLevel.label, message: Array.isArray(message) ? message.join(" ") : String(message) })
  })
  return { lines, layer: Logger.replace(Logger.defaultLogger, logger) }
}

describe("stuckTasksReport", () => {
  it("lists the tasks inside one syscall for longer than the timeout, with the syscall and its age", () => {
    const now = 10n * MINUTE
    const tasks = [
      task(1, "init", "poll_oneoff", now - 4n * MINUTE - 12n * SECOND - 5_000_000n),
      task(2, "idle", undefined, 0n), // not inside the kernel (its old entry time is stale)
      task(3, "busy", "fd_read", now - 10n * SECOND), // inside, but not for long
      task(7, "reader", "fd_read", now - 3n * MINUTE - 1n),
      { ...task(8, "waiter", "fd_read", now - 9n * MINUTE), inKernel: { current: syscallNumber.fd_read, enteredAt: now - 9n * MINUTE, blocked: true } } // waiting on its input: blocked, not stuck
    ]
    assert.strictEqual(
      stuckTasksReport(tasks, now, "3 minutes"),
      [
        "Sentry detected 2 stuck task(s):",
        "Task tid: 1 (init), syscall: poll_oneoff, entered 4m 12s 5ms ago",
        "Task tid: 7 (reader), syscall: fd_read, entered 3m ago"
      ].join("\n")
    )
  })

  it("is undefined when no task is stuck", () => {
    const now = 10n * MINUTE
    assert.isUndefined(stuckTasksReport([], now, "3 minutes"))
    assert.isUndefined(stuckTasksReport([task(1, "a", "poll_oneoff", now - 3n * MINUTE)], now, "3 minutes"))
    assert.isUndefined(stuckTasksReport([task(1, "a", undefined, 0n)], now, "3 minutes"))
    assert.isUndefined(stuckTasksReport([task(1, "a", "poll_oneoff", 0n)], now, Duration.infinity))
  })
})

describe("makeWatchdog on virtual time", () => {
  // Entered ten minutes before the TestClock's epoch: stuck from the first round on.
  const stuck = task(4, "sleeper", "poll_oneoff", -10n * MINUTE)
  // Not stuck at any time: outside the kernel, or inside one syscall for a second only.
  const others = Effect.map(Clock.currentTimeNanos, (now) => [
    task(1, "init", undefined, 0n),
    task(5, "worker", "fd_write", now - SECOND)
  ])
  const processes = Effect.map(others, ([init, worker]) => [init!, stuck, worker!])

  it.scoped("logs a warning with the report after a period, then at most once per logInterval", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      yield* makeWatchdog({ heartbeat: false }, processes)
      const warnings = () => logs.lines.filter((l) => l.level === "WARN").map((l) => l.message)

      yield* TestClock.adjust("44 seconds")
      assert.deepStrictEqual(warnings(), [])
      yield* TestClock.adjust("1 second") // one period (45 s, the default)
      const first = stuckTasksReport([stuck], 45n * SECOND, "3 minutes")!
      assert.match(first, /^Sentry detected 1 stuck task\(s\):\nTask tid: 4 \(sleeper\), syscall: poll_oneoff, entered 10m 45s ago$/)
      assert.deepStrictEqual(warnings(), [first])

      // 90 s: within the minute since the last report: counted, not logged.
      yield* TestClock.adjust("45 seconds")
      assert.strictEqual(warnings().length, 1)

      // 135 s: logged again, mentioning the one that was suppressed.
      yield* TestClock.adjust("45 seconds")
      assert.strictEqual(warnings().length, 2)
      assert.strictEqual(
        warnings()[1],
        `${stuckTasksReport([stuck], 135n * SECOND, "3 minutes")}\n(1 more stuck-task report(s) suppressed since the last one)`
      )
    }).pipe(Effect.provide(logs.layer))
  })

  it.scoped("reports nothing while no task is stuck", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      yield* makeWatchdog({ heartbeat: false, period: "10 seconds", timeout: "1 minute" }, others)
      yield* TestClock.adjust("10 minutes")
      assert.deepStrictEqual(logs.lines.filter((l) => l.level === "WARN" || l.level === "ERROR"), [])
    }).pipe(Effect.provide(logs.layer))
  })

  it.scoped("action panic logs the report as an error and calls onPanic once", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const panics: Array<string> = []
      yield* makeWatchdog({
        heartbeat: false,
        period: "10 seconds",
        action: "panic",
        onPanic: (report) => Effect.sync(() => void panics.push(report))
      }, processes)
      yield* TestClock.adjust("10 seconds")
      const report = stuckTasksReport([stuck], 10n * SECOND, "3 minutes")!
      assert.deepStrictEqual(panics, [report])
      assert.deepStrictEqual(logs.lines.filter((l) => l.level === "ERROR").map((l) => l.message), [report])
      // The watchdog has done its job: no second panic.
      yield* TestClock.adjust("5 minutes")
      assert.strictEqual(panics.length, 1)
      assert.deepStrictEqual(logs.lines.filter((l) => l.level === "WARN"), [])
    }).pipe(Effect.provide(logs.layer))
  })

  it.scoped("skips the verdict of a round in which it woke far too late (the sandbox was starved)", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      // A clock that the test can jump forward behind the watchdog's back: as if the whole
      // process had not run for that long.
      const base = yield* Effect.clock
      let starved = 0n
      const clock: Clock.Clock = {
        [Clock.ClockTypeId]: Clock.ClockTypeId,
        unsafeCurrentTimeNanos: () => base.unsafeCurrentTimeNanos() + starved,
        unsafeCurrentTimeMillis: () => base.unsafeCurrentTimeMillis() + Number(starved / 1_000_000n),
        currentTimeNanos: Effect.sync(() => base.unsafeCurrentTimeNanos() + starved),
        currentTimeMillis: Effect.sync(() => base.unsafeCurrentTimeMillis() + Number(starved / 1_000_000n)),
        sleep: (duration) => base.sleep(duration)
      }
      yield* makeWatchdog({ heartbeat: false, period: "10 seconds" }, processes).pipe(Effect.withClock(clock))
      const warnings = () => logs.lines.filter((l) => l.level === "WARN")

      yield* TestClock.adjust("5 seconds") // the watchdog is asleep, due at 10 s
      starved = 5n * MINUTE
      yield* TestClock.adjust("5 seconds") // it wakes 5 min late: no verdict
      assert.deepStrictEqual(warnings(), [])
      yield* TestClock.adjust("10 seconds") // on time again: the stuck task is reported
      assert.strictEqual(warnings().length, 1)
      assert.include(warnings()[0]!.message, "Task tid: 4 (sleeper), syscall: poll_oneoff")
    }).pipe(Effect.provide(logs.layer))
  })
})

layer(Kernel.layer({ warmWorkers: 1 }), { excludeTestServices: true })("makeWatchdog on a live kernel", (it) => {
  it.scoped("a guest sleeping in poll_oneoff is blocked, not stuck; the same syscall not waiting for the guest is reported", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const kernel = yield* Kernel
      const run = yield* startGuest({ bytes: fixture("sleep"), argv: ["sleep", "60"] })
      yield* eventually(() => run.stdout() === "sleeping\n", "sleep started")
      yield* eventually(() => run.tg.inKernel.current === syscallNumber.poll_oneoff, "inside poll_oneoff")
      assert.isAbove(Number(run.tg.inKernel.enteredAt), 0)
      assert.isTrue(run.tg.inKernel.blocked, "a sleep is a wait the guest asked for")

      yield* makeWatchdog({ heartbeat: false, period: "100 millis", timeout: "200 millis" }, kernel.processes)
      yield* Effect.sleep("500 millis")
      assert.deepStrictEqual(logs.lines.filter((l) => l.level === "WARN"), [], "a blocked task is not stuck")
      // As if the handler itself hung (nothing the guest waits for): now it is stuck.
      run.tg.inKernel.unblock()
      const line = `Task tid: ${run.tg.rootPid} (sleep), syscall: poll_oneoff, entered `
      yield* eventually(() => logs.lines.some((l) => l.level === "WARN" && l.message.includes(line)), "stuck task reported")
      const report = logs.lines.find((l) => l.level === "WARN")!.message
      assert.match(report, /^Sentry detected 1 stuck task\(s\):\nTask tid: \d+ \(sleep\), syscall: poll_oneoff, entered \S.* ago/)

      // A task that has left the kernel (here: killed in the middle of its syscall) is no longer in it.
      yield* kernel.signal(run.tg, 9)
      yield* run.exit
      assert.strictEqual(run.tg.inKernel.current, -1)
    }).pipe(Effect.provide(logs.layer))
  })

  it.scoped("does not report a guest computing outside the kernel: its syscalls were answered", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const kernel = yield* Kernel
      const run = yield* startGuest({ bytes: fixture("spin"), argv: ["spin"] })
      yield* eventually(() => run.stdout() === "spinning\n", "spin started")
      assert.isAbove(run.tg.inKernel.syscalls, 0) // libc's start-up (fd_prestat_get, ...) went to the sentry
      assert.strictEqual(run.tg.inKernel.current, -1)
      yield* makeWatchdog({ heartbeat: false, period: "100 millis", timeout: "200 millis" }, kernel.processes)
      yield* Effect.sleep("600 millis")
      assert.deepStrictEqual(logs.lines.filter((l) => l.level === "WARN"), [])
    }).pipe(Effect.provide(logs.layer))
  })
})

/** Blocks the current (main) thread for `ms` milliseconds. */
const busyLoop = (ms: number) =>
  Effect.sync(() => {
    const until = performance.now() + ms
    while (performance.now() < until) {
      // spinning: no beat can happen
    }
  })

const stallLines = (text: string) => text.split("\n").filter((l) => l !== "")

describe("heartbeat monitor", () => {
  it.live("writes one line when the main thread stops beating for longer than the stall timeout", () =>
    Effect.scoped(Effect.gen(function*() {
      const out = yield* captureFile(yield* tempDir(), "stall")
      const monitor = yield* startHeartbeatMonitor({ stallTimeout: "100 millis", fd: out.fd })
      yield* monitor.started
      yield* monitor.beat
      yield* busyLoop(300)
      yield* eventually(() => out.read().includes("sentry main thread stalled for"), "stall reported", "5 seconds")
      const lines = stallLines(out.read())
      for (const l of lines) assert.match(l, /^runsc watchdog: sentry main thread stalled for \d+ ms/)
      const ms = Number(/stalled for (\d+) ms/.exec(lines.at(-1)!)![1])
      assert.isAtLeast(ms, 100)
    })))

  it.live("stays quiet while the heart beats, and its thread ends with the scope", () =>
    Effect.scoped(Effect.gen(function*() {
      const out = yield* captureFile(yield* tempDir(), "stall")
      const monitor = yield* Effect.scoped(Effect.gen(function*() {
        const monitor = yield* startHeartbeatMonitor({ stallTimeout: "500 millis", fd: out.fd })
        yield* monitor.started
        yield* Effect.forkScoped(Effect.repeat(monitor.beat, Schedule.spaced("20 millis")))
        yield* Effect.sleep("1200 millis")
        return monitor
      }))
      yield* monitor.exited.pipe(Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => "monitor thread still alive" }))
      assert.strictEqual(out.read(), "")
    })))

  it.live("makeWatchdog's heartbeat lets the monitor see the main thread stall", () =>
    Effect.scoped(Effect.gen(function*() {
      const out = yield* captureFile(yield* tempDir(), "stall")
      yield* makeWatchdog(
        { period: "100 millis", timeout: "1 minute", stallTimeout: "150 millis", stallReportFd: out.fd },
        Effect.succeed([])
      )
      yield* Effect.sleep("300 millis") // the monitor thread starts, the heart beats
      yield* busyLoop(600)
      yield* eventually(() => out.read().includes("sentry main thread stalled for"), "stall reported", "5 seconds")
    })))
})

layer(Kernel.layer({ warmWorkers: 1, watchdog: { action: "panic", period: "50 millis", timeout: "150 millis", heartbeat: false } }), {
  excludeTestServices: true
})("the kernel's watchdog", (it) => {
  it.scoped("action panic: a stuck task panics the kernel, which kills every process", () =>
    Effect.gen(function*() {
      const kernel = yield* Kernel
      const stuck = yield* startGuest({ bytes: fixture("sleep"), argv: ["sleep", "60"] })
      const other = yield* startGuest({ bytes: fixture("spin"), argv: ["spin"] })
      yield* eventually(() => stuck.tg.inKernel.current === syscallNumber.poll_oneoff, "inside poll_oneoff")
      yield* Effect.sleep("400 millis")
      assert.isTrue(other.tg.isAlive, "a sleeping task is blocked, not stuck: no panic yet")
      // As if the handler itself hung: the watchdog sees a stuck task and panics.
      stuck.tg.inKernel.unblock()
      const reason = yield* kernel.panicked
      assert.match(reason, /^Sentry detected 1 stuck task\(s\):\nTask tid: \d+ \(sleep\), syscall: poll_oneoff/)
      assert.deepStrictEqual(yield* other.exit, { _tag: "Signaled", signal: 9 })
      assert.deepStrictEqual(yield* stuck.exit, { _tag: "Signaled", signal: 9 })
    }))
})
