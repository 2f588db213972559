/**
 * Reading host stdin: `cat` (test/fixtures/c/cat.c, 4 KiB reads) copies 64 MiB from a host pipe
 * to /dev/null, on a warm kernel and under node:wasi, interleaved. The pipe is a FIFO that a
 * `head -c` process fills as fast as the guest empties it. Throughput rows: the ratio is
 * runsc's over node:wasi's, higher is better.
 */
import { spawn, spawnSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { runNodeWasi } from "./nodeWasi.js"
import { fixture, fixturesDir } from "./paths.js"
import { type KernelRuntime, runOnKernel } from "./runscKernel.js"
import { type BenchOptions, type BenchRow, mibPerSecond } from "./row.js"
import { fmtRatio, median } from "./stats.js"

const MIB = 64
const RUNS = 5

const throughput = (ms: number) => mibPerSecond(MIB, ms)

/**
 * Runs `read` with the read end of a FIFO that a new `head -c` writes MIB MiB of zeros into;
 * waits for the writer to end, so that no run overlaps the next one's.
 */
const withFilledPipe = async (fifo: string, read: (fd: number) => Promise<number>): Promise<number> => {
  const writer = spawn("sh", ["-c", `exec head -c ${MIB * 1024 * 1024} /dev/zero > "$1"`, "sh", fifo], { stdio: "ignore" })
  const ended = new Promise<void>((resolve) => writer.once("exit", () => resolve()))
  // Opening a FIFO's read end waits until the writer has opened it (a few ms: sh's start).
  const fd = Fs.openSync(fifo, "r")
  try {
    return await read(fd)
  } finally {
    Fs.closeSync(fd)
    await ended
  }
}

export const benchStdin = async (rt: KernelRuntime, devNull: number, options: BenchOptions): Promise<ReadonlyArray<BenchRow>> => {
  const bytes = Fs.readFileSync(fixture("cat"))
  const module = await WebAssembly.compile(bytes as Uint8Array<ArrayBuffer>)
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "runsc-bench-stdin-"))
  try {
    const fifo = Path.join(dir, "stdin")
    const made = spawnSync("mkfifo", [fifo])
    if (made.status !== 0) throw new Error(`mkfifo: ${made.stderr}`)
    const onKernel = () =>
      withFilledPipe(fifo, async (stdin) => (await rt.runPromise(runOnKernel({ bytes, argv: ["cat"], rootPath: fixturesDir, stdin, stdout: devNull }))).ms)
    const onNode = () => withFilledPipe(fifo, async (stdin) => runNodeWasi({ module, args: ["cat"], stdin, stdout: devNull }).ms)
    options.progress(`16. stdin, ${MIB} MiB through a pipe`)
    await onKernel()
    await onNode()
    const runsc: Array<number> = []
    const baseline: Array<number> = []
    for (let i = 0; i < RUNS; i++) {
      runsc.push(await onKernel())
      baseline.push(await onNode())
    }
    const name = `16. stdin: cat copies ${MIB} MiB from a host pipe (4 KiB reads) to /dev/null (throughput, median of ${RUNS})`
    options.verbose(name, { runsc, baseline })
    const r = median(runsc)
    const b = median(baseline)
    return [{ name, runsc: throughput(r), baseline: throughput(b), ratio: fmtRatio(b / r), aim: "—" }]
  } finally {
    Fs.rmSync(dir, { recursive: true, force: true })
  }
}
