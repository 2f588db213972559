/**
 * Where guest modules are instrumented (instrument.ts). The kernel's modules past
 * IN_PLACE_BYTES are rewritten on a thread of their own (instrumenterThread.ts): the rewrite
 * decodes every instruction, ~60 ms a MB, and on the sentry's thread it would hold up every
 * process's syscalls meanwhile.
 *
 * The thread starts at the first request and is unref'd (it never keeps the process alive); it
 * is ended with the kernel's scope. A module the thread cannot instrument is refused
 * (UninstrumentableModule, as in the sentry); a thread that dies (a bug, or a module that
 * exhausts its heap, which is bounded by MAX_HEAP_MB) fails the requests it held as refused,
 * and the next request starts a new thread. `inThread` is the same rewrite made where it is
 * called, for callers with no kernel (tests, tools).
 */
import { Effect, type Scope } from "effect"
import { createRequire } from "node:module"
import { pathToFileURL } from "node:url"
import { Worker } from "node:worker_threads"
import { instrument, type InstrumentedModule, UninstrumentableModule } from "./instrument.js"
import type { InstrumentAnswer, InstrumentRequest } from "./instrumenterThread.js"

export interface Instrumenter {
  readonly instrument: (bytes: Uint8Array) => Effect.Effect<InstrumentedModule, UninstrumentableModule>
}

/** Instruments where it is called (see the module's comment). */
export const inThread: Instrumenter = {
  instrument: (bytes) =>
    Effect.suspend(() => {
      try {
        return Effect.succeed(instrument(bytes))
      } catch (e) {
        // Anything else is a bug of the instrumentation: a defect.
        if (e instanceof UninstrumentableModule) return Effect.fail(e)
        throw e
      }
    })
}

/** The rewrite's heap: a module past what this allows is refused rather than taking the sandbox down. */
const MAX_HEAP_MB = 2048

const threadScript = pathToFileURL(createRequire(import.meta.url).resolve("@runsc/kernel/instrumenter"))

/**
 * Modules up to this size are rewritten in place: at ~60 ms a MB that holds the sentry for at
 * most ~4 ms, and a sandbox whose programs are all small never starts the thread (a thread is
 * ~8 MB of memory, more than a small guest's whole process).
 */
export const IN_PLACE_BYTES = 64 * 1024

/** An instrumenter on its own thread (for modules past IN_PLACE_BYTES), ended when `scope` closes. */
export const offThread: Effect.Effect<Instrumenter, never, Scope.Scope> = Effect.gen(function*() {
  let thread: Worker | undefined
  let nextId = 0
  const pending = new Map<number, (answer: InstrumentAnswer) => void>()
  const start = (): Worker => {
    const started = new Worker(threadScript, { resourceLimits: { maxOldGenerationSizeMb: MAX_HEAP_MB } })
    started.unref()
    started.on("message", (answer: InstrumentAnswer) => {
      const resume = pending.get(answer.id)
      pending.delete(answer.id)
      resume?.(answer)
    })
    const died = (why: string) => {
      if (thread !== started) return
      thread = undefined
      const waiting = [...pending.entries()]
      pending.clear()
      for (const [id, resume] of waiting) resume({ id, refused: `the instrumentation thread ended: ${why}` })
    }
    started.on("error", (e) => died(e.message))
    started.on("exit", (code) => died(`exit ${code}`))
    return started
  }
  yield* Effect.addFinalizer(() =>
    Effect.promise(async () => {
      const running = thread
      thread = undefined
      if (running !== undefined) await running.terminate()
    })
  )
  return {
    instrument: (bytes) =>
      bytes.length <= IN_PLACE_BYTES ? inThread.instrument(bytes) : Effect.async<InstrumentedModule, UninstrumentableModule>((resume) => {
        const id = nextId++
        pending.set(id, (answer) =>
          resume("refused" in answer ? Effect.fail(new UninstrumentableModule(answer.refused)) : Effect.succeed({ bytes: answer.bytes, memory: answer.memory })))
        thread ??= start()
        // A copy of just these bytes (a view may be part of a larger buffer), handed over whole.
        const request: InstrumentRequest = { id, bytes: bytes.slice() }
        thread.postMessage(request, [request.bytes.buffer as ArrayBuffer])
        // An interrupted caller stops waiting; the thread's answer is then dropped.
        return Effect.sync(() => pending.delete(id))
      })
  }
})
