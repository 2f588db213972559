/**
 * The baseline: the same guest under node:wasi, in this process, on the main thread (no worker,
 * no sentry). A module is compiled once and reused, as runsc's module cache does.
 */
import { createRequire } from "node:module"
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

export interface NodeWasiRun {
  readonly module: WebAssembly.Module
  readonly args: ReadonlyArray<string>
  /** The guest's stdin (default: this process's). */
  readonly stdin?: number
  readonly stdout: number
  readonly preopens?: Record<string, string>
}

export interface NodeWasiResult {
  readonly code: number
  /** new WASI → instance → start → returned, in ms. */
  readonly ms: number
}

/** Runs one guest to completion; wasi.start returns the proc_exit code (returnOnExit). */
export const runNodeWasi = (run: NodeWasiRun): NodeWasiResult => {
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
  const code = wasi.start(instance)
  return { code, ms: now() - t0 }
}
