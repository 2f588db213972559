/** Small statistics and formatting helpers shared by the benchmarks. */
import { performance } from "node:perf_hooks"

export const median = (xs: ReadonlyArray<number>): number => {
  if (xs.length === 0) return Number.NaN
  const s = [...xs].sort((a, b) => a - b)
  const mid = s.length >> 1
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2
}

/** Nearest-rank percentile, p in [0, 100]. */
export const percentile = (xs: ReadonlyArray<number>, p: number): number => {
  if (xs.length === 0) return Number.NaN
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!
}

export const now = (): number => performance.now()

/** Times an async thunk in milliseconds. */
export const timeAsync = async (f: () => Promise<unknown>): Promise<number> => {
  const t0 = now()
  await f()
  return now() - t0
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Milliseconds with a precision that suits their size. */
export const fmtMs = (ms: number): string =>
  !Number.isFinite(ms) ? "n/a" : ms >= 100 ? `${ms.toFixed(0)} ms` : ms >= 10 ? `${ms.toFixed(1)} ms` : `${ms.toFixed(2)} ms`

export const fmtNs = (ns: number): string =>
  !Number.isFinite(ns) ? "n/a" : ns >= 10_000 ? `${(ns / 1000).toFixed(1)} µs` : ns >= 100 ? `${ns.toFixed(0)} ns` : `${ns.toFixed(1)} ns`

export const fmtRatio = (r: number): string => (!Number.isFinite(r) ? "n/a" : `${r.toFixed(2)}×`)
