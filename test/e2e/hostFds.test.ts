/**
 * Host descriptors under attack: a guest that opens files until it cannot takes at most the
 * sandbox's budget of host descriptors (half of the sandbox process's RLIMIT_NOFILE), and the
 * control plane keeps the rest: state, exec, ps, kill, wait and delete all still work.
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
})
