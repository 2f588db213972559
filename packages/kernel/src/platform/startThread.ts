/**
 * Starting a guest worker thread, with no Effect runtime involved: the CLI calls this on its
 * first line, so that the thread boots (tens of ms) while the CLI itself is still loading, and
 * hands the thread to the kernel's pool once the kernel exists. The pool starts its own threads
 * the same way.
 */
import { createRequire } from "node:module"
import { pathToFileURL } from "node:url"
import { Worker } from "node:worker_threads"
import { ChannelViews, type FromWorker } from "./channel.js"

// The compiled worker, found by package name so that it resolves the same from the sources
// (tests, through the package's self-reference), from dist, and from a bundle of an app that
// depends on @runsc/kernel.
const workerScript = pathToFileURL(createRequire(import.meta.url).resolve("@runsc/kernel/worker"))

export interface StartingThread {
  readonly thread: Worker
  readonly channel: ChannelViews
  /**
   * Resolves with the thread's Linux tid (0 if unknown) when it is ready to run guests. If it
   * died first: rejects with the error its script threw (runsc's install is broken), or with a
   * ThreadExited when it exited (it was terminated).
   */
  readonly ready: Promise<number>
}

/** A thread that exited before it was ready (terminated), as opposed to one whose script failed. */
export class ThreadExited extends Error {}

export const startGuestThread = (): StartingThread => {
  const channel = ChannelViews.allocate()
  const thread = new Worker(workerScript, { workerData: { buffer: channel.buffer } })
  const ready = new Promise<number>((resolve, reject) => {
    thread.once("message", (m: FromWorker) => m._tag === "Ready" && resolve(m.tid))
    thread.once("error", reject)
    thread.once("exit", (code) => reject(new ThreadExited(`guest worker exited (${code}) before it was ready`)))
  })
  // Whoever adopts the thread observes `ready`; a thread nobody adopted must not turn into an
  // unhandled rejection.
  ready.catch(() => undefined)
  return { thread, channel, ready }
}
