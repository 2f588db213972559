/**
 * The floor under runsc's syscall channel: the same handshake in plain JS, with no Effect and no
 * syscall work. A worker publishes a request (store + notify), spins with the guest worker's
 * adaptive budget, then parks in Atomics.wait; the main thread waits with Atomics.waitAsync,
 * re-checking the state word first (as serve.ts's awaitRequest does), and answers at once.
 */
import { Worker } from "node:worker_threads"

const workerSource = `
const { parentPort, workerData } = require("node:worker_threads")
const words = new Int32Array(workerData.buffer)
const MIN_SPIN = 16, MAX_SPIN = 4096
let spin = MIN_SPIN
parentPort.once("message", (n) => {
  const t0 = performance.now()
  for (let k = 0; k < n; k++) {
    Atomics.store(words, 0, 1)
    Atomics.notify(words, 0)
    let served = false
    for (let i = 0; i < spin; i++) if (Atomics.load(words, 0) === 2) { served = true; break }
    if (served) spin = Math.min(MAX_SPIN, spin * 2)
    else {
      spin = Math.max(MIN_SPIN, spin >> 1)
      while (Atomics.load(words, 0) !== 2) Atomics.wait(words, 0, 1)
    }
    words[0] = 0
  }
  parentPort.postMessage(((performance.now() - t0) * 1e6) / n)
})`

/** ns per round trip over `n` round trips. */
export const channelFloor = async (n: number): Promise<number> => {
  const buffer = new SharedArrayBuffer(64)
  const words = new Int32Array(buffer)
  const worker = new Worker(workerSource, { eval: true, workerData: { buffer } })
  await new Promise((resolve) => worker.once("online", resolve))
  let stop = false
  const serve = async () => {
    while (!stop) {
      const state = Atomics.load(words, 0)
      if (state === 1) {
        Atomics.store(words, 0, 2)
        Atomics.notify(words, 0)
        continue
      }
      const wait = Atomics.waitAsync(words, 0, state, 50)
      if (wait.async) await wait.value
    }
  }
  const served = serve()
  const result = new Promise<number>((resolve) => worker.once("message", resolve))
  worker.postMessage(n)
  const ns = await result
  stop = true
  await served
  await worker.terminate()
  return ns
}
