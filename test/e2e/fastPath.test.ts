/**
 * The fast path of state, kill, start and delete (apps/runsc/src/fastPath.ts) against the full
 * CLI: at every step of a container's life each command line gives the same stdout, stderr and
 * status both ways (RUNSC_NO_FAST_PATH=1 forces the full CLI), the fast path is really taken
 * where it should be, and a failure the sandbox answers is described as the CLI describes it.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { afterAll, beforeAll } from "vitest"
import { fastPath } from "../../apps/runsc/src/fastPath.js"
import { createContainer, describeResult, killSandboxesUnder, makeBundle, makeTempDir, removeDir, runsc, startRunsc, uniqueId, until } from "./helpers.js"

let work = ""
let sleeper: { readonly dir: string } | undefined
let missing: { readonly dir: string } | undefined
beforeAll(async () => {
  work = await makeTempDir("runsc-e2e-fast-")
  sleeper = await makeBundle(["/bin/sleep", "600"], ["sleep"])
  // Its program is not in its root: the start fails in the sandbox, with ExecNotFound.
  missing = await makeBundle(["/bin/nowhere"], [])
})
afterAll(async () => {
  killSandboxesUnder(work)
  await removeDir(work)
  if (sleeper) await removeDir(sleeper.dir)
  if (missing) await removeDir(missing.dir)
})

const full = { env: { RUNSC_NO_FAST_PATH: "1" } }

/** Runs `args` through the full CLI, then as it comes (the fast path where it applies): the same answer both ways. */
const same = async (args: ReadonlyArray<string>) => {
  const slow = await runsc(args, full)
  const fast = await runsc(args)
  assert.deepStrictEqual(
    { code: fast.code, stdout: fast.stdout, stderr: fast.stderr },
    { code: slow.code, stdout: slow.stdout, stderr: slow.stderr },
    args.join(" ")
  )
  return fast
}

/** Whether the fast path takes the command line itself (what it prints goes to /dev/null). */
const takes = async (args: ReadonlyArray<string>) => {
  const devNull = Fs.openSync("/dev/null", "w")
  try {
    return (await fastPath(["node", "runsc", ...args], devNull))._tag
  } finally {
    Fs.closeSync(devNull)
  }
}

describe("the fast path of state, kill, start and delete", () => {
  it("answers as the full CLI does at every step of a container's life, and is taken in the common case", async () => {
    const flags = ["--root", await Fs.promises.mkdtemp(Path.join(work, "root-"))]
    const id = uniqueId("fp")
    assert.strictEqual((await createContainer(flags, sleeper!.dir, id, work)).code, 0)
    assert.strictEqual(JSON.parse((await same([...flags, "state", id])).stdout).status, "created")
    assert.strictEqual(await takes([...flags, "state", id]), "Done")
    await same([...flags, "kill", id, "0"])
    assert.strictEqual(await takes([...flags, "kill", id, "0"]), "Done")
    // Errors are the full CLI's: the fast path declines them.
    await same([...flags, "kill", id, "NOSUCHSIGNAL"])
    await same([...flags, "state", "no-such-container"])
    assert.strictEqual(await takes([...flags, "start", id]), "Done")
    assert.strictEqual(JSON.parse((await same([...flags, "state", id])).stdout).status, "running")
    await same([...flags, "start", id])
    assert.strictEqual((await runsc([...flags, "pause", id])).code, 0)
    assert.strictEqual(JSON.parse((await same([...flags, "state", id])).stdout).status, "paused")
    await same([...flags, "delete", id])
    assert.strictEqual((await runsc([...flags, "resume", id])).code, 0)
    const killed = await runsc([...flags, "kill", id, "KILL"])
    assert.strictEqual(killed.code, 0, describeResult(killed))
    for (let i = 0; i < 100 && JSON.parse((await runsc([...flags, "state", id])).stdout).status !== "stopped"; i++) {
      await new Promise((r) => setTimeout(r, 50))
    }
    assert.deepInclude(JSON.parse((await same([...flags, "state", id])).stdout), { status: "stopped", pid: 0 })
    await same([...flags, "kill", id])
    assert.strictEqual(await takes([...flags, "delete", id]), "Done")
    assert.deepStrictEqual((await runsc([...flags, "list", "-q"])).stdout, "")
    await same([...flags, "delete", id])
    await same([...flags, "delete", "--force", id])
    assert.strictEqual(await takes([...flags, "delete", "--force", id]), "Done")
    // An id that is not one is the full CLI's to refuse.
    assert.strictEqual(await takes([...flags, "delete", "--force", "../etc"]), "Declined")
    await same([...flags, "delete", "--force", "../etc"])
  })

  it("a detached exec's waiter, either way: it is what --pid-file names, passes a signal on (its process ends, then it), and killed, kills its process", async () => {
    const flags = ["--root", await Fs.promises.mkdtemp(Path.join(work, "root-"))]
    const id = uniqueId("fw")
    assert.strictEqual((await createContainer(flags, sleeper!.dir, id, work)).code, 0)
    assert.strictEqual((await runsc([...flags, "start", id])).code, 0)
    const gone = (pid: number) => !Fs.existsSync(`/proc/${pid}`) || Fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.startsWith("Z")
    const processes = async () => JSON.parse((await runsc([...flags, "ps", "--format", "json", id])).stdout) as Array<number>
    for (const options of [full, {}]) {
      for (const signal of ["SIGTERM", "SIGKILL"] as const) {
        const holder = Path.join(work, `${uniqueId("holder")}.pid`)
        // Not awaited: its stdio, lent to the process, stays open as long as the process runs.
        const exec = await startRunsc([...flags, "exec", "--detach", "--pid-file", holder, id, "/bin/sleep", "600"], options)
        await until("the exec wrote its pid file", () => Fs.existsSync(holder) && Fs.readFileSync(holder, "utf8") !== "")
        const waiter = Number(Fs.readFileSync(holder, "utf8"))
        assert.match(Fs.readFileSync(`/proc/${waiter}/cmdline`, "utf8"), /exec-waiter/)
        assert.strictEqual((await processes()).length, 2)
        process.kill(waiter, signal)
        await until(`${JSON.stringify(options)} ${signal}: the waiter and its process end`, async () => gone(waiter) && (await processes()).length === 1)
        assert.strictEqual((await exec.result).code, 0)
      }
    }
    assert.strictEqual((await runsc([...flags, "delete", "--force", id])).code, 0)
  })

  it("delete --force of a running container kills its sandbox and removes every trace", async () => {
    const flags = ["--root", await Fs.promises.mkdtemp(Path.join(work, "root-"))]
    const id = uniqueId("fd")
    assert.strictEqual((await createContainer(flags, sleeper!.dir, id, work)).code, 0)
    const pid = JSON.parse((await runsc([...flags, "state", id])).stdout).pid as number
    assert.strictEqual((await runsc([...flags, "start", id])).code, 0)
    await same([...flags, "delete", id])
    assert.strictEqual(await takes([...flags, "delete", "--force", id]), "Done")
    assert.isFalse(Fs.existsSync(`/proc/${pid}/stat`) && !Fs.readFileSync(`/proc/${pid}/stat`, "utf8").includes(") Z "), "the sandbox is gone")
    assert.deepStrictEqual(Fs.readdirSync(flags[1]!), [], "no state, socket, exit record or lock is left")
  })

  it("a start the sandbox refuses is described as the full CLI describes it", async () => {
    const flags = ["--root", await Fs.promises.mkdtemp(Path.join(work, "root-"))]
    // A root container's program is found at create; a pod's sub-container's at its start.
    const pod = uniqueId("fp")
    assert.strictEqual((await createContainer([...flags, "--allow-read", missing!.dir], sleeper!.dir, pod, work)).code, 0)
    assert.strictEqual((await runsc([...flags, "start", pod])).code, 0)
    const configPath = Path.join(missing!.dir, "config.json")
    const config = JSON.parse(Fs.readFileSync(configPath, "utf8"))
    config.annotations = { "io.kubernetes.cri.container-type": "container", "io.kubernetes.cri.sandbox-id": pod }
    Fs.writeFileSync(configPath, JSON.stringify(config))
    const [a, b] = [uniqueId("fr"), uniqueId("fr")]
    for (const id of [a, b]) assert.strictEqual((await createContainer(flags, missing!.dir, id, work)).code, 0)
    const slow = await runsc([...flags, "start", a], full)
    const fast = await runsc([...flags, "start", b])
    assert.strictEqual(fast.code, 128)
    assert.strictEqual(fast.code, slow.code)
    assert.match(fast.stderr, /nowhere/)
    assert.strictEqual(fast.stderr, slow.stderr)
  })
})
