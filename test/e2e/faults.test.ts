/**
 * The CLI under faults and load, through the real binary: many CLIs at once under one --root,
 * a `create` killed at each point of its boot, a state directory that fills up (a small tmpfs),
 * pid files and config files that are not what they should be, ids that point elsewhere, and a
 * sandbox that is alive but does not answer. Whatever fails leaves nothing behind — no sandbox
 * process, no state, socket, lock or file aside — and no command acts on a container other
 * than the one it names.
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
  helloBundle,
  makeBundle,
  makeTempDir,
  removeDir,
  type RunResult,
  runsc,
  runscBin,
  startRunsc,
  until
} from "./helpers.js"

/** How long these tests wait for a state (kills and teardowns under load). */
const SETTLE_MS = 30_000

let work = ""
let sleeper: { readonly dir: string } | undefined

beforeAll(async () => {
  work = await makeTempDir("runsc-e2e-faults-")
  sleeper = await makeBundle(["/bin/sleep", "600"], ["sleep", "echo_args"])
})

afterAll(async () => {
  // A test that failed half-way may have left sandboxes behind: none may outlive the suite.
  for (const pid of sandboxesUnder(work)) killQuietly(pid)
  for (const mount of mounts.splice(0)) unmount(mount)
  await removeDir(work)
  if (sleeper) await removeDir(sleeper.dir)
})

const killQuietly = (pid: number) => {
  try {
    process.kill(pid, "SIGKILL")
  } catch {
    // Gone already.
  }
}

/** A fresh --root for one test (under `parent`, default the suite's directory). */
const freshRoot = async (parent = work) => {
  const root = await Fs.promises.mkdtemp(Path.join(parent, "root-"))
  return { root, flags: ["--root", root] }
}

const create = (flags: ReadonlyArray<string>, bundle: string, id: string, extra: ReadonlyArray<string> = []) =>
  createContainer(flags, bundle, id, work, extra)

const statusOf = async (flags: ReadonlyArray<string>, id: string) => {
  const r = await runsc([...flags, "state", id])
  assert.strictEqual(r.code, 0, describeResult(r))
  return JSON.parse(r.stdout) as { id: string; status: string; pid: number }
}

/** A process's command line and state letter, from /proc (undefined when it is gone). */
const procInfo = (pid: number): { readonly argv: ReadonlyArray<string>; readonly state: string } | undefined => {
  try {
    const argv = Fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")
    const stat = Fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    return { argv, state: stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0]! }
  } catch {
    return undefined
  }
}

const livePids = (match: (argv: ReadonlyArray<string>) => boolean): Array<number> =>
  Fs.readdirSync("/proc").filter((name) => /^\d+$/.test(name)).map(Number).filter((pid) => {
    const info = procInfo(pid)
    return info !== undefined && info.state !== "Z" && match(info.argv)
  })

/** The live `runsc boot` processes serving container `id` of `root`. */
const sandboxesOf = (root: string, id: string) => {
  const socket = Path.join(root, `${id}.sock`)
  return livePids((argv) => argv.includes("boot") && argv.includes(socket))
}

/** Every live `runsc boot` process whose socket is under `dir`. */
const sandboxesUnder = (dir: string) =>
  livePids((argv) => argv.includes("boot") && argv.some((arg) => arg.startsWith(`${dir}/`) && arg.endsWith(".sock")))

/** What is left in a state root (files a test planted excepted). */
const leftovers = (root: string, planted: (name: string) => boolean = () => false) =>
  Fs.readdirSync(root).filter((name) => !planted(name))

/** Runs `runsc ARGS` without the helpers' limit on concurrent children (for load). */
const runscUnlimited = (args: ReadonlyArray<string>, timeoutMs: number) =>
  new Promise<RunResult>((resolve) => {
    const child = spawn(runscBin, [...args], { stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    let timedOut = false
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => void (stdout += chunk))
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => void (stderr += chunk))
    const timer = setTimeout(() => {
      timedOut = true
      child.kill("SIGKILL")
    }, timeoutMs)
    child.on("close", (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr, timedOut })
    })
  })

describe("many CLIs at once under one --root", () => {
  it("50 concurrent runs all succeed, and leave nothing behind", { timeout: 300_000 }, async () => {
    const { flags, root } = await freshRoot()
    const ids = Array.from({ length: 50 }, (_, i) => `load-${i}`)
    const results = await Promise.all(ids.map((id) => runscUnlimited([...flags, "run", "--bundle", helloBundle, id], 240_000)))
    const failed = results.flatMap((r, i) => (r.code === 0 && r.stdout.includes("Hello from WebAssembly") ? [] : [`${ids[i]}: ${describeResult(r)}`]))
    assert.deepStrictEqual(failed, [], `${failed.length} of 50 runs failed`)
    assert.deepStrictEqual(leftovers(root), [])
  })
})

describe("a create killed at any point of its boot", () => {
  /**
   * Starts `create`, SIGKILLs it when `when` says so, then checks: no sandbox of the id lives
   * on (unless the create had finished, and the container is there, created), `list` shows
   * nothing half-made, and the id can be created again.
   */
  const killCreate = async (label: string, when: (root: string, id: string, started: number) => boolean) => {
    const { flags, root } = await freshRoot()
    const id = "killed"
    const out = Fs.openSync(Path.join(work, `killed-${Path.basename(root)}.out`), "w")
    const child = spawn(runscBin, [...flags, "create", "--bundle", sleeper!.dir, id], { stdio: ["ignore", out, out] })
    Fs.closeSync(out)
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
    const started = performance.now()
    let ended = false
    void exited.then(() => (ended = true))
    while (!ended && !when(root, id, started)) await new Promise((r) => setImmediate(r))
    child.kill("SIGKILL")
    await exited
    await until(`${label}: no sandbox is left running without a container`, async () => {
      if (sandboxesOf(root, id).length === 0) return true
      const state = await runsc([...flags, "state", id])
      return state.code === 0 && JSON.parse(state.stdout).status === "created"
    }, SETTLE_MS)
    const listed = await runsc([...flags, "list", "--format", "json"])
    assert.strictEqual(listed.code, 0, describeResult(listed))
    for (const entry of JSON.parse(listed.stdout) as Array<{ id: string; status: string }>) {
      // The create finished before it was killed: a container, whole.
      assert.deepStrictEqual([entry.id, entry.status], [id, "created"], `${label}: listed ${JSON.stringify(entry)}`)
      assert.strictEqual((await runsc([...flags, "delete", id])).code, 0, label)
    }
    const again = await create(flags, sleeper!.dir, id)
    assert.strictEqual(again.code, 0, `${label}: the id can be created again: ${again.output()}`)
    assert.strictEqual((await runsc([...flags, "delete", "--force", id])).code, 0)
    assert.deepStrictEqual(sandboxesOf(root, id), [], label)
    assert.deepStrictEqual(leftovers(root), [], label)
  }

  const exists = (root: string, name: string) => Fs.existsSync(Path.join(root, name))

  it("killed at once", async () => {
    await killCreate("at once", () => true)
  })

  it("killed once its id is reserved", async () => {
    await killCreate("reserved", (root, id) => exists(root, `${id}.state.json`))
  })

  it("killed once its sandbox serves (before it registered the container)", async () => {
    await killCreate("serving", (root, id) => exists(root, `${id}.sock`))
  })

  it("killed between recording the container and confirming its sandbox: the sandbox says so, and the record it leaves names no container (state, list and the fast path agree)", async () => {
    // As that kill leaves it, made deterministic: a created record whose sandbox is gone and
    // whose exit record is the sandbox's "abandoned" (boot.ts writes it when its create goes
    // away unconfirmed).
    for (const command of [["state"], ["list", "--format", "json"], ["kill"], ["delete"]]) {
      const { flags, root } = await freshRoot()
      const id = "unconfirmed"
      assert.strictEqual((await create(flags, sleeper!.dir, id)).code, 0)
      for (const pid of sandboxesOf(root, id)) process.kill(pid, "SIGKILL")
      await until("its sandbox is gone", () => sandboxesOf(root, id).length === 0, SETTLE_MS)
      Fs.writeFileSync(Path.join(root, `${id}.exit`), "abandoned\n")
      const r = await runsc([...flags, ...command, ...(command[0] === "list" ? [] : [id])])
      if (command[0] === "list") assert.deepStrictEqual(JSON.parse(r.stdout), [], describeResult(r))
      else assert.match(r.stderr, /does not exist/, `${command[0]}: ${describeResult(r)}`)
      assert.deepStrictEqual(leftovers(root), [], command[0])
      const again = await create(flags, sleeper!.dir, id)
      assert.strictEqual(again.code, 0, again.output())
      assert.strictEqual((await runsc([...flags, "delete", "--force", id])).code, 0)
    }
  })

  it("killed after various delays", { timeout: 120_000 }, async () => {
    for (const ms of [100, 250, 400, 550, 700, 850]) {
      await killCreate(`after ${ms} ms`, (_root, _id, started) => performance.now() - started >= ms)
    }
  })
})

describe("a full state directory", () => {
  /** A fresh tmpfs mounted at a new directory with `options` (root runs the tests, and CI). */
  const tmpfs = async (options: string) => {
    const dir = await Fs.promises.mkdtemp(Path.join(work, "tmpfs-"))
    execFileSync("mount", ["-t", "tmpfs", "-o", `${options},mode=0700`, "tmpfs", dir])
    mounts.push(dir)
    return dir
  }

  const isFiller = (name: string) => name.startsWith(".filler")

  /** Fills `dir` with empty files until no inode is left, then frees `spare` of them. */
  const fillInodes = (dir: string, spare: number) => {
    const made: Array<string> = []
    for (let i = 0;; i++) {
      const file = Path.join(dir, `.filler-${i}`)
      try {
        Fs.closeSync(Fs.openSync(file, "wx"))
        made.push(file)
      } catch {
        break
      }
    }
    for (const file of made.slice(made.length - spare)) Fs.rmSync(file)
  }

  /** Fills `dir` with data until no page is left, then frees `spare` pages. */
  const fillPages = (dir: string, spare: number) => {
    const file = Path.join(dir, ".filler-data")
    const fd = Fs.openSync(file, "w")
    const block = Buffer.alloc(4096, 1)
    let size = 0
    try {
      for (;;) size += Fs.writeSync(fd, block)
    } catch {
      // Full.
    } finally {
      Fs.closeSync(fd)
    }
    Fs.truncateSync(file, Math.max(0, size - spare * 4096))
  }

  const unfill = (dir: string) => {
    for (const name of Fs.readdirSync(dir).filter(isFiller)) Fs.rmSync(Path.join(dir, name))
  }

  /**
   * A command run with the state directory nearly full: it succeeds, or fails in one line and
   * leaves nothing behind. Either way, once there is room again, the id can be created (no lock
   * is left that a person would have to remove) and deleted.
   */
  const underPressure = async (root: string, id: string, label: string, command: () => Promise<RunResult>) => {
    const result = await command()
    if (result.code !== 0) {
      cliFailureLine(result)
      assert.deepStrictEqual(sandboxesOf(root, id), [], `${label}: no sandbox is left\n${describeResult(result)}`)
      assert.deepStrictEqual(leftovers(root, isFiller), [], `${label}: nothing is left\n${describeResult(result)}`)
    }
    unfill(root)
    const flags = ["--root", root]
    if (result.code === 0 && (await runsc([...flags, "list", "-q"])).stdout.includes(id)) {
      assert.strictEqual((await runsc([...flags, "delete", "--force", id])).code, 0, label)
    }
    const again = await create(flags, sleeper!.dir, id)
    assert.strictEqual(again.code, 0, `${label}: created once there is room: ${again.output()}`)
    const deleted = await runsc([...flags, "delete", "--force", id])
    assert.strictEqual(deleted.code, 0, `${label}: ${describeResult(deleted)}`)
    assert.deepStrictEqual(leftovers(root), [], label)
    return result
  }

  it("create with 0 to 5 inodes to spare: succeeds or undoes everything", { timeout: 120_000 }, async () => {
    const root = await tmpfs("size=4m,nr_inodes=64")
    for (let spare = 0; spare <= 5; spare++) {
      fillInodes(root, spare)
      await underPressure(root, "full", `${spare} inodes`, () => create(["--root", root], sleeper!.dir, "full").then(asResult))
    }
  })

  it("create and run with 0 to 3 pages to spare: succeed or undo everything", { timeout: 120_000 }, async () => {
    const root = await tmpfs("size=256k")
    for (let spare = 0; spare <= 3; spare++) {
      fillPages(root, spare)
      await underPressure(root, "full", `create, ${spare} pages`, () => create(["--root", root], sleeper!.dir, "full").then(asResult))
      fillPages(root, spare)
      await underPressure(root, "hello", `run, ${spare} pages`, () => runsc(["--root", root, "run", "--bundle", helloBundle, "hello"]))
    }
  })

  it("with no inode left and a stale lock: delete still removes the container, create fails at once", async () => {
    const root = await tmpfs("size=4m,nr_inodes=64")
    const flags = ["--root", root]
    assert.strictEqual((await create(flags, sleeper!.dir, "stuck")).code, 0)
    const { pid } = await statusOf(flags, "stuck")
    const dead = spawn(process.execPath, ["-e", "0"])
    await new Promise((r) => dead.once("exit", r))
    Fs.symlinkSync(`runsc-lock:${dead.pid}:1`, Path.join(root, "stuck.lock"))
    fillInodes(root, 0)
    const deleted = await runsc([...flags, "delete", "--force", "stuck"])
    assert.strictEqual(deleted.code, 0, describeResult(deleted))
    assert.isTrue(procInfo(pid) === undefined || procInfo(pid)!.state === "Z", "its sandbox is gone")
    assert.deepStrictEqual(leftovers(root, isFiller), [])
    const refused = await runsc([...flags, "create", "--bundle", sleeper!.dir, "other"], { timeoutMs: 20_000 })
    assert.match(cliFailureLine(refused), /no space left/i)
    unfill(root)
    assert.strictEqual((await create(flags, sleeper!.dir, "other")).code, 0)
    assert.strictEqual((await runsc([...flags, "delete", "other"])).code, 0)
    assert.deepStrictEqual(leftovers(root), [])
  })

  it("start on a full disk starts the container and says so; delete works once there is room", async () => {
    const root = await tmpfs("size=256k")
    const flags = ["--root", root]
    assert.strictEqual((await create(flags, sleeper!.dir, "busy")).code, 0)
    fillPages(root, 0)
    const started = await runsc([...flags, "start", "busy"])
    assert.strictEqual(started.code, 0, describeResult(started))
    assert.strictEqual((await statusOf(flags, "busy")).status, "running")
    unfill(root)
    assert.strictEqual((await runsc([...flags, "delete", "--force", "busy"])).code, 0)
    assert.deepStrictEqual(leftovers(root), [])
  })
})

/** A `createContainer` outcome as a RunResult (its output is stdout and stderr in one). */
const asResult = (r: { code: number | null; output: () => string }): RunResult => ({
  code: r.code,
  signal: null,
  stdout: "",
  stderr: r.output(),
  timedOut: false
})

const mounts: Array<string> = []

const unmount = (dir: string) => {
  try {
    execFileSync("umount", ["-l", dir])
  } catch {
    // Not mounted.
  }
}

describe("locks are recovered without a person", () => {
  it("a lock left empty, or by a CLI that died, does not stop the next command", async () => {
    const { flags, root } = await freshRoot()
    // An empty lock file (what a CLI that died between creating and writing it leaves), old enough.
    const empty = Path.join(root, "c1.lock")
    Fs.writeFileSync(empty, "")
    Fs.utimesSync(empty, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000))
    // A lock whose holder is gone.
    const dead = spawn(process.execPath, ["-e", "0"])
    await new Promise((r) => dead.once("exit", r))
    Fs.symlinkSync(`runsc-lock:${dead.pid}:1`, Path.join(root, "c2.lock"))
    for (const id of ["c1", "c2"]) {
      const created = await create(flags, sleeper!.dir, id)
      assert.strictEqual(created.code, 0, created.output())
      assert.strictEqual((await runsc([...flags, "delete", id])).code, 0)
    }
    assert.deepStrictEqual(leftovers(root), [])
  })
})

describe("pid files and config files that are not what they should be", () => {
  it("create and run with an unwritable --pid-file fail and leave no sandbox; the id stays usable", async () => {
    const { flags, root } = await freshRoot()
    const unwritable = Path.join(work, "no-such-dir", "pid")
    const created = await create(flags, sleeper!.dir, "pf", ["--pid-file", unwritable])
    assert.strictEqual(created.code, 128, created.output())
    assert.match(created.output(), /no-such-dir/)
    const ran = await runsc([...flags, "run", "--pid-file", unwritable, "--bundle", helloBundle, "pf"])
    assert.match(cliFailureLine(ran), /no-such-dir/)
    assert.notInclude(ran.stdout, "Hello", "the guest never ran")
    assert.deepStrictEqual(sandboxesOf(root, "pf"), [])
    assert.deepStrictEqual(leftovers(root), [])
    assert.strictEqual((await create(flags, sleeper!.dir, "pf")).code, 0)
    assert.strictEqual((await runsc([...flags, "delete", "pf"])).code, 0)
  })

  it("a FIFO at --pid-file is replaced by the pid file, never waited on", async () => {
    const { flags } = await freshRoot()
    const fifo = Path.join(work, "pid-fifo")
    execFileSync("mkfifo", [fifo])
    const created = await create(flags, sleeper!.dir, "pfifo", ["--pid-file", fifo])
    assert.strictEqual(created.code, 0, created.output())
    assert.isTrue(Fs.lstatSync(fifo).isFile())
    assert.strictEqual(Number(Fs.readFileSync(fifo, "utf8")), (await statusOf(flags, "pfifo")).pid)
    assert.strictEqual((await runsc([...flags, "delete", "pfifo"])).code, 0)
  })

  it("exec with an unwritable --pid-file fails before its process starts", async () => {
    const { flags } = await freshRoot()
    assert.strictEqual((await create(flags, sleeper!.dir, "epf")).code, 0)
    assert.strictEqual((await runsc([...flags, "start", "epf"])).code, 0)
    for (const flag of ["--pid-file", "--internal-pid-file"]) {
      const exec = await runsc([...flags, "exec", "--detach", flag, Path.join(work, "no-such-dir", "pid"), "epf", "/bin/sleep", "600"])
      assert.match(cliFailureLine(exec), /no-such-dir/)
    }
    const ps = await runsc([...flags, "ps", "--format", "json", "epf"])
    assert.deepStrictEqual(JSON.parse(ps.stdout), [1], "no exec'd process is left")
    assert.strictEqual((await runsc([...flags, "delete", "--force", "epf"])).code, 0)
  })

  it("a FIFO as config.json is refused at once by create and run, which never hang", async () => {
    const { flags, root } = await freshRoot()
    const bundle = await makeTempDir("runsc-e2e-fifo-")
    try {
      Fs.mkdirSync(Path.join(bundle, "rootfs"))
      execFileSync("mkfifo", [Path.join(bundle, "config.json")])
      const created = await runsc([...flags, "create", "--bundle", bundle, "fifo"], { timeoutMs: 30_000 })
      assert.match(cliFailureLine(created), /config\.json.*not a regular file/)
      const ran = await runsc([...flags, "run", "--bundle", bundle, "fifo"], { timeoutMs: 30_000 })
      assert.match(cliFailureLine(ran), /config\.json.*not a regular file/)
      assert.deepStrictEqual(leftovers(root), [])
    } finally {
      await removeDir(bundle)
    }
  })

  it("a SIGTERM to run before its container started stops it and undoes the create", async () => {
    const { flags, root } = await freshRoot()
    const run = await startRunsc([...flags, "run", "--bundle", sleeper!.dir, "early"])
    await until("the id is reserved", () => Fs.existsSync(Path.join(root, "early.state.json")), 20_000)
    run.child.kill("SIGTERM")
    const result = await run.result
    assert.isFalse(result.timedOut, describeResult(result))
    assert.strictEqual(result.code, 143, describeResult(result))
    assert.notInclude(result.stdout, "sleeping", "the guest never started")
    await until("no sandbox is left", () => sandboxesOf(root, "early").length === 0, SETTLE_MS)
    assert.deepStrictEqual(leftovers(root), [])
  })
})

describe("ids that point elsewhere", () => {
  it("a sandbox-id annotation that is not an id never joins a sandbox of another root", async () => {
    const parent = await Fs.promises.mkdtemp(Path.join(work, "roots-"))
    const victim = await freshRoot(parent)
    const attacker = await freshRoot(parent)
    const sub = await makeBundle(["/bin/sleep", "600"], ["sleep"])
    try {
      assert.strictEqual((await create([...victim.flags, "--allow-read", sub.dir], sleeper!.dir, "victim")).code, 0)
      assert.strictEqual((await runsc([...victim.flags, "start", "victim"])).code, 0)
      const configPath = Path.join(sub.dir, "config.json")
      const config = JSON.parse(Fs.readFileSync(configPath, "utf8"))
      config.annotations = {
        "io.kubernetes.cri.container-type": "container",
        "io.kubernetes.cri.sandbox-id": `../${Path.basename(victim.root)}/victim`
      }
      Fs.writeFileSync(configPath, JSON.stringify(config))
      const joined = await create(attacker.flags, sub.dir, "intruder")
      assert.strictEqual(joined.code, 128, joined.output())
      assert.match(joined.output(), /sandbox-id.*is not a container id/)
      assert.deepStrictEqual(JSON.parse((await runsc([...victim.flags, "ps", "--format", "json", "victim"])).stdout), [1])
      assert.deepStrictEqual(leftovers(attacker.root), [])
      assert.strictEqual((await runsc([...victim.flags, "delete", "--force", "victim"])).code, 0)
    } finally {
      await removeDir(sub.dir)
    }
  })

  it("an id too long for its socket path is refused before anything starts", async () => {
    const { flags, root } = await freshRoot()
    const long = "x".repeat(120)
    const created = await runsc([...flags, "create", "--bundle", sleeper!.dir, long])
    assert.match(cliFailureLine(created), /too long/)
    assert.deepStrictEqual(leftovers(root), [])
    assert.deepStrictEqual(sandboxesUnder(root), [])
  })

  it("an id that does not exist never names the container it is a prefix of (start, kill, wait, exec, pause, delete)", async () => {
    const { flags } = await freshRoot()
    assert.strictEqual((await create(flags, sleeper!.dir, "L50")).code, 0)
    const failed = await create(flags, Path.join(work, "no-bundle-here"), "L5")
    assert.strictEqual(failed.code, 128)
    for (const args of [["start", "L5"], ["wait", "L5"], ["kill", "L5", "KILL"], ["exec", "L5", "echo_args"], ["pause", "L5"], ["delete", "L5"]]) {
      const r = await runsc([...flags, ...args])
      assert.match(cliFailureLine(r), /"L5" does not exist/, args.join(" "))
    }
    // delete --force of a container that does not exist succeeds, as runc's does (engines call
    // it after every delete), and touches nothing else.
    const forced = await runsc([...flags, "delete", "--force", "L5"])
    assert.strictEqual(forced.code, 0, describeResult(forced))
    assert.strictEqual((await statusOf(flags, "L50")).status, "created", "L50 was not touched")
    assert.strictEqual((await runsc([...flags, "delete", "L50"])).code, 0)
  })
})

describe("what the CLI knows of a sandbox", () => {
  it("alive but not answering (out of fds): state, kill, exec and delete say so and leave it running; list says unknown", { timeout: 180_000 }, async () => {
    const { flags } = await freshRoot()
    assert.strictEqual((await create(flags, sleeper!.dir, "mute")).code, 0)
    assert.strictEqual((await runsc([...flags, "start", "mute"])).code, 0)
    const { pid } = await statusOf(flags, "mute")
    // No new fd for the sandbox: it cannot accept a control connection.
    execFileSync("prlimit", ["--pid", `${pid}`, "--nofile=1:"])
    try {
      // Each waits for an answer as long as the CLI does (30 s) before it says so: all at once.
      const [state, kill, exec, del, list] = await Promise.all(
        [["state", "mute"], ["kill", "mute", "KILL"], ["exec", "mute", "echo_args"], ["delete", "mute"], ["list"]].map((args) =>
          runscUnlimited([...flags, ...args], 90_000)
        )
      )
      for (const r of [state, kill, exec, del]) assert.match(cliFailureLine(r), /mute.*alive but not answering/)
      assert.match(list.stdout, /^mute\t\d+\tunknown\t/m, describeResult(list))
      assert.isDefined(procInfo(pid), "the sandbox still runs")
    } finally {
      execFileSync("prlimit", ["--pid", `${pid}`, "--nofile=1024:"])
    }
    assert.strictEqual((await statusOf(flags, "mute")).status, "running")
    assert.strictEqual((await runsc([...flags, "delete", "--force", "mute"])).code, 0)
  })

  it("exec, ps, pause and kill into a sandbox that is gone say the container is stopped", async () => {
    const { flags } = await freshRoot()
    assert.strictEqual((await create(flags, sleeper!.dir, "gone")).code, 0)
    assert.strictEqual((await runsc([...flags, "start", "gone"])).code, 0)
    const { pid } = await statusOf(flags, "gone")
    process.kill(pid, "SIGKILL")
    await until("the sandbox is gone", () => procInfo(pid) === undefined || procInfo(pid)!.state === "Z", SETTLE_MS)
    for (const args of [["exec", "gone", "echo_args"], ["ps", "gone"], ["pause", "gone"], ["kill", "gone"]]) {
      assert.match(cliFailureLine(await runsc([...flags, ...args])), /container gone is stopped/, args.join(" "))
    }
    assert.strictEqual((await runsc([...flags, "delete", "gone"])).code, 0)
  })

  it("a start that fails leaves the container stopped: delete needs no --force", async () => {
    const { flags } = await freshRoot()
    // Found and compiled at create; at the start, the sandbox's memory cannot hold it. (A
    // program that is not there fails the create: engineContract.test.ts.)
    const broken = await makeBundle(["/bin/sleep", "600"], ["sleep"])
    const configPath = Path.join(broken.dir, "config.json")
    Fs.writeFileSync(configPath, JSON.stringify({ ...JSON.parse(Fs.readFileSync(configPath, "utf8")), linux: { resources: { memory: { limit: 65536 } } } }))
    try {
      assert.strictEqual((await create(flags, broken.dir, "nostart")).code, 0)
      assert.match(cliFailureLine(await runsc([...flags, "start", "nostart"])), /sleep: the sandbox's memory is full/)
      assert.strictEqual((await statusOf(flags, "nostart")).status, "stopped")
      assert.strictEqual((await runsc([...flags, "delete", "nostart"])).code, 0)
    } finally {
      await removeDir(broken.dir)
    }
  })
})
