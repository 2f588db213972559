/**
 * The baseline: the same guest under node:wasi, in this process, on the main thread (no worker,
 * no sentry). A module is compiled once and reused, as runsc's module cache does.
 *
 * A run never starts with the process's external memory near V8's limit: node:wasi can
 * otherwise corrupt the heap of the process that runs it (nodejs/node#46777: Node 19.7 through
 * at least 22; seen here on 20.20). Node calls the WASI functions as V8 fast API calls, during
 * which the GC must not run; but uvwasi allocates (in every fd_write and path_* call) through a
 * memory manager that reports each allocation to V8 (AdjustAmountOfExternalAllocatedMemory), and
 * when the isolate's external memory (ArrayBuffers, wasm memories: here the runsc kernel's tmpfs
 * pages and buffers) is past V8's limit, that report finalizes a pending incremental marking: a
 * full GC inside the fast call, which moves objects without updating the JS frames below the
 * guest. The suite then died with SIGSEGV a little later, anywhere in JS. V8's limit is always
 * 64 MiB above the lowest external memory since the last full GC, so at least 64 MiB; a run that
 * starts below HEADROOM_BYTES (or right after a full GC, which resets the limit 64 MiB above what
 * is left) and whose guest and uvwasi allocate less than the rest (these guests use < 1 MiB of
 * linear memory, and uvwasi frees in each call what it allocated) never reaches it. runsc itself
 * never loads node:wasi: its guests' calls are plain JS functions in the worker, and the sentry's
 * host calls are ordinary (not fast) Node-API and fs calls, at which the GC may run.
 */
import { createRequire } from "node:module"
import * as V8 from "node:v8"
import * as Vm from "node:vm"
import { now } from "./stats.js"

// node:wasi prints an ExperimentalWarning on first use; keep the benchmark output clean.
const emitWarning = process.emitWarning.bind(process)
process.emitWarning = ((warning: string | Error, ...rest: Array<unknown>) => {
  const text = typeof warning === "string" ? warning : warning.message
  if (/WASI/.test(text)) return
  return (emitWarning as (...a: Array<unknown>) => void)(warning, ...rest)
}) as typeof process.emitWarning
// Loaded after the filter above: node:wasi warns when the module is first loaded.
const { WASI } = createRequire(import.meta.url)("node:wasi") as typeof import("node:wasi")

/** External memory below which a run starts as it is: half of V8's least limit (64 MiB). */
const HEADROOM_BYTES = 32 * 1024 * 1024

/**
 * A full (mark-compact) GC. `gc` is global only under --expose-gc, which the suite does not ask
 * for (row 10 measures memory without forcing a GC); a context made after turning the flag on
 * has it, without changing this one's globals.
 */
const fullGc: () => void = (() => {
  const exposed = (globalThis as { gc?: () => void }).gc
  if (exposed !== undefined) return exposed
  V8.setFlagsFromString("--expose-gc")
  return Vm.runInNewContext("gc") as () => void
})()

/** Leaves HEADROOM_BYTES below V8's external-memory limit; a GC (not timed) only when needed. */
const settleExternalMemory = () => {
  if (V8.getHeapStatistics().external_memory >= HEADROOM_BYTES) fullGc()
}

export interface NodeWasiRun {
  readonly module: WebAssembly.Module
  readonly args: ReadonlyArray<string>
  /** The guest's stdin (default: this process's). */
  readonly stdin?: number
  readonly stdout: number
  readonly preopens?: Record<string, string>
  /** Called with the instance before it starts (an instrumented module's hooks go in here). */
  readonly prepare?: (instance: WebAssembly.Instance) => void
}

export interface NodeWasiResult {
  readonly code: number
  /** new WASI → instance → start → returned, in ms (a GC before it excluded). */
  readonly ms: number
}

/** Runs one guest to completion; wasi.start returns the proc_exit code (returnOnExit). */
export const runNodeWasi = (run: NodeWasiRun): NodeWasiResult => {
  settleExternalMemory()
  const t0 = now()
  const wasi = new WASI({
    version: "preview1",
    args: [...run.args],
    env: {},
    ...(run.stdin !== undefined ? { stdin: run.stdin } : {}),
    stdout: run.stdout,
    returnOnExit: true,
    ...(run.preopens ? { preopens: run.preopens } : {})
  })
  const instance = new WebAssembly.Instance(run.module, wasi.getImportObject() as WebAssembly.Imports)
  run.prepare?.(instance)
  const code = wasi.start(instance)
  return { code, ms: now() - t0 }
}
