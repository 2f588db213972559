/**
 * What one sandbox may take of the host, through the CLI: its memory ceiling (guest memory of
 * all its processes, their worker threads, a fork bomb), the compiled-module cache, and SIGKILL
 * of a guest growing its memory page by page. Sizes are read from the sandbox process itself
 * (/proc/<pid>/status), as an operator would.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { afterAll, beforeAll } from "vitest"
import {
  assembleWat,
  createContainer,
  describeResult,
  installFixtures,
  lines,
  makeBundle,
  killSandboxesUnder,
  makeTempDir,
  putExecutable,
  removeDir,
  runsc,
  startRunsc,
  uniqueId,
  until
} from "./helpers.js"

/** How long these tests wait for a guest to reach a state (it allocates under load). */
const SETTLE_MS = 30_000

const MiB = 1024 * 1024

let work = ""
const bundles: Array<string> = []

beforeAll(async () => {
  work = await makeTempDir("runsc-e2e-resources-")
})

afterAll(async () => {
  // A test that failed half-way may have left a sandbox behind: none may outlive the suite.
  killSandboxesUnder(work)
  await removeDir(work)
  for (const dir of bundles) await removeDir(dir)
})

/** A bundle running `args` with the C fixtures, and the root container's memory limit when given. */
const bundleOf = async (args: ReadonlyArray<string>, fixtures: ReadonlyArray<string>, memoryLimit?: number) => {
  const bundle = await makeBundle(args, fixtures)
  bundles.push(bundle.dir)
  if (memoryLimit !== undefined) {
    const path = Path.join(bundle.dir, "config.json")
    const spec = JSON.parse(Fs.readFileSync(path, "utf8"))
    spec.linux = { resources: { memory: { limit: memoryLimit } } }
    Fs.writeFileSync(path, JSON.stringify(spec, null, 2))
  }
  return bundle
}

/** Creates and starts a container in a fresh --root; its output, pid and a way to kill it. */
const started = async (bundle: string) => {
  const root = await Fs.promises.mkdtemp(Path.join(work, "root-"))
  const flags = ["--root", root]
  const id = uniqueId("res")
  const created = await createContainer(flags, bundle, id, work)
  assert.strictEqual(created.code, 0, created.output())
  const state = await runsc([...flags, "state", id])
  const pid = (JSON.parse(state.stdout) as { pid: number }).pid
  assert.strictEqual((await runsc([...flags, "start", id])).code, 0)
  return { flags, id, pid, output: created.output }
}

/** The resident memory of a host process, in bytes. */
const rssOf = (pid: number) => Number(/VmRSS:\s+(\d+) kB/.exec(Fs.readFileSync(`/proc/${pid}/status`, "utf8"))![1]) * 1024

describe("the sandbox's memory ceiling", () => {
  it("four processes asking 256 MiB each of a 256 MiB sandbox get what fits together (malloc returns NULL past it), and the sandbox process holds no more", async () => {
    const bundle = await bundleOf(["/bin/memhog", "256", "4"], ["memhog"], 256 * MiB)
    const { flags, id, output, pid } = await started(bundle.dir)
    const gots = () => lines(output()).filter((l) => l.startsWith("got "))
    await until("every child has allocated", () => lines(output()).some((l) => l.startsWith("spawned ")) && gots().length === Number(/spawned (\d+)/.exec(output())![1]), SETTLE_MS)
    const got = gots().map((l) => Number(/^got (\d+) MiB/.exec(l)![1]))
    const total = got.reduce((a, b) => a + b, 0)
    // Five processes' shares (8 MiB each) come first; the rest is the children's, at 1 MiB a
    // malloc (a little more of their memory: malloc's own headers and rounding).
    assert.isAtMost(total, 256 - 5 * 8, output())
    assert.isAtLeast(total, 0.85 * (256 - 5 * 8), output())
    assert.isAtLeast(got.length, 3, output())
    // The host's view: what the guests hold is within the ceiling, beside the sandbox's own ~100-250 MiB.
    const rss = rssOf(pid)
    assert.isBelow(rss, 256 * MiB + 350 * MiB, `sandbox RSS ${rss / MiB} MiB`)
    assert.strictEqual((await runsc([...flags, "kill", id, "KILL"])).code, 0)
    assert.strictEqual((await runsc([...flags, "delete", "--force", id])).code, 0)
  }, 60_000)

  it("a fork bomb in a 256 MiB sandbox stops at the process limit its memory sets (EAGAIN, never ENOMEM), and the sandbox holds no more", async () => {
    const bundle = await bundleOf(["/bin/fork_bomb"], ["fork_bomb"], 256 * MiB)
    const { flags, id, output, pid } = await started(bundle.dir)
    // 256 MiB / (8 MiB share + 1 MiB) = 28 processes.
    const bombs = () => lines(output()).filter((l) => l.startsWith("bomb ")).length
    await until("the bombs fill the sandbox", () => bombs() >= 28, SETTLE_MS)
    await new Promise((r) => setTimeout(r, 1500))
    assert.strictEqual(bombs(), 28, output())
    assert.notMatch(output(), /fork_bomb: spawn:/, "every failed spawn is EAGAIN")
    const rss = rssOf(pid)
    assert.isBelow(rss, 256 * MiB + 350 * MiB, `sandbox RSS ${rss / MiB} MiB`)
    assert.strictEqual((await runsc([...flags, "kill", "--all", id, "KILL"])).code, 0)
    assert.strictEqual((await runsc([...flags, "delete", "--force", id])).code, 0)
  }, 90_000)

  it("without a memory limit the sandbox has half the host's memory (/proc/meminfo), not all of it", async () => {
    const rootfs = await makeTempDir("runsc-e2e-meminfo-")
    bundles.push(rootfs)
    await installFixtures(rootfs, ["cat"])
    const r = await runsc(["do", "--root-dir", rootfs, "cat", "/proc/meminfo"])
    assert.strictEqual(r.code, 0, describeResult(r))
    const total = Number(/^MemTotal: +(\d+) kB$/m.exec(r.stdout)![1])
    assert.strictEqual(total, Math.floor(Math.floor(Os.totalmem() / 2) / 1024))
  })
})

describe("SIGKILL", () => {
  it("ends a guest growing its memory page by page within seconds: kill KILL, then wait returns 137", async () => {
    const bundle = await bundleOf(["/bin/grow"], [])
    await putExecutable(
      bundle.rootfs,
      "bin/grow",
      await assembleWat(`
        (module
          (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 16) "growing\\n")
          (data (i32.const 32) "256 MiB\\n")
          (func (export "_start")
            (i32.store (i32.const 0) (i32.const 16))
            (i32.store (i32.const 4) (i32.const 8))
            (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
            (loop $forever
              ;; Says so once it has 256 MiB (4096 pages).
              (if (i32.eq (memory.grow (i32.const 1)) (i32.const 4095))
                (then
                  (i32.store (i32.const 0) (i32.const 32))
                  (i32.store (i32.const 4) (i32.const 8))
                  (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
              (br $forever))))`)
    )
    const { flags, id, output } = await started(bundle.dir)
    // Well into its growth (each grow slows as the memory gets larger), where a kill used to wait
    // until the guest had grown to 4 GiB.
    await until("the guest has grown to 256 MiB", () => output() === "growing\n256 MiB\n", 40_000)
    const waiting = startRunsc([...flags, "wait", id], { timeoutMs: 20_000 })
    assert.strictEqual((await runsc([...flags, "kill", id, "KILL"])).code, 0)
    const waited = await (await waiting).result
    assert.isFalse(waited.timedOut, "wait returned within 20 s of the kill")
    assert.deepStrictEqual(JSON.parse(waited.stdout), { id, exitStatus: 137 }, describeResult(waited))
    assert.strictEqual((await runsc([...flags, "delete", "--force", id])).code, 0)
  }, 60_000)
})

describe("the compiled-module cache", () => {
  it("150 distinct 4 MiB programs run one after another leave the sandbox at a bounded size, not one that grows with each", async () => {
    const rootfs = await makeTempDir("runsc-e2e-modules-")
    bundles.push(rootfs)
    await installFixtures(rootfs, ["tsh", "sleep"])
    // One 4 MiB module (a data segment), copied with a distinct id in its data: 150 programs.
    const template = await assembleWat(`
      (module
        (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
        (memory (export "memory") 65)
        (data (i32.const 0) "id:00000")
        (data (i32.const 1024) "${"m".repeat(4 * MiB)}")
        (func (export "_start") (call $exit (i32.const 0))))`)
    const at = Buffer.from(template).indexOf("id:00000") + 3
    const script: Array<string> = []
    for (let i = 0; i < 150; i++) {
      const bytes = Buffer.from(template)
      bytes.write(String(i).padStart(5, "0"), at)
      await putExecutable(rootfs, `bin/m${i}`, bytes)
      script.push(`/bin/m${i}`)
    }
    script.push("/bin/sleep 600")
    const shell = await startRunsc(["do", "--root-dir", rootfs, "/bin/tsh"], { input: `${script.join("\n")}\n`, timeoutMs: 240_000 })
    await shell.waitForStdout("sleeping", 200_000)
    const rss = rssOf(shell.child.pid!)
    shell.child.kill("SIGKILL")
    // 150 × 4 MiB = 600 MiB of programs ran; the cache keeps 128 MiB of them (V8 holds each
    // module's bytes and code, about twice its size), beside the sandbox's own ~100-250 MiB.
    assert.isBelow(rss, 650 * MiB, `sandbox RSS ${Math.round(rss / MiB)} MiB`)
  }, 300_000)
})
