/**
 * Rows 20-20c: sockets between two guest processes over the sandbox's loopback
 * (test/fixtures/c/net_echo.c's bench modes, on a kernel with the loopback network), beside the
 * same protocol between two Node processes over 127.0.0.1 (bench/baseline/net-peer.mjs). Each
 * side measures itself with its own clock (the client: connect to its last answer), so neither
 * side's process start counts.
 */
import { Kernel } from "@runsc/kernel"
import { makeLoopbackNetwork } from "@runsc/netstack"
import { Deferred, Effect, ManagedRuntime } from "effect"
import { spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { benchDir, fixture, fixturesDir } from "./paths.js"
import { type BenchOptions, type BenchRow, mibPerSecond } from "./row.js"
import { startOnKernel } from "./runscKernel.js"
import { fmtRatio, median, sleep } from "./stats.js"

const RUNS = 3
const MIB = 128
const CONNECTIONS = 1000
const ROUND_TRIPS = 2000
const nodePeer = Path.join(benchDir, "baseline", "net-peer.mjs")

/** What the client printed: "<verb> N ... in MS ms". */
const measured = (output: string): number => {
  const match = / in ([\d.]+) ms/.exec(output)
  if (match === null) throw new Error(`no measurement in ${JSON.stringify(output)}`)
  return Number(match[1])
}

let nextPort = 20_000

/** The server and client guests on one kernel (its network shared); the client's output. */
const runGuests = (rt: ManagedRuntime.ManagedRuntime<Kernel, never>, server: ReadonlyArray<string>, client: ReadonlyArray<string>) =>
  rt.runPromise(Effect.scoped(Effect.gen(function*() {
    const kernel = yield* Kernel
    const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "runsc-bench-net-"))
    const bytes = new Uint8Array(Fs.readFileSync(fixture("net_echo")))
    const out = (name: string) => Fs.openSync(Path.join(dir, name), "w+")
    const [serverOut, clientOut] = [out("server"), out("client")]
    const read = (name: string) => Fs.readFileSync(Path.join(dir, name), "utf8")
    const serverTg = yield* startOnKernel({ bytes, argv: ["net_echo", ...server], rootPath: fixturesDir, stdout: serverOut })
    for (let waited = 0; !read("server").includes("listening"); waited++) {
      if (waited > 2000) throw new Error(`the guest server never listened: ${read("server")}`)
      yield* Effect.promise(() => sleep(1))
    }
    const clientTg = yield* startOnKernel({ bytes, argv: ["net_echo", ...client], rootPath: fixturesDir, stdout: clientOut })
    yield* Deferred.await(clientTg.exitStatus)
    yield* Deferred.await(serverTg.exitStatus)
    yield* kernel.reap(clientTg)
    yield* kernel.reap(serverTg)
    const output = read("client")
    Fs.closeSync(serverOut)
    Fs.closeSync(clientOut)
    Fs.rmSync(dir, { recursive: true, force: true })
    return output
  })))

/** The same pair as two Node processes; the client's output. */
const runNode = async (server: ReadonlyArray<string>, client: ReadonlyArray<string>): Promise<string> => {
  const serverChild = spawn(process.execPath, [nodePeer, ...server], { stdio: ["ignore", "pipe", "inherit"] })
  const serverDone = new Promise<void>((resolve) => serverChild.once("exit", () => resolve()))
  await new Promise<void>((resolve, reject) => {
    let seen = ""
    serverChild.stdout.on("data", (data: Buffer) => {
      seen += data.toString()
      if (seen.includes("listening")) resolve()
    })
    serverChild.once("exit", () => reject(new Error(`the Node server ended before it listened: ${seen}`)))
  })
  const clientChild = spawn(process.execPath, [nodePeer, ...client], { stdio: ["ignore", "pipe", "inherit"] })
  let output = ""
  clientChild.stdout.on("data", (data: Buffer) => void (output += data.toString()))
  await new Promise<void>((resolve) => clientChild.once("exit", () => resolve()))
  await serverDone
  return output
}

interface Pair {
  readonly server: (port: number) => ReadonlyArray<string>
  readonly client: (port: number) => ReadonlyArray<string>
}

/** RUNS of each side, interleaved; each a fresh port. Medians of the clients' own times (ms). */
const measure = async (rt: ManagedRuntime.ManagedRuntime<Kernel, never>, pair: Pair) => {
  const runsc: Array<number> = []
  const node: Array<number> = []
  for (let i = 0; i <= RUNS; i++) {
    const port = nextPort++
    const guest = measured(await runGuests(rt, pair.server(port), pair.client(port)))
    const baseline = measured(await runNode(pair.server(port + 1000), pair.client(port + 1000)))
    // The first of each warms up (module compile, V8 tiers); it is not kept.
    if (i === 0) continue
    runsc.push(guest)
    node.push(baseline)
  }
  return { runsc, node, r: median(runsc), b: median(node) }
}

export const benchSockets = async (options: BenchOptions): Promise<ReadonlyArray<BenchRow>> => {
  const rt = ManagedRuntime.make(Kernel.layer({ warmWorkers: 2, network: makeLoopbackNetwork() }))
  try {
    const rows: Array<BenchRow> = []
    const streamName = `20. loopback stream throughput: one connection, ${MIB} MiB in 64 KiB sends, between two guest processes of one sandbox (net_echo source → sink) vs two Node processes over 127.0.0.1 (median of ${RUNS})`
    options.progress(streamName)
    const stream = await measure(rt, { server: (p) => ["sink", `${p}`], client: (p) => ["source", `${p}`, `${MIB}`] })
    options.verbose("20", { runsc: stream.runsc, node: stream.node })
    const runscRate = (MIB * 1000) / stream.r
    const nodeRate = (MIB * 1000) / stream.b
    rows.push({
      name: streamName,
      runsc: mibPerSecond(MIB, stream.r),
      baseline: mibPerSecond(MIB, stream.b),
      ratio: fmtRatio(runscRate / nodeRate),
      aim: `≥ 0.5× (${runscRate / nodeRate >= 0.5 ? "met" : "missed"})`
    })
    const connName = `20b. connections per second: ${CONNECTIONS} × (connect, accept, close), guest to guest vs Node to Node over 127.0.0.1 (median of ${RUNS})`
    options.progress(connName)
    const conn = await measure(rt, { server: (p) => ["accepter", `${p}`, `${CONNECTIONS}`], client: (p) => ["connector", `${p}`, `${CONNECTIONS}`] })
    options.verbose("20b", { runsc: conn.runsc, node: conn.node })
    const runscConn = CONNECTIONS / (conn.r / 1000)
    const nodeConn = CONNECTIONS / (conn.b / 1000)
    rows.push({
      name: connName,
      runsc: `${runscConn.toFixed(0)}/s`,
      baseline: `${nodeConn.toFixed(0)}/s`,
      ratio: fmtRatio(runscConn / nodeConn),
      aim: `≥ 0.3× (${runscConn / nodeConn >= 0.3 ? "met" : "missed"})`
    })
    const pingName = `20c. request/response latency: ${ROUND_TRIPS} round trips of 1 byte on one connection, guest to guest vs Node to Node over 127.0.0.1, per round trip (median of ${RUNS})`
    options.progress(pingName)
    const ping = await measure(rt, { server: (p) => ["pong", `${p}`], client: (p) => ["ping", `${p}`, `${ROUND_TRIPS}`] })
    options.verbose("20c", { runsc: ping.runsc, node: ping.node })
    const perRunsc = (ping.r * 1000) / ROUND_TRIPS
    const perNode = (ping.b * 1000) / ROUND_TRIPS
    rows.push({
      name: pingName,
      runsc: `${perRunsc.toFixed(1)} µs`,
      baseline: `${perNode.toFixed(1)} µs`,
      ratio: fmtRatio(perRunsc / perNode),
      aim: "—"
    })
    return rows
  } finally {
    await rt.dispose()
  }
}
