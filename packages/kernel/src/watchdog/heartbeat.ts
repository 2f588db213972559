/**
 * The sentry's side of the heartbeat: starts the monitor thread (heartbeatMonitor.ts) and
 * offers the beat. Owns the thread: it is unref()'d (it never keeps the process alive) and
 * terminated when the scope closes.
 */
import { Data, Deferred, Duration, Effect, Exit, FiberId, type Scope } from "effect"
import { createRequire } from "node:module"
import { pathToFileURL } from "node:url"
import { Worker } from "node:worker_threads"
import { HEARTBEAT_WORDS, type HeartbeatMonitorData, HeartbeatWord } from "./heartbeatChannel.js"

/** The monitor thread could not be started, or died. */
export class HeartbeatMonitorFailed extends Data.TaggedError("HeartbeatMonitorFailed")<{ readonly reason: string }> {}

export interface HeartbeatMonitorOptions {
  /** How long the main thread may go without a beat before the monitor reports it stalled. */
  readonly stallTimeout: Duration.DurationInput
  /** File descriptor the monitor writes its line to (default 2, the process's stderr). */
  readonly fd?: number
}

export interface HeartbeatMonitor {
  /** One beat of the main thread's heart: the monitor sees that the thread runs. */
  readonly beat: Effect.Effect<void>
  /** Completes once the monitor thread is watching; fails if it could not start. */
  readonly started: Effect.Effect<void, HeartbeatMonitorFailed>
  /** Completes once the monitor thread has ended (after the scope closed, or if it died). */
  readonly exited: Effect.Effect<void>
}

/**
 * Starts the monitor thread. Does not wait for it to be ready (that costs tens of ms; see
 * `started`): a monitor that cannot start is reported through `started`, never as a defect,
 * since the sandbox runs fine without it.
 */
export const startHeartbeatMonitor = (
  options: HeartbeatMonitorOptions
): Effect.Effect<HeartbeatMonitor, never, Scope.Scope> =>
  Effect.gen(function*() {
    const words = new Int32Array(new SharedArrayBuffer(HEARTBEAT_WORDS * Int32Array.BYTES_PER_ELEMENT))
    const started = Deferred.unsafeMake<void, HeartbeatMonitorFailed>(FiberId.none)
    const exited = Deferred.unsafeMake<void>(FiberId.none)
    const fail = (reason: string) => Deferred.unsafeDone(started, Exit.fail(new HeartbeatMonitorFailed({ reason })))
    const data: HeartbeatMonitorData = {
      buffer: words.buffer as SharedArrayBuffer,
      stallTimeoutMs: Math.max(1, Math.round(Duration.toMillis(options.stallTimeout))),
      fd: options.fd ?? 2
    }
    yield* Effect.acquireRelease(
      Effect.sync(() => {
        let thread: Worker
        try {
          // Found by package name, like the guest worker (platform/startThread.ts): resolves the
          // same from the sources, from dist and from an app's bundle.
          const script = pathToFileURL(createRequire(import.meta.url).resolve("@runsc/kernel/heartbeat-monitor"))
          thread = new Worker(script, { workerData: data })
        } catch (error) {
          fail(`cannot start the heartbeat monitor: ${String(error)}`)
          Deferred.unsafeDone(exited, Exit.void)
          return undefined
        }
        thread.unref()
        thread.once("message", () => Deferred.unsafeDone(started, Exit.void))
        // A listener must stay: an unhandled "error" event would crash the sandbox.
        thread.on("error", (error) => fail(`heartbeat monitor failed: ${error.message}`))
        thread.once("exit", (code) => {
          fail(`heartbeat monitor exited (${code}) before it was ready`)
          Deferred.unsafeDone(exited, Exit.void)
        })
        return thread
      }),
      (thread) => thread ? Effect.promise(() => thread.terminate().then(() => undefined, () => undefined)) : Effect.void
    )
    return {
      beat: Effect.sync(() => {
        Atomics.add(words, HeartbeatWord.BEATS, 1)
        Atomics.notify(words, HeartbeatWord.BEATS)
      }),
      started: Deferred.await(started),
      exited: Deferred.await(exited)
    }
  })
