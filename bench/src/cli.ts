/**
 * 12. The OCI commands through the CLI binary, as containerd runs them: each command's latency
 * (a fresh `runsc` process talking to a sandbox process over its control socket) against a bare
 * `node -e 0` start, and container throughput through the CLI against the same lifecycle through
 * the Loader library, in one run.
 */
import { Loader } from "@runsc/loader"
import { type Bundle, defaultSpec, type Spec } from "@runsc/spec"
import { Context, Effect, Layer } from "effect"
import { spawnSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import type { BenchRow } from "./row.js"
import { fixture, runscBin } from "./paths.js"
import { fmtMs, median, now } from "./stats.js"

const ROUNDS = 10
const THROUGHPUT_CONTAINERS = 10
const LIBRARY_CONTAINERS = 50

/** A bundle directory whose rootfs holds sleep and exit under /bin. */
const writeBundle = (dir: string, args: readonly [string, ...Array<string>]) => {
  const rootfs = Path.join(dir, "rootfs")
  Fs.mkdirSync(Path.join(rootfs, "bin"), { recursive: true })
  for (const name of ["sleep", "exit"]) {
    Fs.copyFileSync(fixture(name), Path.join(rootfs, "bin", name))
    Fs.chmodSync(Path.join(rootfs, "bin", name), 0o755)
  }
  const template = defaultSpec()
  const spec: Spec = { ...template, root: { path: "rootfs" }, process: { ...template.process!, args, env: ["PATH=/bin"] }, mounts: [] }
  Fs.writeFileSync(Path.join(dir, "config.json"), JSON.stringify(spec))
  return { dir, spec, rootPath: rootfs } satisfies Bundle
}

/** One CLI command to completion (stdio /dev/null); its wall time in ms. Throws on failure. */
const timedRunsc = (args: ReadonlyArray<string>, okCodes: ReadonlyArray<number> = [0]): number => {
  const t0 = now()
  const r = spawnSync(runscBin, [...args], { stdio: "ignore", timeout: 30_000 })
  const ms = now() - t0
  if (!okCodes.includes(r.status ?? -1)) throw new Error(`runsc ${args.join(" ")} exited ${r.status ?? r.signal}`)
  return ms
}

const nodeStart = (): number => {
  const t0 = now()
  spawnSync(process.execPath, ["-e", "0"], { stdio: "ignore" })
  return now() - t0
}

export const benchCli = async (progress: (text: string) => void): Promise<Array<BenchRow>> => {
  const work = Fs.mkdtempSync(Path.join(Os.tmpdir(), "runsc-bench-cli-"))
  try {
    const root = ["--root", Path.join(work, "root")]
    const sleeper = writeBundle(Path.join(work, "sleeper"), ["sleep", "600"])
    const exiter = writeBundle(Path.join(work, "exiter"), ["exit", "0"])
    progress("12. CLI command latency (create, start, state, exec, kill, wait, delete) and CLI vs library throughput")
    const samples: Record<string, Array<number>> = { create: [], start: [], state: [], exec: [], kill: [], wait: [], delete: [] }
    const floor: Array<number> = []
    for (let i = 0; i < ROUNDS; i++) {
      const id = `bench-${i}`
      samples.create!.push(timedRunsc([...root, "create", "--bundle", sleeper.dir, id]))
      samples.start!.push(timedRunsc([...root, "start", id]))
      samples.state!.push(timedRunsc([...root, "state", id]))
      samples.exec!.push(timedRunsc([...root, "exec", id, "/bin/exit", "0"]))
      samples.kill!.push(timedRunsc([...root, "kill", id, "KILL"]))
      samples.wait!.push(timedRunsc([...root, "wait", id]))
      samples.delete!.push(timedRunsc([...root, "delete", id]))
      floor.push(nodeStart())
    }
    const base = median(floor)
    // Issue 13's aims: the commands engines run around every container (state, kill, start and
    // delete take the fast path, src/fastPath.ts) ≤ 1.5×, create ≤ 2.5×.
    const aims: Record<string, number> = { create: 2.5, start: 1.5, state: 1.5, kill: 1.5, delete: 1.5 }
    const rows: Array<BenchRow> = Object.entries(samples).map(([command, ms]) => {
      const ratio = median(ms) / base
      const aim = aims[command]
      return {
        name: `12. \`runsc ${command}\` through the CLI binary (median of ${ROUNDS}); baseline: \`node -e 0\` start`,
        runsc: fmtMs(median(ms)),
        baseline: fmtMs(base),
        ratio: `${ratio.toFixed(2)}×`,
        aim: aim === undefined ? "—" : `≤ ${aim}× (${ratio <= aim ? "met" : "missed"})`
      }
    })

    // Throughput: create + start + wait + delete of `exit 0`, one after another.
    const t0 = now()
    for (let i = 0; i < THROUGHPUT_CONTAINERS; i++) {
      const id = `tp-${i}`
      timedRunsc([...root, "create", "--bundle", exiter.dir, id])
      timedRunsc([...root, "start", id])
      timedRunsc([...root, "wait", id])
      timedRunsc([...root, "delete", id])
    }
    const cliRate = THROUGHPUT_CONTAINERS / ((now() - t0) / 1000)
    const libraryRate = await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
      const devNull = yield* Effect.acquireRelease(Effect.sync(() => Fs.openSync("/dev/null", "r+")), (fd) => Effect.sync(() => Fs.closeSync(fd)))
      const stdio = { stdin: devNull, stdout: devNull, stderr: devNull }
      const loader = yield* Effect.map(
        Layer.build(Loader.layer({ containerId: "root", bundle: writeBundle(Path.join(work, "lib-root"), ["sleep", "600"]), stdio })),
        Context.get(Loader)
      )
      yield* loader.startRoot
      const start = now()
      for (let i = 0; i < LIBRARY_CONTAINERS; i++) {
        const id = `lib-${i}`
        yield* loader.createSubcontainer(id)
        yield* loader.startSubcontainer({ containerId: id, bundle: exiter, stdio })
        yield* loader.wait(id)
        yield* loader.destroySubcontainer(id)
      }
      return LIBRARY_CONTAINERS / ((now() - start) / 1000)
    }).pipe(Effect.orDie)))
    rows.push({
      name: `12b. container throughput through the CLI: create + start + wait + delete of \`exit 0\`, sequential, over ${THROUGHPUT_CONTAINERS} (each its own sandbox process); baseline: the same lifecycle through the Loader library in this process (sub-containers of one sandbox), over ${LIBRARY_CONTAINERS}`,
      runsc: `${cliRate.toFixed(1)}/s`,
      baseline: `${libraryRate.toFixed(0)}/s`,
      ratio: `${(cliRate / libraryRate).toFixed(3)}×`,
      aim: "—"
    })
    return rows
  } finally {
    // Whatever a failed round left running.
    spawnSync(runscBin, ["--root", Path.join(work, "root"), "list", "-q"], { encoding: "utf8" }).stdout?.split("\n").filter(Boolean)
      .forEach((id) => spawnSync(runscBin, ["--root", Path.join(work, "root"), "delete", "--force", id], { stdio: "ignore" }))
    Fs.rmSync(work, { recursive: true, force: true })
  }
}
