/**
 * The heartbeat's shared memory, between the sentry's main thread (which beats) and the
 * heartbeat monitor thread (which watches). No imports: the monitor thread loads only this
 * and node's own modules, so that it stays tiny.
 */

/** Int32 words of the heartbeat buffer. */
export const HeartbeatWord = {
  /** Incremented (and notified) by the main thread at every beat. */
  BEATS: 0
} as const

export const HEARTBEAT_WORDS = 1

/** What the monitor thread is started with (its `workerData`). */
export interface HeartbeatMonitorData {
  readonly buffer: SharedArrayBuffer
  /** Milliseconds without a beat after which the main thread counts as stalled. */
  readonly stallTimeoutMs: number
  /** Where the stall line goes (2: the process's stderr). */
  readonly fd: number
}
