/**
 * File I/O: large-file writes and reads in 64 KiB chunks, and small-file churn (create, stat,
 * unlink), by the fsbench guest (test/fixtures/c/fsbench.c) on a warm kernel, against the same
 * guest under node:wasi on the same host directory, interleaved. Rows give throughput, so the
 * ratio is runsc's over node:wasi's: higher is better. The page-traffic rows (17/17b) give time,
 * so their ratio is runsc's time over node:wasi's: lower is better.
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { runNodeWasi } from "./nodeWasi.js"
import { fixture } from "./paths.js"
import { type GuestRun, type KernelRuntime, runOnKernel } from "./runscKernel.js"
import { type BenchOptions, type BenchRow, mibPerSecond } from "./row.js"
import { fmtNs, fmtRatio, median } from "./stats.js"

const MIB = 64
const SMALL_FILES = 2000
const RUNS = 5
const PAGE_ROUNDS = 20000

const throughput = (ms: number) => mibPerSecond(MIB, ms)
const opsPerSecond = (ms: number) => `${((SMALL_FILES * 1000) / ms).toFixed(0)} files/s (${ms.toFixed(0)} ms)`

/** The guest's run on the kernel and under node:wasi, `runs` times each after a warm-up, interleaved; ms. */
const paired = async (
  rt: KernelRuntime,
  module: WebAssembly.Module,
  bytes: Uint8Array,
  dir: string,
  argv: ReadonlyArray<string>,
  rootMode: NonNullable<GuestRun["rootMode"]>,
  expect: string,
  between: () => void
) => {
  const out = Path.join(dir, ".out")
  const check = (side: string) => {
    const said = Fs.readFileSync(out, "utf8")
    if (said !== expect) throw new Error(`${side}: fsbench said ${JSON.stringify(said)}, not ${JSON.stringify(expect)}`)
  }
  const onKernel = async () => {
    const fd = Fs.openSync(out, "w")
    try {
      const r = await rt.runPromise(runOnKernel({ bytes, argv, rootPath: dir, rootMode, stdout: fd }))
      check("runsc")
      return r.ms
    } finally {
      Fs.closeSync(fd)
      between()
    }
  }
  const onNode = () => {
    const fd = Fs.openSync(out, "w")
    try {
      const r = runNodeWasi({ module, args: argv, stdout: fd, preopens: { "/": dir } })
      check("node:wasi")
      return r.ms
    } finally {
      Fs.closeSync(fd)
      between()
    }
  }
  await onKernel()
  onNode()
  const runsc: Array<number> = []
  const baseline: Array<number> = []
  for (let i = 0; i < RUNS; i++) {
    runsc.push(await onKernel())
    baseline.push(onNode())
  }
  return { runsc, baseline }
}

export const benchFiles = async (rt: KernelRuntime, options: BenchOptions): Promise<ReadonlyArray<BenchRow>> => {
  const bytes = Fs.readFileSync(fixture("fsbench"))
  const module = await WebAssembly.compile(bytes as Uint8Array<ArrayBuffer>)
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "runsc-bench-files-"))
  const rows: Array<BenchRow> = []
  const removeBig = () => Fs.rmSync(Path.join(dir, "big"), { force: true })
  const row = (name: string, t: { runsc: Array<number>; baseline: Array<number> }, show: (ms: number) => string, aim: number | undefined) => {
    options.verbose(name, t)
    const r = median(t.runsc)
    const b = median(t.baseline)
    // Throughput: node:wasi's time over runsc's.
    const ratio = b / r
    rows.push({
      name,
      runsc: show(r),
      baseline: show(b),
      ratio: fmtRatio(ratio),
      aim: aim === undefined ? "—" : `≥ ${aim}× (${ratio >= aim ? "met" : "missed"})`
    })
  }
  try {
    const write = ["fsbench", "write", "/big", String(MIB)]
    const wrote = `wrote ${MIB * 1024 * 1024}\n`
    options.progress(`13. large-file write, ${MIB} MiB`)
    row(
      `13. large-file write: ${MIB} MiB in 64 KiB writes → host file (an rw bind mount) (throughput, median of ${RUNS})`,
      await paired(rt, module, bytes, dir, write, "writable", wrote, removeBig),
      throughput,
      undefined
    )
    row(
      `13b. large-file write: ${MIB} MiB → the overlay root (memory; node:wasi writes the host file) (throughput, median of ${RUNS})`,
      await paired(rt, module, bytes, dir, write, "overlay", wrote, removeBig),
      throughput,
      undefined
    )
    options.progress(`14. large-file read, ${MIB} MiB`)
    Fs.writeFileSync(Path.join(dir, "big"), Buffer.alloc(MIB * 1024 * 1024, "r"))
    row(
      `14. large-file read: ${MIB} MiB in 64 KiB reads ← host file (the gofer root) (throughput, median of ${RUNS})`,
      await paired(rt, module, bytes, dir, ["fsbench", "read", "/big"], "readonly", `read ${MIB * 1024 * 1024}\n`, () => undefined),
      throughput,
      0.8
    )
    removeBig()
    options.progress(`15. small files, ${SMALL_FILES}`)
    const small = ["fsbench", "small", "/", String(SMALL_FILES)]
    row(
      `15. small files: ${SMALL_FILES} × (create, close, stat, unlink) on the host (an rw bind mount) (median of ${RUNS})`,
      await paired(rt, module, bytes, dir, small, "writable", `small ${SMALL_FILES}\n`, () => undefined),
      opsPerSecond,
      0.5
    )
    row(
      `15b. small files: the same in the overlay root (memory; node:wasi on the host) (median of ${RUNS})`,
      await paired(rt, module, bytes, dir, small, "overlay", `small ${SMALL_FILES}\n`, () => undefined),
      opsPerSecond,
      0.5
    )
  } finally {
    Fs.rmSync(dir, { recursive: true, force: true })
  }
  return rows
}

/**
 * SQLite-like file traffic: one guest opens one 1 MiB file and runs PAGE_ROUNDS rounds of
 * lseek, pread of a pseudo-random 4 KiB page, pwrite of a page, fstat (fsbench pages), as a
 * database engine does on its database file. Row 17 puts the file on an rw bind mount (where a
 * database that outlives the container lives); 17b in the overlay root (a scratch database).
 */
export const benchPages = async (rt: KernelRuntime, options: BenchOptions): Promise<ReadonlyArray<BenchRow>> => {
  const bytes = Fs.readFileSync(fixture("fsbench"))
  const module = await WebAssembly.compile(bytes as Uint8Array<ArrayBuffer>)
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "runsc-bench-pages-"))
  const rows: Array<BenchRow> = []
  const aim = 1.5
  const row = (name: string, t: { runsc: Array<number>; baseline: Array<number> }) => {
    options.verbose(name, t)
    const r = median(t.runsc)
    const b = median(t.baseline)
    const ratio = r / b
    const show = (ms: number) => `${fmtNs((ms * 1e6) / PAGE_ROUNDS)} (${ms.toFixed(0)} ms)`
    rows.push({ name, runsc: show(r), baseline: show(b), ratio: fmtRatio(ratio), aim: `≤ ${aim}× (${ratio <= aim ? "met" : "missed"})` })
  }
  try {
    options.progress(`17. SQLite-like file traffic, ${PAGE_ROUNDS} rounds`)
    const pages = ["fsbench", "pages", "/db", String(PAGE_ROUNDS)]
    const said = `pages ${PAGE_ROUNDS} (consistent)\n`
    const what = `${PAGE_ROUNDS} × (lseek, 4 KiB pread at a pseudo-random page, 4 KiB pwrite, fstat) on one 1 MiB file`
    row(
      `17. SQLite-like file traffic: ${what} on the host (an rw bind mount), per round (median of ${RUNS})`,
      await paired(rt, module, bytes, dir, pages, "writable", said, () => undefined)
    )
    row(
      `17b. SQLite-like file traffic: the same in the overlay root (memory; node:wasi on the host), per round (median of ${RUNS})`,
      await paired(rt, module, bytes, dir, pages, "overlay", said, () => undefined)
    )
  } finally {
    Fs.rmSync(dir, { recursive: true, force: true })
  }
  return rows
}
