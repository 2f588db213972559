/**
 * Host descriptors under attack: a guest that opens files until it cannot takes at most the
 * sandbox's budget of host descriptors (half of the sandbox process's RLIMIT_NOFILE), a fork
 * bomb at most the worker threads the rest holds beside the control plane's reserve, and the
 * control plane keeps working: state, exec, ps, kill, wait and delete.
 */
import { assert, describe, it } from "@effect/vitest"
import { spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { afterAll } from "vitest"
import { DEFAULT_GUEST_PATH, describeResult, installFixtures, lines, makeTempDir, removeDir, runsc, runscBin, uniqueId } from "./helpers.js"

const cleanup: Array<string> = []
afterAll(async () => {
  for (const dir of cleanup) await removeDir(dir)
})

/**
 * `runsc ARGS` with its stdio (and so its container's, or a detached exec's) appended to `out`,
 * under a hard and soft RLIMIT_NOFILE of `limit` when given; its exit code.
 */
const runscTo = (out: string, args: ReadonlyArray<string>, limit?: number) =>
  new Promise<number | null>((resolve) => {
    const fd = Fs.openSync(out, "a")
    const child = spawn("sh", ["-c", `${limit === undefined ? "" : `ulimit -n ${limit} && `}exec "$0" "$@"`, runscBin, ...args], { stdio: ["ignore", fd, fd] })
    Fs.closeSync(fd)
    child.once("exit", (code) => resolve(code))
  })

const poll = async (check: () => boolean, what: string, timeoutMs = 20_000) => {
  for (const start = Date.now(); !check(); await new Promise((r) => setTimeout(r, 50))) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`)
  }
}

describe("host descriptors", () => {
  it("a guest opening files until it cannot gets ENFILE at the sandbox's budget, and the control plane keeps working", async () => {
    const dir = await makeTempDir("runsc-e2e-hostfds-")
    cleanup.push(dir)
    const root = Path.join(dir, "state")
    const bundle = Path.join(dir, "bundle")
    const rootfs = Path.join(bundle, "rootfs")
    await installFixtures(rootfs, ["hold_files", "exit"])
    Fs.writeFileSync(Path.join(rootfs, "data.txt"), "data\n")
    Fs.writeFileSync(Path.join(bundle, "config.json"), JSON.stringify({
      ociVersion: "1.0.2",
      process: {
        user: { uid: 0, gid: 0 },
        args: ["hold_files", "/data.txt"],
        env: [`PATH=${DEFAULT_GUEST_PATH}`],
        cwd: "/",
        // More than the whole sandbox may hold: the budget, not this, stops the guest.
        rlimits: [{ type: "RLIMIT_NOFILE", hard: 4096, soft: 4096 }]
      },
      root: { path: "rootfs", readonly: true }
    }))
    const id = uniqueId("hostfds")
    const out = Path.join(dir, "out")
    assert.strictEqual(await runscTo(out, ["--root", root, "create", "--bundle", bundle, id], 400), 0, Fs.readFileSync(out, "utf8"))
    try {
      const started = await runsc(["--root", root, "start", id])
      assert.strictEqual(started.code, 0, describeResult(started))
      await poll(() => Fs.readFileSync(out, "utf8").includes("held"), "the guest to hold its files")
      const held = /held (\d+) (\w+)/.exec(Fs.readFileSync(out, "utf8"))!
      // Half of 400 is the budget; the root tree holds one of it.
      assert.strictEqual(held[2], "ENFILE")
      assert.isAtMost(Number(held[1]), 200)
      assert.isAtLeast(Number(held[1]), 150)

      const state = await runsc(["--root", root, "state", id])
      assert.strictEqual(state.code, 0, describeResult(state))
      assert.strictEqual(JSON.parse(state.stdout).status, "running")
      const exec = await runsc(["--root", root, "exec", id, "exit", "7"])
      assert.strictEqual(exec.code, 7, describeResult(exec))
      // A second guest gets ENFILE at once: the budget is the sandbox's, not each process's.
      const secondOut = Path.join(dir, "second")
      assert.strictEqual(await runscTo(secondOut, ["--root", root, "exec", "--detach", id, "hold_files", "/data.txt"]), 0)
      await poll(() => Fs.readFileSync(secondOut, "utf8").includes("held"), "the second guest to hold its files")
      assert.match(Fs.readFileSync(secondOut, "utf8"), /held 0 ENFILE/)
      const ps = await runsc(["--root", root, "ps", "--format", "json", id])
      assert.strictEqual(ps.code, 0, describeResult(ps))
      assert.lengthOf(JSON.parse(ps.stdout), 2)
      const kill = await runsc(["--root", root, "kill", id, "KILL"])
      assert.strictEqual(kill.code, 0, describeResult(kill))
      const wait = await runsc(["--root", root, "wait", id])
      assert.strictEqual(JSON.parse(lines(wait.stdout)[0]!).exitStatus, 137, describeResult(wait))
    } finally {
      const deleted = await runsc(["--root", root, "delete", "--force", id])
      assert.strictEqual(deleted.code, 0, describeResult(deleted))
    }
  }, 120_000)

  it("a fork bomb stops where the sandbox's descriptors still hold its workers and its control plane (EAGAIN), and state, exec and ps keep working", async () => {
    const dir = await makeTempDir("runsc-e2e-hostfds-bomb-")
    cleanup.push(dir)
    const root = Path.join(dir, "state")
    const bundle = Path.join(dir, "bundle")
    await installFixtures(Path.join(bundle, "rootfs"), ["fork_bomb", "exit"])
    Fs.writeFileSync(Path.join(bundle, "config.json"), JSON.stringify({
      ociVersion: "1.0.2",
      process: { user: { uid: 0, gid: 0 }, args: ["fork_bomb"], env: [`PATH=${DEFAULT_GUEST_PATH}`], cwd: "/" },
      root: { path: "rootfs", readonly: true }
    }))
    const id = uniqueId("bomb")
    const out = Path.join(dir, "out")
    // 512 descriptors: 256 for guests' files, 128 for the control plane, the rest (128) holds 16 workers of 8.
    assert.strictEqual(await runscTo(out, ["--root", root, "create", "--bundle", bundle, id], 512), 0, Fs.readFileSync(out, "utf8"))
    try {
      assert.strictEqual((await runsc(["--root", root, "start", id])).code, 0)
      const bombs = () => lines(Fs.readFileSync(out, "utf8")).filter((l) => l.startsWith("bomb ")).length
      await poll(() => bombs() >= 16, "the bombs to fill the sandbox", 60_000)
      await new Promise((r) => setTimeout(r, 1500))
      assert.strictEqual(bombs(), 16, Fs.readFileSync(out, "utf8"))
      assert.notMatch(Fs.readFileSync(out, "utf8"), /fork_bomb: spawn:/, "every failed spawn is EAGAIN")
      const state = await runsc(["--root", root, "state", id])
      assert.strictEqual(JSON.parse(state.stdout).status, "running", describeResult(state))
      const exec = await runsc(["--root", root, "exec", id, "exit", "7"])
      assert.strictEqual(exec.code, 7, describeResult(exec))
      const ps = await runsc(["--root", root, "ps", "--format", "json", id])
      assert.lengthOf(JSON.parse(ps.stdout), 16, describeResult(ps))
    } finally {
      const deleted = await runsc(["--root", root, "delete", "--force", id])
      assert.strictEqual(deleted.code, 0, describeResult(deleted))
    }
  }, 120_000)
})
