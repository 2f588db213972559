/**
 * runsc behind containerd: Debian's containerd 1.6 and its runc shim (containerd-shim-runc-v2)
 * with runsc as the shim's runc binary (`ctr run --runc-binary`), driving a wasm image built
 * here as an OCI layout from the C fixtures and imported (no registry): run (stdout, exit
 * code), a detached container (exec, pause/resume, metrics from its cgroup, kill, delete), and a
 * pod made the way the CRI makes one — a sandbox container, then a container whose annotations
 * name it, each in its own bundle and snapshot, which joins the sandbox with no grant (its
 * create donates its trees) and is held by its own waiter. Nothing is left behind: no task, no
 * mount, no runsc process. `.ci/run` installs containerd; where it is not installed or cannot
 * run here, the tests are skipped and say which check failed.
 *
 * containerd runs privately (its own root, state, socket and configuration, the CRI plugin off),
 * so nothing of the machine's containerd is used or changed; runsc's state is under the runc
 * shim's root for this test's own namespace.
 */
import { assert, describe, it } from "@effect/vitest"
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { afterAll, beforeAll } from "vitest"
import { fixturesDir, makeTempDir, removeDir, runscBin, until } from "./helpers.js"

/** Why containerd cannot be used here, or undefined when it can. */
const unusable = (): string | undefined => {
  for (const tool of ["containerd", "ctr", "containerd-shim-runc-v2"]) {
    const found = spawnSync("sh", ["-c", `command -v ${tool}`], { encoding: "utf8" })
    if (found.status !== 0) return `${tool} is not installed (apt-get install containerd; .ci/run installs it)`
  }
  if (process.getuid?.() !== 0) return "not root (containerd mounts each container's snapshot)"
  return undefined
}
const skipReason = unusable()
if (skipReason !== undefined) console.warn(`containerd.test.ts: skipped: ${skipReason}`)

const NAMESPACE = `runsc-e2e-${process.pid}`
const IMAGE = "docker.io/runsc-e2e/fixtures:1"
let dir = ""
let daemon: ChildProcess | undefined

/** ctr on this test's containerd and namespace; bounded, so that a hung engine fails the test instead of CI. */
const ctr = (args: ReadonlyArray<string>) => {
  const r = spawnSync("ctr", ["--address", Path.join(dir, "containerd.sock"), "--namespace", NAMESPACE, ...args], {
    encoding: "utf8",
    input: "",
    timeout: 60_000,
    killSignal: "SIGKILL"
  })
  return { code: r.status, stdout: r.stdout ?? "", stderr: r.stderr ?? "", describe: () => `ctr ${args.join(" ")}: status ${r.status}${r.error ? ` (${r.error.message})` : ""}\n${r.stderr}` }
}

const ok = (args: ReadonlyArray<string>) => {
  const r = ctr(args)
  assert.strictEqual(r.code, 0, r.describe())
  return r.stdout
}

/** `ctr run` with runsc as the runc shim's binary. */
const run = (args: ReadonlyArray<string>) => ctr(["run", "--runtime", "io.containerd.runc.v2", "--runc-binary", runscBin, ...args])

/** Each task's pid and status, as `ctr task ls` shows them. */
const taskTable = (): Record<string, { readonly pid: string; readonly status: string }> =>
  Object.fromEntries(ok(["task", "ls"]).split("\n").slice(1).filter((l) => l.trim() !== "").map((l) => {
    const [id, pid, status] = l.trim().split(/\s+/)
    return [id!, { pid: pid!, status: status! }]
  }))

/** Each task's status. */
const tasks = (): Record<string, string> => Object.fromEntries(Object.entries(taskTable()).map(([id, task]) => [id, task.status]))

/** Kills task `id` (SIGTERM), waits until it has stopped, and removes it (its exit status 143) and its container. */
const killAndRemove = async (id: string) => {
  ok(["task", "kill", id])
  await until(`task ${id} stops`, () => tasks()[id] === "STOPPED", 20_000)
  const removed = ctr(["task", "rm", id])
  assert.strictEqual(removed.code, 0, removed.describe())
  assert.match(removed.stderr, /exit code 143/)
  ok(["container", "rm", id])
}

/** Its host processes that are runsc's (by command line), as `pid command`. */
const runscProcesses = (): ReadonlyArray<string> =>
  Fs.readdirSync("/proc").filter((p) => /^\d+$/.test(p)).flatMap((pid) => {
    try {
      const cmdline = Fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ")
      return cmdline.includes(`/runc/${NAMESPACE}`) ? [`${pid} ${cmdline}`] : []
    } catch {
      return []
    }
  })

const mountsUnder = (path: string): ReadonlyArray<string> =>
  Fs.readFileSync("/proc/self/mounts", "utf8").split("\n").map((l) => l.split(" ")[1] ?? "").filter((m) => m.startsWith(path))

/**
 * An OCI image layout, as a tar `ctr image import` takes: one layer holding `programs` in /bin
 * (from the C fixtures), for linux/amd64, named IMAGE.
 */
const buildImage = (tarPath: string, programs: ReadonlyArray<string>) => {
  const work = Fs.mkdtempSync(Path.join(dir, "image-"))
  const rootfs = Path.join(work, "rootfs")
  Fs.mkdirSync(Path.join(rootfs, "bin"), { recursive: true })
  for (const p of programs) {
    Fs.copyFileSync(Path.join(fixturesDir, "c", `${p}.wasm`), Path.join(rootfs, "bin", p))
    Fs.chmodSync(Path.join(rootfs, "bin", p), 0o755)
  }
  const layout = Path.join(work, "layout")
  Fs.mkdirSync(Path.join(layout, "blobs", "sha256"), { recursive: true })
  const blob = (bytes: Buffer) => {
    const hex = Crypto.createHash("sha256").update(bytes).digest("hex")
    Fs.writeFileSync(Path.join(layout, "blobs", "sha256", hex), bytes)
    return { digest: `sha256:${hex}`, size: bytes.length }
  }
  const json = (value: unknown) => Buffer.from(JSON.stringify(value))
  const layer = blob(spawnSync("tar", ["-C", rootfs, "--owner=0", "--group=0", "--numeric-owner", "-cf", "-", "."], { maxBuffer: 1 << 28 }).stdout)
  const config = blob(json({
    architecture: "amd64",
    os: "linux",
    config: { Cmd: ["/bin/echo_args"], Env: ["PATH=/bin"] },
    rootfs: { type: "layers", diff_ids: [layer.digest] }
  }))
  const manifestType = "application/vnd.oci.image.manifest.v1+json"
  const manifest = blob(json({
    schemaVersion: 2,
    mediaType: manifestType,
    config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
    layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar", ...layer }]
  }))
  Fs.writeFileSync(Path.join(layout, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }))
  Fs.writeFileSync(
    Path.join(layout, "index.json"),
    JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: manifestType, ...manifest, platform: { architecture: "amd64", os: "linux" } }] })
  )
  const tar = spawnSync("tar", ["-C", layout, "-cf", tarPath, "."], { encoding: "utf8" })
  assert.strictEqual(tar.status, 0, tar.stderr)
}

beforeAll(async () => {
  if (skipReason !== undefined) return
  dir = await makeTempDir("runsc-e2e-containerd-")
  const config = Path.join(dir, "config.toml")
  Fs.writeFileSync(config, [
    "version = 2",
    `root = "${Path.join(dir, "root")}"`,
    `state = "${Path.join(dir, "state")}"`,
    `disabled_plugins = ["io.containerd.grpc.v1.cri"]`,
    "[grpc]",
    `  address = "${Path.join(dir, "containerd.sock")}"`,
    "[ttrpc]",
    `  address = "${Path.join(dir, "containerd.sock.ttrpc")}"`,
    ""
  ].join("\n"))
  const log = Fs.openSync(Path.join(dir, "containerd.log"), "w")
  daemon = spawn("containerd", ["--config", config], { stdio: ["ignore", log, log] })
  Fs.closeSync(log)
  await until("containerd serves", () => ctr(["version"]).code === 0, 30_000)
  const tar = Path.join(dir, "image.tar")
  buildImage(tar, ["cat", "exit", "sleep", "echo_args"])
  ok(["image", "import", "--index-name", IMAGE, tar])
}, 120_000)

afterAll(async () => {
  if (skipReason !== undefined) return
  for (const id of Object.keys(tasks())) ctr(["task", "kill", "-s", "KILL", id])
  for (const id of Object.keys(tasks())) ctr(["task", "rm", "-f", id])
  for (const id of ok(["container", "ls", "-q"]).split("\n").filter((l) => l !== "")) ctr(["container", "rm", id])
  daemon?.kill("SIGTERM")
  await new Promise((resolve) => (daemon?.exitCode !== null ? resolve(undefined) : daemon.once("exit", resolve)))
  for (const mount of mountsUnder(dir).toReversed()) spawnSync("umount", ["-l", mount])
  await removeDir(dir)
  await removeDir(`/run/containerd/runc/${NAMESPACE}`)
}, 120_000)

describe.skipIf(skipReason !== undefined)("containerd's runc shim with runsc as its runc", () => {
  it("run --rm: the guest's output and its exit code come back through the shim", () => {
    const echo = run(["--rm", IMAGE, "echo", "/bin/echo_args", "a", "b c"])
    assert.strictEqual(echo.code, 0, echo.describe())
    assert.strictEqual(echo.stdout, "argv[0]=/bin/echo_args\nargv[1]=a\nargv[2]=b c\n")
    const exit = run(["--rm", IMAGE, "exit", "/bin/exit", "7"])
    assert.strictEqual(exit.code, 7, exit.describe())
  }, 120_000)

  it("detached: exec (output, exit code), pause/resume, metrics from the container's cgroup, kill (143), delete", async () => {
    const started = run(["-d", IMAGE, "sleeper", "/bin/sleep", "600"])
    assert.strictEqual(started.code, 0, started.describe())
    assert.strictEqual(tasks()["sleeper"], "RUNNING")
    assert.strictEqual(ok(["task", "exec", "--exec-id", "e1", "sleeper", "/bin/echo_args", "x"]), "argv[0]=/bin/echo_args\nargv[1]=x\n")
    assert.strictEqual(ctr(["task", "exec", "--exec-id", "e2", "sleeper", "/bin/exit", "5"]).code, 5)
    ok(["task", "pause", "sleeper"])
    assert.strictEqual(tasks()["sleeper"], "PAUSED")
    ok(["task", "resume", "sleeper"])
    assert.strictEqual(tasks()["sleeper"], "RUNNING")
    // The sandbox runs in the cgroup containerd named: what it reads there is the sandbox's.
    const usage = /memory\.usage_in_bytes\s+(\d+)|memory\.usage\s+(\d+)/.exec(ok(["task", "metrics", "sleeper"]))
    assert.isNotNull(usage)
    assert.isAbove(Number(usage![1] ?? usage![2]), 10_000_000)
    await killAndRemove("sleeper")
    assert.deepStrictEqual(runscProcesses(), [])
  }, 120_000)

  it("a pod as the CRI makes one: the container joins the sandbox with no grant, is exec'd into, stops (143) and is removed while the sandbox runs; nothing is left", async () => {
    const sandbox = run(["-d", "--annotation", "io.kubernetes.cri.container-type=sandbox", IMAGE, "pod", "/bin/sleep", "600"])
    assert.strictEqual(sandbox.code, 0, sandbox.describe())
    const app = run([
      "-d",
      "--annotation",
      "io.kubernetes.cri.container-type=container",
      "--annotation",
      "io.kubernetes.cri.sandbox-id=pod",
      IMAGE,
      "app",
      "/bin/sleep",
      "600"
    ])
    assert.strictEqual(app.code, 0, app.describe())
    assert.deepStrictEqual(tasks(), { pod: "RUNNING", app: "RUNNING" })
    // One sandbox for the pod; the container's pid (its --pid-file) is its holder, not the sandbox.
    const table = taskTable()
    assert.notStrictEqual(table["app"]!.pid, table["pod"]!.pid)
    const sandboxes = runscProcesses().filter((p) => / boot /.test(p))
    assert.strictEqual(sandboxes.length, 1, sandboxes.join("\n"))
    assert.strictEqual(ok(["task", "exec", "--exec-id", "e1", "app", "/bin/echo_args", "in", "app"]), "argv[0]=/bin/echo_args\nargv[1]=in\nargv[2]=app\n")
    await killAndRemove("app")
    assert.deepStrictEqual(tasks(), { pod: "RUNNING" }, "the sandbox goes on")
    await killAndRemove("pod")
    assert.deepStrictEqual(mountsUnder(dir), [], "no container's snapshot is left mounted")
    assert.deepStrictEqual(runscProcesses(), [])
  }, 120_000)
})
