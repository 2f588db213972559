/**
 * The heartbeat monitor: a tiny worker thread that notices when the sentry's main thread has
 * stopped running (a synchronous loop, a deadlock in native code, a huge GC pause) — the one
 * failure the watchdog fiber cannot see, since it runs on that very thread.
 *
 * The main thread increments a counter in shared memory every few moments and notifies it;
 * this thread waits on the counter with `Atomics.wait` timeouts. When it has not moved for the
 * stall timeout, it writes one line straight to a file descriptor with `fs.writeSync` (2 by
 * default): `process.stderr` in a worker is relayed through the main thread, which is the
 * thread that is stuck. One line per stall; a later beat re-arms it.
 *
 * Time in which this thread itself could not run (the whole process starved of CPU, or
 * stopped) is not the main thread's fault: a wait that returns far later than asked restarts
 * the count.
 *
 * This file runs as a worker entry point (`@runsc/kernel/heartbeat-monitor`), not as a module
 * of the kernel: importing it elsewhere would start the loop.
 */
import * as Fs from "node:fs"
import { parentPort, workerData } from "node:worker_threads"
import { type HeartbeatMonitorData, HeartbeatWord } from "./heartbeatChannel.js"

const { buffer, fd, stallTimeoutMs } = workerData as HeartbeatMonitorData
const words = new Int32Array(buffer)
// Waits are sliced so that an oversleep (starvation) is told apart from a missing beat.
const slice = Math.max(1, Math.ceil(stallTimeoutMs / 4))
const starvedAfter = Math.max(stallTimeoutMs / 2, 1000)

let beats = Atomics.load(words, HeartbeatWord.BEATS)
let lastBeatAt = performance.now()
let reported = false
parentPort?.postMessage("ready")

for (;;) {
  const before = performance.now()
  const wait = reported ? slice : Math.max(1, Math.min(slice, lastBeatAt + stallTimeoutMs - before))
  Atomics.wait(words, HeartbeatWord.BEATS, beats, wait)
  const now = performance.now()
  const current = Atomics.load(words, HeartbeatWord.BEATS)
  if (current !== beats) {
    beats = current
    lastBeatAt = now
    reported = false
    continue
  }
  if (now - before > wait + starvedAfter) {
    // This thread was not running either: the process was starved or stopped. Discounted.
    lastBeatAt = now
    continue
  }
  const stalled = now - lastBeatAt
  if (!reported && stalled >= stallTimeoutMs) {
    reported = true
    try {
      Fs.writeSync(
        fd,
        `runsc watchdog: sentry main thread stalled for ${Math.round(stalled)} ms (no heartbeat; stall timeout ${stallTimeoutMs} ms)\n`
      )
    } catch {
      // Nowhere left to report to; keep watching.
    }
  }
}
