/**
 * Stdio that is a FIFO with nobody at its other end, through the real binary: an unconfined
 * sandbox reopens a CLI's stdio by path (/proc/<cli>/fd/<n>), and opening a FIFO waits for its
 * peer. The sandbox never waits in such an open: while a create or exec waits for a FIFO's
 * reader, the sandbox goes on answering for its other containers; a FIFO nobody reads fails the
 * call with one line saying so once a reader has had its chance; stdin from a FIFO nobody writes
 * is read as end of file, as a read of it says on Linux.
 */
import { assert, describe, it } from "@effect/vitest"
import { execFileSync, spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { afterAll, beforeAll } from "vitest"
import {
  cliFailureLine,
  createContainer,
  describeResult,
  killSandboxesUnder,
  makeBundle,
  makeTempDir,
  removeDir,
  type RunResult,
  runsc,
  runscBin,
  uniqueId
} from "./helpers.js"

const { O_NONBLOCK, O_RDONLY, O_WRONLY } = Fs.constants

let work = ""
let bundle: { readonly dir: string } | undefined

beforeAll(async () => {
  work = await makeTempDir("runsc-e2e-fifo-")
  bundle = await makeBundle(["/bin/sleep", "600"], ["sleep", "cat", "echo_args"])
})

afterAll(async () => {
  killSandboxesUnder(work)
  await removeDir(work)
  if (bundle) await removeDir(bundle.dir)
})

/** A pod's sandbox, unconfined (so it reopens a CLI's stdio by path), running. */
const startPod = async () => {
  const root = await Fs.promises.mkdtemp(Path.join(work, "root-"))
  const flags = ["--root", root, "--unconfined"]
  const pod = uniqueId("pod")
  const created = await createContainer(flags, bundle!.dir, pod, work)
  assert.strictEqual(created.code, 0, created.output())
  const started = await runsc([...flags, "start", pod])
  assert.strictEqual(started.code, 0, describeResult(started))
  return { flags, pod }
}

let fifos = 0
const makeFifo = () => {
  const path = Path.join(work, `fifo-${fifos++}`)
  execFileSync("mkfifo", [path])
  return path
}

/** A write end of a new FIFO whose one reader has gone: an open for writing finds no reader. */
const fifoWithoutReader = () => {
  const path = makeFifo()
  const reader = Fs.openSync(path, O_RDONLY | O_NONBLOCK)
  const writer = Fs.openSync(path, O_WRONLY | O_NONBLOCK)
  Fs.closeSync(reader)
  return { path, writer }
}

/** A read end of a new FIFO that no writer has ever opened. */
const fifoWithoutWriter = () => {
  const path = makeFifo()
  return { path, reader: Fs.openSync(path, O_RDONLY | O_NONBLOCK) }
}

/**
 * Runs `runsc ARGS` with `fds` as its stdin and stdout (ours is closed once it has its own copy),
 * its stderr collected; SIGKILLed after `timeoutMs`.
 */
const runscWith = (args: ReadonlyArray<string>, fds: { stdin?: number; stdout?: number }, timeoutMs = 60_000) => {
  const child = spawn(runscBin, [...args], { stdio: [fds.stdin ?? "ignore", fds.stdout ?? "pipe", "pipe"] })
  for (const fd of [fds.stdin, fds.stdout]) if (fd !== undefined) Fs.closeSync(fd)
  let stdout = ""
  let stderr = ""
  let ended = false
  child.stdout?.setEncoding("utf8").on("data", (chunk: string) => void (stdout += chunk))
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => void (stderr += chunk))
  let timedOut = false
  const timer = setTimeout(() => {
    timedOut = true
    child.kill("SIGKILL")
  }, timeoutMs)
  const result = new Promise<RunResult>((resolve) =>
    child.on("close", (code, signal) => {
      clearTimeout(timer)
      ended = true
      resolve({ code, signal, stdout, stderr, timedOut })
    })
  )
  return { result, ended: () => ended }
}

/** The sandbox answers `ps` and `state` of the pod, without waiting for anything else. */
/**
 * The pod's sandbox answers ps and state, and runs its init and nothing else but, while an exec
 * is under way (`exec: true`), at most the exec's process (pid 2).
 */
const podAnswers = async (flags: ReadonlyArray<string>, pod: string, options: { readonly exec?: boolean } = {}) => {
  const ps = await runsc([...flags, "ps", "--format", "json", pod], { timeoutMs: 20_000 })
  assert.isFalse(ps.timedOut, `ps of the pod hung\n${describeResult(ps)}`)
  assert.strictEqual(ps.code, 0, describeResult(ps))
  const pids = JSON.parse(ps.stdout) as Array<number>
  if (options.exec === true && pids.length === 2) assert.deepStrictEqual(pids, [1, 2])
  else assert.deepStrictEqual(pids, [1])
  const state = await runsc([...flags, "state", pod], { timeoutMs: 20_000 })
  assert.isFalse(state.timedOut, `state of the pod hung\n${describeResult(state)}`)
  assert.strictEqual(state.code, 0, describeResult(state))
  assert.strictEqual(JSON.parse(state.stdout).status, "running", describeResult(state))
}

describe("stdio that is a FIFO with nobody at its other end", () => {
  it("create of a sub-container whose stdout is a FIFO nobody reads: the pod's sandbox answers meanwhile; create fails saying nobody reads it", async () => {
    const { flags, pod } = await startPod()
    const sub = await makeBundle(["/bin/echo_args", "hi"], ["echo_args"])
    try {
      const configPath = Path.join(sub.dir, "config.json")
      const config = JSON.parse(Fs.readFileSync(configPath, "utf8"))
      config.annotations = { "io.kubernetes.cri.container-type": "container", "io.kubernetes.cri.sandbox-id": pod }
      Fs.writeFileSync(configPath, JSON.stringify(config))
      const app = uniqueId("app")
      const { writer } = fifoWithoutReader()
      const create = runscWith([...flags, "create", "--bundle", sub.dir, app], { stdout: writer })
      do await podAnswers(flags, pod)
      while (!create.ended())
      const created = await create.result
      assert.match(cliFailureLine(created), /stdout .*is a FIFO that no process has open for reading/)
      // Nothing of it is left: the pod's sandbox does not know it, nor does the CLI.
      assert.match(cliFailureLine(await runsc([...flags, "state", app])), /does not exist/)
      await podAnswers(flags, pod)
      assert.strictEqual((await runsc([...flags, "delete", "--force", pod])).code, 0)
    } finally {
      await removeDir(sub.dir)
    }
  }, 120_000)

  it("exec whose stdin is a FIFO nobody writes: the process reads end of file; the sandbox answers meanwhile", async () => {
    const { flags, pod } = await startPod()
    const { reader } = fifoWithoutWriter()
    const exec = runscWith([...flags, "exec", pod, "/bin/cat"], { stdin: reader })
    // The exec's cat may still be there (it reads end of file at once, and is reaped by the
    // exec's wait) while the pod is asked.
    do await podAnswers(flags, pod, { exec: true })
    while (!exec.ended())
    const r = await exec.result
    assert.isFalse(r.timedOut, describeResult(r))
    assert.strictEqual(r.code, 0, describeResult(r))
    assert.strictEqual(r.stdout, "")
    await podAnswers(flags, pod)
    assert.strictEqual((await runsc([...flags, "delete", "--force", pod])).code, 0)
  }, 120_000)

  it("exec whose stdout is a FIFO whose reader comes a little later: the process writes to that reader", async () => {
    const { flags, pod } = await startPod()
    const { path, writer } = fifoWithoutReader()
    const exec = runscWith([...flags, "exec", pod, "/bin/echo_args", "hello"], { stdout: writer })
    // The reader comes while the exec waits for one (or before the sandbox tried: then it found one).
    await new Promise((r) => setTimeout(r, 2_000))
    const reader = Fs.openSync(path, O_RDONLY | O_NONBLOCK)
    try {
      const r = await exec.result
      assert.strictEqual(r.code, 0, describeResult(r))
      const buffer = Buffer.alloc(256)
      const n = Fs.readSync(reader, buffer)
      assert.strictEqual(buffer.subarray(0, n).toString(), "argv[0]=/bin/echo_args\nargv[1]=hello\n")
    } finally {
      Fs.closeSync(reader)
    }
    assert.strictEqual((await runsc([...flags, "delete", "--force", pod])).code, 0)
  }, 120_000)
})
