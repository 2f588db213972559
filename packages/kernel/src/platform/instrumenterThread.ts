/**
 * The instrumentation thread's script: rewrites guest modules (instrument.ts) off the sentry's
 * thread, one request at a time, so that a large module (a second for 100 MB) never holds up
 * the syscalls of every other process. Bundled on its own (dist/platform/instrumenter.bundle.js).
 *
 * A request is { id, bytes }; the answer { id, bytes, memory } (the rewritten bytes transferred,
 * not copied) or { id, refused } with the reason a module cannot be instrumented. Anything else
 * thrown is a bug of the instrumentation: the thread lets it end the thread, and the sentry
 * reports it for the modules it was working on.
 */
import { parentPort } from "node:worker_threads"
import { instrument, UninstrumentableModule } from "./instrument.js"

export interface InstrumentRequest {
  readonly id: number
  readonly bytes: Uint8Array
}

export type InstrumentAnswer =
  | { readonly id: number; readonly bytes: Uint8Array; readonly memory: ReturnType<typeof instrument>["memory"] }
  | { readonly id: number; readonly refused: string }

const port = parentPort!
port.on("message", ({ id, bytes }: InstrumentRequest) => {
  let answer: InstrumentAnswer
  try {
    const done = instrument(bytes)
    answer = { id, bytes: done.bytes, memory: done.memory }
  } catch (e) {
    if (!(e instanceof UninstrumentableModule)) throw e
    answer = { id, refused: e.message }
  }
  port.postMessage(answer, "bytes" in answer ? [answer.bytes.buffer as ArrayBuffer] : [])
})
