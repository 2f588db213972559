/**
 * 18. A container through a real engine: `podman run --rm` of a wasm hello image with runsc as
 * its runtime, beside the same podman running a static native hello through runc, in the same
 * run (issue 13's aim: ≤ 2×). podman gets a configuration of its own under a temporary
 * directory (vfs storage, no network namespace, cgroupfs, file events), as the podman e2e test
 * does. Where podman, runc, a C compiler or root is missing, the row says which and is skipped.
 */
import { spawnSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { helloRoot, runscBin } from "./paths.js"
import type { BenchRow } from "./row.js"
import { fmtMs, median, now } from "./stats.js"

const ROUNDS = 7
const NAME = "18. `podman run --rm` of a wasm hello image, runtime runsc (median of 7); baseline: the same podman running a static native hello through runc"

const missing = (): string | undefined => {
  if (process.getuid?.() !== 0) return "not root"
  for (const tool of ["podman", "runc", "cc"]) {
    if (spawnSync(tool, ["--version"], { stdio: "ignore" }).status !== 0) return `${tool} is not installed`
  }
  return undefined
}

export const benchEngine = (progress: (text: string) => void): ReadonlyArray<BenchRow> => {
  const why = missing()
  if (why !== undefined) return [{ name: NAME, runsc: "—", baseline: "—", ratio: "—", aim: `≤ 2× (skipped: ${why})` }]
  progress("18. podman run --rm: runsc (wasm hello) vs runc (static native hello)")
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "runsc-bench-engine-"))
  const env = { ...process.env, CONTAINERS_CONF: Path.join(dir, "containers.conf"), CONTAINERS_STORAGE_CONF: Path.join(dir, "storage.conf") }
  const podman = (args: ReadonlyArray<string>) => {
    const t0 = now()
    const r = spawnSync("podman", args, { env, stdio: ["ignore", "ignore", "pipe"], encoding: "utf8", timeout: 90_000, killSignal: "SIGKILL" })
    if (r.status !== 0) throw new Error(`podman ${args.join(" ")}: ${r.status ?? r.signal} ${r.stderr}`)
    return now() - t0
  }
  try {
    Fs.mkdirSync(Path.join(dir, "bin"))
    Fs.writeFileSync(Path.join(dir, "bin", "runsc"), `#!/bin/sh\nexec ${JSON.stringify(runscBin)} --root ${JSON.stringify(Path.join(dir, "state"))} "$@"\n`, { mode: 0o755 })
    Fs.writeFileSync(Path.join(dir, "containers.conf"), [
      "[containers]",
      `netns = "none"`,
      "[engine]",
      `cgroup_manager = "cgroupfs"`,
      `events_logger = "file"`,
      `tmp_dir = "${Path.join(dir, "tmp")}"`,
      "[engine.runtimes]",
      `runsc = ["${Path.join(dir, "bin", "runsc")}"]`,
      ""
    ].join("\n"))
    Fs.writeFileSync(Path.join(dir, "storage.conf"), ["[storage]", `driver = "vfs"`, `runroot = "${Path.join(dir, "run")}"`, `graphroot = "${Path.join(dir, "storage")}"`, ""].join("\n"))
    // The wasm image: the example bundle's root filesystem, its hello as the entrypoint.
    const wasm = Path.join(dir, "wasm")
    Fs.cpSync(helloRoot, Path.join(wasm, "rootfs"), { recursive: true })
    Fs.writeFileSync(Path.join(wasm, "Containerfile"), "FROM scratch\nCOPY rootfs /\nENTRYPOINT [\"/bin/hello\"]\n")
    // The native one: a static hello, alone in its image.
    const native = Path.join(dir, "native")
    Fs.mkdirSync(native)
    Fs.writeFileSync(Path.join(native, "hello.c"), "#include <stdio.h>\nint main(void) { puts(\"Hello from a native binary\"); return 0; }\n")
    const cc = spawnSync("cc", ["-static", "-O2", "-o", Path.join(native, "hello"), Path.join(native, "hello.c")], { encoding: "utf8" })
    if (cc.status !== 0) return [{ name: NAME, runsc: "—", baseline: "—", ratio: "—", aim: `≤ 2× (skipped: cc -static failed: ${cc.stderr.trim()})` }]
    Fs.writeFileSync(Path.join(native, "Containerfile"), "FROM scratch\nCOPY hello /hello\nENTRYPOINT [\"/hello\"]\n")
    podman(["build", "-q", "-t", "localhost/bench-wasm-hello", wasm])
    podman(["build", "-q", "-t", "localhost/bench-native-hello", native])
    // runc sets the rlimits podman asks for by default; root here may not raise them (no CAP_SYS_RESOURCE).
    const limits = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]
    const wasmRun = ["--runtime", "runsc", "run", "--rm", "localhost/bench-wasm-hello"]
    const nativeRun = ["--runtime", "runc", "run", "--rm", ...limits, "localhost/bench-native-hello"]
    podman(wasmRun)
    podman(nativeRun)
    const runs: Array<number> = []
    const baseline: Array<number> = []
    for (let i = 0; i < ROUNDS; i++) {
      runs.push(podman(wasmRun))
      baseline.push(podman(nativeRun))
    }
    const ratio = median(runs) / median(baseline)
    return [{
      name: NAME,
      runsc: fmtMs(median(runs)),
      baseline: fmtMs(median(baseline)),
      ratio: `${ratio.toFixed(2)}×`,
      aim: `≤ 2× (${ratio <= 2 ? "met" : "missed"})`
    }]
  } finally {
    spawnSync("podman", ["rm", "-af", "-t", "0"], { env, stdio: "ignore", timeout: 60_000 })
    spawnSync("podman", ["system", "reset", "-f"], { env, stdio: "ignore", timeout: 60_000 })
    Fs.rmSync(dir, { recursive: true, force: true })
  }
}
