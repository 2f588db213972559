/**
 * The OCI lifecycle through the CLI binary, as containerd drives it: create (a detached
 * sandbox process), start, state, list, ps, kill, wait, delete — RUNSC.md scenarios 3, 4, 9,
 * 10, 11, 14 — with a fresh --root per test.
 */
import { assert, describe, it } from "@effect/vitest"
import { execFileSync, spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { afterAll, beforeAll } from "vitest"
import { cliFailureLine, connectionsTo, createContainer, describeResult, killSandboxesUnder, lines, makeBundle, makeTempDir, removeDir, runsc, runscBin, startRunsc, uniqueId, until } from "./helpers.js"

let work = ""
let sleeper: { readonly dir: string } | undefined
let exiter: { readonly dir: string } | undefined
let spinner: { readonly dir: string } | undefined

beforeAll(async () => {
  work = await makeTempDir("runsc-e2e-lifecycle-")
  sleeper = await makeBundle(["/bin/sleep", "600"], ["sleep", "echo_args", "exit", "cat"])
  exiter = await makeBundle(["/bin/exit", "123"], ["exit"])
  spinner = await makeBundle(["/bin/spin"], ["spin"])
})

afterAll(async () => {
  // A test that failed half-way may have left a sandbox process behind: none may outlive the suite.
  killSandboxesUnder(work)
  await removeDir(work)
  if (sleeper) await removeDir(sleeper.dir)
  if (exiter) await removeDir(exiter.dir)
  if (spinner) await removeDir(spinner.dir)
})

/** A fresh --root for one test, and the global flags naming it. */
const freshRoot = async () => {
  const root = await Fs.promises.mkdtemp(Path.join(work, "root-"))
  return { root, flags: ["--root", root] }
}

const create = (flags: ReadonlyArray<string>, bundle: string, id: string, extra: ReadonlyArray<string> = []) =>
  createContainer(flags, bundle, id, work, extra)

const stateOf = async (flags: ReadonlyArray<string>, id: string) => {
  const r = await runsc([...flags, "state", id])
  assert.strictEqual(r.code, 0, describeResult(r))
  return JSON.parse(r.stdout) as { ociVersion: string; id: string; status: string; pid: number; bundle: string; annotations: object }
}

const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

describe("OCI lifecycle through the CLI", () => {
  it("a created container's sandbox sent SIGTERM directly (as an engine may signal the pid it was given): the container stops, 143, and the sandbox exits, as runc's waiting init dies; SIGWINCH changes nothing", async () => {
    const { flags } = await freshRoot()
    const id = uniqueId("direct")
    assert.strictEqual((await create(flags, sleeper!.dir, id)).code, 0)
    const { pid, status } = await stateOf(flags, id)
    assert.strictEqual(status, "created")
    // A signal whose default is to ignore it leaves the container created.
    process.kill(pid, "SIGWINCH")
    await new Promise((r) => setTimeout(r, 200))
    assert.strictEqual((await stateOf(flags, id)).status, "created")
    process.kill(pid, "SIGTERM")
    await until("the sandbox process is gone", async () => !isAlive(pid), 5_000)
    assert.strictEqual((await stateOf(flags, id)).status, "stopped")
    const wait = await runsc([...flags, "wait", id])
    assert.strictEqual(JSON.parse(lines(wait.stdout)[0]!).exitStatus, 143, describeResult(wait))
    assert.strictEqual((await runsc([...flags, "delete", id])).code, 0)
  })

  it("scenario 3: create → created and listed; start → running, ps shows pid 1; wait + SIGTERM → 143; stopped; delete → gone", async () => {
    const { flags, root } = await freshRoot()
    const id = uniqueId("c3")
    const pidFile = Path.join(work, `${id}.pid`)
    const created = await create(flags, sleeper!.dir, id, ["--pid-file", pidFile])
    assert.strictEqual(created.code, 0, created.output())
    const state = await stateOf(flags, id)
    assert.strictEqual(state.status, "created")
    assert.strictEqual(state.ociVersion, "1.0.2")
    assert.strictEqual(state.bundle, sleeper!.dir)
    assert.deepStrictEqual(state.annotations, {})
    assert.strictEqual(state.pid, Number(Fs.readFileSync(pidFile, "utf8")), "--pid-file holds the sandbox's pid")
    assert.isTrue(isAlive(state.pid))
    assert.deepStrictEqual(lines((await runsc([...flags, "list", "-q"])).stdout), [id])

    assert.strictEqual((await runsc([...flags, "start", id])).code, 0)
    assert.strictEqual((await stateOf(flags, id)).status, "running")
    await until("the guest runs", async () => created.output() === "sleeping\n")
    const ps = await runsc([...flags, "ps", "--format", "json", id])
    assert.deepStrictEqual(JSON.parse(ps.stdout), [1])
    const table = lines((await runsc([...flags, "ps", id])).stdout)
    assert.match(table[0]!, /^UID\tPID\tPPID\tC\tSTIME\tTIME\tCMD$/)
    assert.match(table[1]!, /^0\t1\t0\t0\t\d\d:\d\d\t00:00:00\t\/bin\/sleep 600$/)

    const waiting = runsc([...flags, "wait", id])
    // The kill comes while `wait` waits on the sandbox (not after, when it would read the record).
    await until("wait is connected to the sandbox", async () => connectionsTo(Path.join(root, `${id}.sock`)) > 0, 20_000)
    const kill = await runsc([...flags, "kill", id, "TERM"])
    assert.strictEqual(kill.code, 0, describeResult(kill))
    const waited = await waiting
    assert.strictEqual(waited.code, 0, describeResult(waited))
    assert.deepStrictEqual(JSON.parse(waited.stdout), { id, exitStatus: 143 })
    await until("the sandbox exits with its root container", async () => !isAlive(state.pid))
    const stopped = await stateOf(flags, id)
    assert.strictEqual(stopped.status, "stopped")
    assert.strictEqual(stopped.pid, 0)

    assert.strictEqual((await runsc([...flags, "delete", id])).code, 0)
    assert.deepStrictEqual(lines((await runsc([...flags, "list", "-q"])).stdout), [])
    assert.deepStrictEqual(Fs.readdirSync(root), [], "no state file, socket or exit record is left")
  })

  it("scenarios 4 and 11: exit codes pass through; wait after the sandbox is gone still reports the status", async () => {
    const { flags } = await freshRoot()
    const id = uniqueId("c4")
    assert.strictEqual((await create(flags, exiter!.dir, id)).code, 0)
    const { pid } = await stateOf(flags, id)
    assert.strictEqual((await runsc([...flags, "start", id])).code, 0)
    await until("the sandbox is gone", async () => !isAlive(pid))
    const waited = await runsc([...flags, "wait", id])
    assert.deepStrictEqual(JSON.parse(waited.stdout), { id, exitStatus: 123 }, describeResult(waited))
    assert.deepStrictEqual(JSON.parse((await runsc([...flags, "wait", id])).stdout), { id, exitStatus: 123 }, "repeatable")
    assert.strictEqual((await stateOf(flags, id)).status, "stopped")
    assert.strictEqual((await runsc([...flags, "delete", id])).code, 0)
  })

  it("scenario 9: an unambiguous prefix names a container; an ambiguous one fails", async () => {
    const { flags } = await freshRoot()
    assert.strictEqual((await create(flags, sleeper!.dir, "prefix-alpha")).code, 0)
    assert.strictEqual((await create(flags, sleeper!.dir, "prefix-beta")).code, 0)
    assert.strictEqual((await stateOf(flags, "prefix-a")).id, "prefix-alpha")
    const ambiguous = await runsc([...flags, "state", "prefix-"])
    assert.match(cliFailureLine(ambiguous), /ambiguous/)
    const unknown = await runsc([...flags, "state", "nothing"])
    assert.match(cliFailureLine(unknown), /does not exist/)
    for (const id of ["prefix-alpha", "prefix-beta"]) assert.strictEqual((await runsc([...flags, "delete", "--force", id])).code, 0)
  })

  it("scenario 10: a sandbox killed from the host → stopped; delete leaves no process, socket or state", async () => {
    const { flags, root } = await freshRoot()
    const id = uniqueId("c10")
    assert.strictEqual((await create(flags, sleeper!.dir, id)).code, 0)
    assert.strictEqual((await runsc([...flags, "start", id])).code, 0)
    const { pid } = await stateOf(flags, id)
    process.kill(pid, "SIGKILL")
    await until("the sandbox is gone", async () => !isAlive(pid))
    assert.strictEqual((await stateOf(flags, id)).status, "stopped")
    const kill = await runsc([...flags, "kill", "--all", id, "KILL"])
    assert.strictEqual(kill.code, 0, "kill --all of a stopped container cleans nothing, and succeeds")
    assert.strictEqual((await runsc([...flags, "delete", id])).code, 0)
    assert.deepStrictEqual(Fs.readdirSync(root), [])
  })

  it("a recorded sandbox pid now used by another host process is not the sandbox: stopped, and delete never signals it", async () => {
    const { flags, root } = await freshRoot()
    const bystander = spawn(process.execPath, ["-e", "setTimeout(() => {}, 60000)"], { stdio: "ignore" })
    try {
      const record = {
        id: "reused",
        bundle: sleeper!.dir,
        sandboxPid: bystander.pid,
        sandboxStart: "1",
        socket: Path.join(root, "reused.sock"),
        phase: "started",
        createdAt: new Date(0).toISOString(),
        annotations: {}
      }
      Fs.writeFileSync(Path.join(root, "reused.state.json"), JSON.stringify(record))
      const state = await stateOf(flags, "reused")
      assert.strictEqual(state.status, "stopped")
      assert.strictEqual(state.pid, 0)
      assert.strictEqual((await runsc([...flags, "delete", "reused"])).code, 0)
      assert.isTrue(isAlive(bystander.pid!), "the bystander was not killed")
      assert.deepStrictEqual(Fs.readdirSync(root), [])
    } finally {
      bystander.kill("SIGKILL")
    }
  })

  it("scenario 14: a corrupt state file of another id blocks nothing; create refuses an id in use", async () => {
    const { flags, root } = await freshRoot()
    Fs.writeFileSync(Path.join(root, "broken.state.json"), "{ not json")
    const id = uniqueId("c14")
    assert.strictEqual((await create(flags, sleeper!.dir, id)).code, 0)
    assert.deepStrictEqual(lines((await runsc([...flags, "list", "-q"])).stdout), [id])
    assert.match(cliFailureLine(await runsc([...flags, "state", "broken"])), /corrupt/)
    const again = await create(flags, sleeper!.dir, id)
    assert.strictEqual(again.code, 128)
    assert.match(again.output(), /already exists/)
    const running = await runsc([...flags, "delete", id])
    assert.strictEqual(running.code, 0, "a created container can be deleted")
  })

  it("exec: attached to the CLI's stdio, the guest's own flags, exit codes; --detach with pid files, ps, kill --pid", async () => {
    const { flags } = await freshRoot()
    const id = uniqueId("ce")
    assert.strictEqual((await create(flags, sleeper!.dir, id)).code, 0)
    assert.strictEqual((await runsc([...flags, "start", id])).code, 0)
    const echo = await runsc([...flags, "exec", id, "echo_args", "-x", "--flag"])
    assert.strictEqual(echo.code, 0, describeResult(echo))
    assert.strictEqual(echo.stdout, "argv[0]=echo_args\nargv[1]=-x\nargv[2]=--flag\n")
    assert.strictEqual((await runsc([...flags, "exec", id, "/bin/exit", "7"])).code, 7)
    const cat = await runsc([...flags, "exec", id, "cat"], { input: "through stdin\n" })
    assert.strictEqual(cat.stdout, "through stdin\n", describeResult(cat))
    const internal = Path.join(work, `${id}.internal`)
    const holder = Path.join(work, `${id}.holder`)
    // A detached process keeps the CLI's stdio, as with runc: the caller's pipes stay open (held
    // by the relay helper) until it ends, and what it writes later still arrives. The CLI itself
    // exits at once; --pid-file names the host process that holds the process's status (its
    // waiter), which lives as long as the process and passes signals on to it, as an engine
    // that signals that pid expects.
    const detached = await startRunsc([...flags, "exec", "--detach", "--internal-pid-file", internal, "--pid-file", holder, id, "/bin/sleep", "600"])
    await until("the detached exec wrote its pid files", async () => Fs.existsSync(holder) && Fs.readFileSync(holder, "utf8") !== "")
    if (detached.child.exitCode === null) await new Promise((resolve) => detached.child.once("exit", resolve))
    const pid = Number(Fs.readFileSync(internal, "utf8"))
    const waiter = Number(Fs.readFileSync(holder, "utf8"))
    assert.notStrictEqual(waiter, detached.child.pid)
    assert.isTrue(isAlive(waiter), "the waiter outlives the exec CLI")
    await detached.waitForStdout("sleeping\n")
    assert.deepStrictEqual(JSON.parse((await runsc([...flags, "ps", "--format", "json", id])).stdout), [1, pid])
    process.kill(waiter, "SIGTERM")
    await until("the process and its waiter are gone", async () =>
      !isAlive(waiter) && JSON.stringify(JSON.parse((await runsc([...flags, "ps", "--format", "json", id])).stdout)) === "[1]")
    const ended = await detached.result
    assert.strictEqual(ended.code, 0, describeResult(ended))
    assert.strictEqual(ended.stdout, "sleeping\n", "nothing but the guest writes to stdout")
    // kill --pid of a detached process ends its waiter too.
    const [internal2, holder2] = [`${internal}2`, `${holder}2`]
    const second = await startRunsc([...flags, "exec", "-d", "--internal-pid-file", internal2, "--pid-file", holder2, id, "/bin/sleep", "600"])
    await until("the second exec wrote its pid files", async () => Fs.existsSync(holder2) && Fs.readFileSync(holder2, "utf8") !== "")
    const secondWaiter = Number(Fs.readFileSync(holder2, "utf8"))
    const killed = await runsc([...flags, "kill", "--pid", Fs.readFileSync(internal2, "utf8"), id, "KILL"])
    assert.strictEqual(killed.code, 0, describeResult(killed))
    await until("the killed process's waiter is gone", async () => !isAlive(secondWaiter))
    assert.strictEqual((await second.result).stdout, "sleeping\n")
    const late = await runsc([...flags, "exec", "-d", id, "echo_args", "late"])
    assert.strictEqual(late.code, 0, describeResult(late))
    assert.include(late.stdout, "argv[0]=echo_args\nargv[1]=late\n")
    await until("the exec'd processes are gone", async () =>
      JSON.stringify(JSON.parse((await runsc([...flags, "ps", "--format", "json", id])).stdout)) === "[1]")
    const missing = await runsc([...flags, "exec", id, "nothing-here"])
    assert.match(cliFailureLine(missing), /nothing-here: executable file not found in \$PATH/)
    assert.strictEqual((await runsc([...flags, "delete", "--force", id])).code, 0)
  })

  it("exec --process FILE: the process JSON engines pass (args, env, cwd, terminal), refused with a command line or when malformed", async () => {
    const { flags } = await freshRoot()
    const id = uniqueId("cx")
    assert.strictEqual((await create(flags, sleeper!.dir, id)).code, 0)
    assert.strictEqual((await runsc([...flags, "start", id])).code, 0)
    const processFile = Path.join(work, `${id}.process.json`)
    const write = (process: object) => Fs.writeFileSync(processFile, JSON.stringify(process))
    write({ terminal: false, user: { uid: 0, gid: 0 }, args: ["echo_args", "from", "--the-file"], env: ["PATH=/bin"], cwd: "/" })
    const echo = await runsc([...flags, "exec", "--process", processFile, id])
    assert.strictEqual(echo.code, 0, describeResult(echo))
    assert.strictEqual(echo.stdout, "argv[0]=echo_args\nargv[1]=from\nargv[2]=--the-file\n")
    // The file's env is the whole environment: its PATH, not the container's, finds the command.
    write({ args: ["echo_args"], env: ["PATH=/nowhere"], cwd: "/" })
    assert.match(cliFailureLine(await runsc([...flags, "exec", "--process", processFile, id])), /echo_args: executable file not found in \$PATH/)
    write({ args: ["/bin/exit", "9"], cwd: "/" })
    assert.strictEqual((await runsc([...flags, "exec", "--process", processFile, id])).code, 9)
    // Detached, as containerd always asks: the waiter named by --pid-file holds the status.
    write({ args: ["/bin/sleep", "600"], cwd: "/" })
    const holder = Path.join(work, `${id}.holder`)
    const detached = await startRunsc([...flags, "exec", "--process", processFile, "--detach", "--pid-file", holder, id])
    await until("the detached exec wrote its pid file", async () => Fs.existsSync(holder) && Fs.readFileSync(holder, "utf8") !== "")
    const waiter = Number(Fs.readFileSync(holder, "utf8"))
    assert.isTrue(isAlive(waiter))
    process.kill(waiter, "SIGTERM")
    await until("the waiter is gone", async () => !isAlive(waiter))
    const ended = await detached.result
    assert.strictEqual(ended.code, 0, describeResult(ended))
    assert.strictEqual(ended.stdout, "sleeping\n")
    // The holder SIGKILLed (it cannot pass that on): the process dies with it, as a runc process
    // dies with the pid an engine kills. So it does when the holder is an attached exec CLI.
    const again = await startRunsc([...flags, "exec", "--process", processFile, "--detach", "--pid-file", `${holder}2`, id])
    await until("the detached exec wrote its pid file", async () => Fs.existsSync(`${holder}2`) && Fs.readFileSync(`${holder}2`, "utf8") !== "")
    process.kill(Number(Fs.readFileSync(`${holder}2`, "utf8")), "SIGKILL")
    const psIs = async (pids: string) => JSON.stringify(JSON.parse((await runsc([...flags, "ps", "--format", "json", id])).stdout)) === pids
    await until("the process of the killed waiter is gone", () => psIs("[1]"))
    assert.strictEqual((await again.result).stdout, "sleeping\n")
    const attached = await startRunsc([...flags, "exec", "--process", processFile, "--pid-file", `${holder}3`, id])
    await until("the attached exec wrote its pid file", async () => Fs.existsSync(`${holder}3`) && Fs.readFileSync(`${holder}3`, "utf8") !== "")
    assert.strictEqual(Number(Fs.readFileSync(`${holder}3`, "utf8")), attached.child.pid)
    attached.child.kill("SIGKILL")
    await until("the process of the killed exec CLI is gone", () => psIs("[1]"))
    // Both a process file and a command: which one? Refused, as is a file that is not a process.
    const both = await runsc([...flags, "exec", "--process", processFile, id, "echo_args"])
    assert.match(cliFailureLine(both), /--process: .*give no COMMAND/)
    write({ args: [], cwd: "/" })
    assert.match(cliFailureLine(await runsc([...flags, "exec", "--process", processFile, id])), /--process: args: .*at least one element/)
    Fs.writeFileSync(processFile, "{ not json")
    assert.match(cliFailureLine(await runsc([...flags, "exec", "--process", processFile, id])), /--process: malformed JSON/)
    const missing = await runsc([...flags, "exec", "--process", Path.join(work, "no-such.json"), id])
    assert.match(cliFailureLine(missing), /--process: .*no-such\.json/)
    assert.deepStrictEqual(JSON.parse((await runsc([...flags, "ps", "--format", "json", id])).stdout), [1], "no refused exec started a process")
    assert.strictEqual((await runsc([...flags, "delete", "--force", id])).code, 0)
  })

  it("an init blocked reading stdin (a pipe its writer holds open) is stopped by kill TERM: its sandbox exits at once, as runc's container does", async () => {
    const { flags } = await freshRoot()
    const id = uniqueId("cs")
    const reader = await makeBundle(["/bin/cat"], ["cat"])
    const out = Fs.openSync(Path.join(work, `${id}.out`), "w")
    // The sandbox inherits the creator's stdin: a pipe (a FIFO, opened read-write, so that a
    // writer holds it open for as long as the sandbox has it) that never brings anything.
    const fifo = Path.join(work, `${id}.stdin`)
    execFileSync("mkfifo", [fifo])
    const stdin = Fs.openSync(fifo, "r+")
    const creator = spawn(runscBin, [...flags, "create", "--bundle", reader.dir, id], { stdio: [stdin, out, out] })
    Fs.closeSync(out)
    Fs.closeSync(stdin)
    try {
      assert.strictEqual(await new Promise((resolve) => creator.once("exit", resolve)), 0)
      assert.strictEqual((await runsc([...flags, "start", id])).code, 0)
      const { pid, status } = await stateOf(flags, id)
      assert.strictEqual(status, "running")
      assert.strictEqual((await runsc([...flags, "kill", id, "TERM"])).code, 0)
      await until("the sandbox process is gone", async () => !isAlive(pid), 5_000)
      assert.strictEqual((await stateOf(flags, id)).status, "stopped")
      const wait = await runsc([...flags, "wait", id])
      assert.strictEqual(JSON.parse(lines(wait.stdout)[0]!).exitStatus, 143, describeResult(wait))
      assert.strictEqual((await runsc([...flags, "delete", "--force", id])).code, 0)
    } finally {
      await removeDir(reader.dir)
    }
  })

  it("pause / resume (state says paused; twice fails) and events --stats in runc's shape", async () => {
    const { flags } = await freshRoot()
    const id = uniqueId("cp")
    assert.strictEqual((await create(flags, sleeper!.dir, id)).code, 0)
    assert.match(cliFailureLine(await runsc([...flags, "pause", id])), /is created, not running/)
    assert.strictEqual((await runsc([...flags, "start", id])).code, 0)
    assert.strictEqual((await runsc([...flags, "pause", id])).code, 0)
    assert.strictEqual((await stateOf(flags, id)).status, "paused")
    assert.match(cliFailureLine(await runsc([...flags, "pause", id])), /is paused, not running/)
    assert.strictEqual((await runsc([...flags, "resume", id])).code, 0)
    assert.strictEqual((await stateOf(flags, id)).status, "running")
    assert.match(cliFailureLine(await runsc([...flags, "resume", id])), /is running, not paused/)
    const events = await runsc([...flags, "events", "--stats", id])
    assert.strictEqual(events.code, 0, describeResult(events))
    const stats = JSON.parse(events.stdout)
    assert.strictEqual(stats.type, "stats")
    assert.strictEqual(stats.id, id)
    assert.strictEqual(stats.data.pids.current, 1)
    assert.isAtLeast(stats.data.cpu.usage.total, 0)
    assert.isAbove(stats.data.memory.usage.usage, 0)
    assert.strictEqual((await runsc([...flags, "delete", "--force", id])).code, 0)
  })

  it("a guest that computes without syscalls, in the default confined sandbox: events --stats counts its CPU; pause and kill -STOP hold it off the CPU; resume and -CONT release it", async () => {
    const { flags } = await freshRoot()
    const id = uniqueId("cs")
    assert.strictEqual((await create(flags, spinner!.dir, id)).code, 0)
    assert.strictEqual((await runsc([...flags, "start", id])).code, 0)
    const cpu = async () => {
      const events = await runsc([...flags, "events", "--stats", id])
      assert.strictEqual(events.code, 0, describeResult(events))
      return JSON.parse(events.stdout).data.cpu.usage.total as number
    }
    /** CPU ns used over `ms`. */
    const usedOver = async (ms: number) => {
      const before = await cpu()
      await new Promise((resolve) => setTimeout(resolve, ms))
      return (await cpu()) - before
    }
    assert.isAbove(await usedOver(500), 0, "it spins, and its CPU is counted")
    // ps shows its CPU share since it started (C) and its CPU time (TIME), as ps does.
    const [, row] = lines((await runsc([...flags, "ps", id])).stdout)
    const [, , , percent, , time] = row!.split("\t")
    assert.isAbove(Number(percent), 0, row)
    assert.match(time!, /^00:00:0\d$/, row)
    for (const [hold, release] of [[["pause", id], ["resume", id]], [["kill", id, "STOP"], ["kill", id, "CONT"]]]) {
      assert.strictEqual((await runsc([...flags, ...hold!])).code, 0, hold!.join(" "))
      // Held within a few ms of the command's return (the guest reaches a preemption point every ~100 µs).
      await new Promise((resolve) => setTimeout(resolve, 50))
      assert.isAtMost(await usedOver(500), 5_000_000, `CPU ns used while held by ${hold!.join(" ")}`)
      assert.strictEqual((await runsc([...flags, ...release!])).code, 0, release!.join(" "))
      assert.isAbove(await usedOver(500), 0, `it spins again after ${release!.join(" ")}`)
    }
    assert.strictEqual((await runsc([...flags, "delete", "--force", id])).code, 0)
  })

  it("a memory limit that refuses the guest memory (memhog past it): `events` streams an oom event, --stats shows its failcnt and limit", async () => {
    const { flags } = await freshRoot()
    const id = uniqueId("om")
    const bundle = await makeBundle(["/bin/memhog", "200"], ["memhog"])
    const configPath = Path.join(bundle.dir, "config.json")
    const config = JSON.parse(await Fs.promises.readFile(configPath, "utf8"))
    await Fs.promises.writeFile(configPath, JSON.stringify({ ...config, linux: { resources: { memory: { limit: 64 * 1024 * 1024 } } } }))
    try {
      assert.strictEqual((await create(flags, bundle.dir, id)).code, 0)
      // Watching before the start: the refusals come after its first look.
      const events = await startRunsc([...flags, "events", "--interval", "1", id])
      await events.waitForStdout('"type":"stats"')
      assert.strictEqual((await runsc([...flags, "start", id])).code, 0)
      await events.waitForStdout('{"type":"oom","id":"' + id + '"}', 20_000)
      const stats = JSON.parse((await runsc([...flags, "events", "--stats", id])).stdout)
      assert.strictEqual(stats.data.memory.usage.limit, 64 * 1024 * 1024)
      assert.isAbove(stats.data.memory.usage.failcnt, 0)
      assert.isAtMost(stats.data.memory.usage.usage, 64 * 1024 * 1024)
      assert.strictEqual((await runsc([...flags, "delete", "--force", id])).code, 0)
      await events.result
    } finally {
      await removeDir(bundle.dir)
    }
  })

  it("scenarios 15 and 17: a sub-container joins the pod's sandbox by CRI annotations, from a bundle and binds the sandbox was never granted; ps per container; kill --pid across containers fails; deleting it leaves the root running", async () => {
    const { flags } = await freshRoot()
    const pod = uniqueId("pod")
    const sub = await makeBundle(["/bin/sleep", "600"], ["sleep", "cat"])
    const broken = await makeBundle(["/bin/sleep", "600"], ["sleep"])
    const data = await makeTempDir("runsc-e2e-subdata-")
    Fs.writeFileSync(Path.join(data, "note"), "from the host\n")
    // The pod's sandbox is confined, and told nothing of the containers to come (as an engine
    // creates a pod): their creates donate their trees.
    assert.strictEqual((await create(flags, sleeper!.dir, pod)).code, 0)
    assert.strictEqual((await runsc([...flags, "start", pod])).code, 0)
    try {
      for (const [bundle, mounts] of [[sub, [{ destination: "/data", type: "bind", source: data, options: ["rbind", "ro"] }]], [broken, [
        { destination: "/data", type: "bind", source: Path.join(data, "absent"), options: ["rbind", "ro"] }
      ]]] as const) {
        const configPath = Path.join(bundle.dir, "config.json")
        const config = JSON.parse(Fs.readFileSync(configPath, "utf8"))
        config.annotations = { "io.kubernetes.cri.container-type": "container", "io.kubernetes.cri.sandbox-id": pod }
        config.mounts = mounts
        Fs.writeFileSync(configPath, JSON.stringify(config))
      }
      // A bind source that is not there fails the create (as runc's mount would), leaving nothing.
      const refused = await create(flags, broken.dir, uniqueId("broken"))
      assert.strictEqual(refused.code, 128)
      assert.match(refused.output(), /^runsc: the container's host trees could not be handed to its sandbox: .*absent: ENOENT/)
      assert.deepStrictEqual(JSON.parse((await runsc([...flags, "list", "--format", "json"])).stdout).map((c: { id: string }) => c.id), [pod])
      const app = uniqueId("app")
      const pidFile = Path.join(data, "app.pid")
      const created = await create(flags, sub.dir, app, ["--pid-file", pidFile])
      assert.strictEqual(created.code, 0, created.output())
      const podState = await stateOf(flags, pod)
      const appState = await stateOf(flags, app)
      assert.strictEqual(appState.status, "created")
      assert.strictEqual(appState.pid, podState.pid, "one sandbox process for the pod")
      // Its --pid-file names its holder, a host process of its own that lives as long as it does.
      const holder = Number(Fs.readFileSync(pidFile, "utf8"))
      assert.notStrictEqual(holder, podState.pid)
      assert.match(Fs.readFileSync(`/proc/${holder}/cmdline`, "utf8"), /container-waiter/)
      // Its grants are what its own create gave it: neither the sub-container's bundle nor its bind.
      const grants = Fs.readFileSync(`/proc/${podState.pid}/cmdline`, "utf8").split("\0").filter((a) => a.startsWith("--allow-fs-"))
      assert.isNotEmpty(grants)
      for (const path of [sub.dir, data]) assert.isFalse(grants.some((g) => g.includes(path)), `${path} in ${grants.join(" ")}`)
      assert.strictEqual((await runsc([...flags, "start", app])).code, 0)
      assert.strictEqual((await stateOf(flags, app)).status, "running")
      await until("the sub-container's init prints to create's stdio", async () => created.output() === "sleeping\n")
      const read = await runsc([...flags, "exec", app, "/bin/cat", "/data/note"])
      assert.strictEqual(read.code, 0, describeResult(read))
      assert.strictEqual(read.stdout, "from the host\n")
      const rootPids = JSON.parse((await runsc([...flags, "ps", "--format", "json", pod])).stdout) as Array<number>
      const appPids = JSON.parse((await runsc([...flags, "ps", "--format", "json", app])).stdout) as Array<number>
      assert.deepStrictEqual(rootPids, [1])
      assert.strictEqual(appPids.length, 1)
      assert.notStrictEqual(appPids[0], 1)
      const across = await runsc([...flags, "kill", "--pid", "1", app, "KILL"])
      assert.match(cliFailureLine(across), /belongs to a different container/)
      assert.strictEqual((await runsc([...flags, "delete", "--force", app])).code, 0)
      await until("the holder exits with its container", () => !Fs.existsSync(`/proc/${holder}/cmdline`) || Fs.readFileSync(`/proc/${holder}/stat`, "utf8").split(") ")[1]!.startsWith("Z"))
      assert.strictEqual((await stateOf(flags, pod)).status, "running", "the pod's sandbox goes on")
      // A holder killed kills what it holds, as an exec's does.
      const second = uniqueId("app")
      assert.strictEqual((await create(flags, sub.dir, second, ["--pid-file", pidFile])).code, 0)
      assert.strictEqual((await runsc([...flags, "start", second])).code, 0)
      process.kill(Number(Fs.readFileSync(pidFile, "utf8")), "SIGKILL")
      await until("the container whose holder was killed stops", async () => (await stateOf(flags, second)).status === "stopped")
      assert.strictEqual((await runsc([...flags, "delete", second])).code, 0)
      assert.deepStrictEqual(JSON.parse((await runsc([...flags, "ps", "--format", "json", pod])).stdout), [1])
      assert.strictEqual((await runsc([...flags, "delete", "--force", pod])).code, 0)
    } finally {
      await removeDir(sub.dir)
      await removeDir(broken.dir)
      await removeDir(data)
    }
  })

  it("concurrent CLIs on one sandbox: an exec storm, a kill during execs, two deletes at once", async () => {
    const { flags, root } = await freshRoot()
    const id = uniqueId("cc")
    assert.strictEqual((await create(flags, sleeper!.dir, id)).code, 0)
    assert.strictEqual((await runsc([...flags, "start", id])).code, 0)
    const codes = [3, 5, 7, 11, 13, 17, 19, 23]
    const storm = await Promise.all(codes.map((code) => runsc([...flags, "exec", id, "/bin/exit", `${code}`])))
    assert.deepStrictEqual(storm.map((r) => r.code), codes, storm.map(describeResult).join("\n"))
    // A kill of the container while execs run: every exec ends (killed, or its sandbox gone), none
    // hangs. (Three: the e2e helper runs at most four runsc at once, and kill needs one of them.)
    const execs = [1, 2, 3].map(() => runsc([...flags, "exec", id, "/bin/sleep", "600"], { timeoutMs: 60_000 }))
    // The kill comes once every exec runs: ps shows the init and the three.
    await until("the three execs run", async () => {
      const ps = await runsc([...flags, "ps", "--format", "json", id])
      return ps.code === 0 && (JSON.parse(ps.stdout) as Array<number>).length === 4
    }, 40_000)
    const killed = await runsc([...flags, "kill", "--all", id, "KILL"])
    assert.strictEqual(killed.code, 0, describeResult(killed))
    for (const r of await Promise.all(execs)) {
      assert.isFalse(r.timedOut, describeResult(r))
      assert.include([137, 128], r.code, describeResult(r))
    }
    const deletes = await Promise.all([runsc([...flags, "delete", "--force", id]), runsc([...flags, "delete", "--force", id])])
    assert.isTrue(deletes.some((r) => r.code === 0), deletes.map(describeResult).join("\n"))
    for (const r of deletes) if (r.code !== 0) assert.match(cliFailureLine(r), /does not exist/)
    assert.deepStrictEqual(Fs.readdirSync(root), [])
  }, 120_000)

  it("typed CLI failures: bad bundle, start twice, delete of a running container without --force", async () => {
    const { flags } = await freshRoot()
    const bad = await create(flags, work, uniqueId("nobundle"))
    assert.strictEqual(bad.code, 128)
    assert.match(bad.output(), /^runsc: bundle .*config\.json is missing/)
    const id = uniqueId("ct")
    assert.strictEqual((await create(flags, sleeper!.dir, id)).code, 0)
    assert.strictEqual((await runsc([...flags, "start", id])).code, 0)
    assert.match(cliFailureLine(await runsc([...flags, "start", id])), /is running, not created/)
    assert.match(cliFailureLine(await runsc([...flags, "delete", id])), /is running/)
    assert.match(cliFailureLine(await runsc([...flags, "kill", id, "NOPE"])), /unknown signal/)
    assert.strictEqual((await runsc([...flags, "delete", "--force", id])).code, 0)
    // --log: the failure is also a JSON line there, as containerd reads it.
    const log = Path.join(work, `${id}.log`)
    const failed = await runsc([...flags, "--log", log, "state", "nothing-like-this"])
    assert.match(cliFailureLine(failed), /does not exist/)
    const entries = lines(Fs.readFileSync(log, "utf8")).map((l) => JSON.parse(l))
    assert.strictEqual(entries.length, 1)
    assert.strictEqual(entries[0].level, "error")
    assert.match(entries[0].msg, /nothing-like-this.*does not exist/)
    assert.isFalse(Number.isNaN(Date.parse(entries[0].time)))
  })
})
