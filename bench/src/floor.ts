/**
 * The floor under runsc's syscall channel: the same handshake in plain JS, with no Effect and no
 * syscall work, and the same spin policy at both ends as runsc's (packages/kernel/src/platform/
 * channel.ts: AdaptiveSpin).
 *
 * A worker publishes a request (a store, and a notify only if the main thread is parked), polls
 * for the response with an adaptive budget, then parks in Atomics.wait, as the guest worker's
 * roundTrip does. The main thread polls for the request with its own adaptive budget, re-checks
 * the state word, then waits with Atomics.waitAsync, as serve.ts's awaitRequest does, and
 * answers at once (notifying only a parked worker).
 */
import { Worker } from "node:worker_threads"

/**
 * A copy of runsc's AdaptiveSpin (packages/kernel/src/platform/channel.ts), minus the channel
 * layout: a budget starts small, doubles when polling caught the other end and halves (down to
 * MIN) when it did not, and every PROBE_EVERY-th wait polls with the full MAX budget, so that a
 * busy channel ramps up again. Its source text is also what the floor's worker runs.
 */
class FloorSpin {
  static readonly MIN = 16
  static readonly MAX = 8192
  static readonly PROBE_EVERY = 64
  private waits = 0
  private budget = FloorSpin.MIN

  poll(words: Int32Array, expected: number): boolean {
    if (++this.waits % FloorSpin.PROBE_EVERY === 0) this.budget = FloorSpin.MAX
    for (let i = 0; i < this.budget; i++) {
      if (Atomics.load(words, 0) === expected) {
        this.budget = Math.min(FloorSpin.MAX, this.budget * 2)
        return true
      }
    }
    this.budget = Math.max(FloorSpin.MIN, this.budget >> 1)
    return false
  }
}

/** The spin policy, for the row's label. */
export const floorSpinPolicy = `${FloorSpin.MIN}–${FloorSpin.MAX} polls, ×2 on a catch, ÷2 on a miss, full budget every ${FloorSpin.PROBE_EVERY}th wait`

const IDLE = 0
const REQUEST = 1
const RESPONSE = 2
/** runsc's WORKER_PARKED and SENTRY_PARKED words: each end notifies only a parked other end. */
const WORKER_PARKED = 1
const SENTRY_PARKED = 2

const workerSource = `
const { parentPort, workerData } = require("node:worker_threads")
const FloorSpin = ${FloorSpin.toString()}
const words = new Int32Array(workerData.buffer)
const spin = new FloorSpin()
parentPort.once("message", (n) => {
  const t0 = performance.now()
  for (let k = 0; k < n; k++) {
    Atomics.store(words, 0, ${REQUEST})
    if (Atomics.load(words, ${SENTRY_PARKED}) !== 0) Atomics.notify(words, 0)
    if (!spin.poll(words, ${RESPONSE})) {
      Atomics.store(words, ${WORKER_PARKED}, 1)
      while (Atomics.load(words, 0) !== ${RESPONSE}) Atomics.wait(words, 0, ${REQUEST})
      Atomics.store(words, ${WORKER_PARKED}, 0)
    }
    words[0] = ${IDLE}
  }
  parentPort.postMessage(((performance.now() - t0) * 1e6) / n)
})`

/** ns per round trip over `n` round trips. */
export const channelFloor = async (n: number): Promise<number> => {
  const buffer = new SharedArrayBuffer(64)
  const words = new Int32Array(buffer)
  const worker = new Worker(workerSource, { eval: true, workerData: { buffer } })
  await new Promise((resolve) => worker.once("online", resolve))
  const spin = new FloorSpin()
  const awaitRequest = async () => {
    for (;;) {
      if (spin.poll(words, REQUEST)) return
      const state = Atomics.load(words, 0)
      if (state === REQUEST) return
      Atomics.store(words, SENTRY_PARKED, 1)
      const wait = Atomics.waitAsync(words, 0, state)
      if (wait.async) await wait.value
      Atomics.store(words, SENTRY_PARKED, 0)
    }
  }
  // Exactly n requests come; each is answered at once.
  const serve = async () => {
    for (let k = 0; k < n; k++) {
      await awaitRequest()
      Atomics.store(words, 0, RESPONSE)
      if (Atomics.load(words, WORKER_PARKED) !== 0) Atomics.notify(words, 0)
    }
  }
  const result = new Promise<number>((resolve) => worker.once("message", resolve))
  const served = serve()
  worker.postMessage(n)
  const ns = await result
  await served
  await worker.terminate()
  return ns
}
