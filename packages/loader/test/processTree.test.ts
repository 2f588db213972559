/**
 * Guests that create processes (docs/process-api.md), seen through the Loader: task trees,
 * reaping, orphans, fork bombs under destroy and kill --all, and a job-control shell running
 * pipelines — RUNSC.md scenarios 7, 20 and 21 with real C guests on worker threads.
 */
import { assert, describe, it } from "@effect/vitest"
import { exited, signaled } from "@runsc/abi"
import { Context, Effect, Layer } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { Loader, type LoaderShape } from "../src/index.js"
import { makeBundle, makeOutput, makeSandbox, startSub, tempDir, waitUntil } from "./helpers.js"

const count = (loader: LoaderShape, id: string) => Effect.map(loader.processes(id), (ps) => ps.length)

const nodeLines = (text: string) => text.split("\n").filter((l) => l.startsWith("node "))

describe("guest process trees", () => {
  it.scopedLive("reaper: children's exit codes and signals come back through proc_join; WNOHANG; ECHILD", () =>
    Effect.gen(function*() {
      const bundle = yield* makeBundle({ args: ["reaper", "4"] })
      const out = yield* makeOutput
      const loader = yield* Effect.map(
        Layer.build(Loader.layer({ containerId: "root", bundle, stdio: { stdout: out.fd, stderr: out.fd } })),
        Context.get(Loader)
      )
      yield* loader.startRoot
      assert.deepStrictEqual(yield* loader.waitExit, exited(0))
      assert.strictEqual(
        out.read(),
        [
          "child 0 exited 0",
          "child 1 exited 1",
          "child 2 killed 15",
          "child 3 exited 3",
          "no children: ECHILD",
          "nohang 0",
          "sleeper exited 0",
          "reaped 4",
          ""
        ].join("\n")
      )
      // Every child was reaped by its parent: nothing is left in the process table.
      assert.strictEqual((yield* loader.sandboxStats).processes, 0)
    }))

  it.scopedLive("scenario 7: kill --pid of the last process of a 4-process chain leaves 3; ps shows the parent links", () =>
    Effect.gen(function*() {
      const loader = yield* makeSandbox
      const { out, pid } = yield* startSub(loader, "chain", { args: ["task_tree", "3", "1", "600"] })
      yield* waitUntil(Effect.map(count(loader, "chain"), (n) => n === 4), "the chain has 4 processes")
      yield* waitUntil(Effect.sync(() => nodeLines(out.read()).length === 4), "every node printed")
      const ps = yield* loader.processes("chain")
      // A chain: each process's parent is the previous one; the init has none in the sandbox.
      const byParent = new Map(ps.map((p) => [p.ppid, p]))
      const chain = [ps.find((p) => p.pid === pid)!]
      while (byParent.has(chain.at(-1)!.pid)) chain.push(byParent.get(chain.at(-1)!.pid)!)
      assert.strictEqual(chain.length, 4)
      assert.strictEqual(chain[0]!.ppid, 0)
      assert.deepStrictEqual(chain.map((p) => p.argv[1]), ["3", "2", "1", "0"])
      yield* loader.signalContainer("chain", chain[3]!.pid, 9, "Process")
      yield* waitUntil(Effect.map(count(loader, "chain"), (n) => n === 3), "3 processes remain")
      yield* Effect.sleep("200 millis")
      assert.strictEqual(yield* count(loader, "chain"), 3)
      yield* loader.destroySubcontainer("chain")
    }))

  it.scopedLive("an orphan goes to its namespace's init when that init is in its container", () =>
    Effect.gen(function*() {
      const loader = yield* makeSandbox
      yield* startSub(loader, "ns", { args: ["task_tree", "2", "1", "600"], pidNamespace: {} })
      yield* waitUntil(Effect.map(count(loader, "ns"), (n) => n === 3), "3 processes")
      const [init, middle, leaf] = yield* loader.processes("ns")
      assert.strictEqual(middle!.ppid, init!.pid)
      assert.strictEqual(leaf!.ppid, middle!.pid)
      yield* loader.signalContainer("ns", middle!.pid, 9, "Process")
      yield* waitUntil(
        Effect.map(loader.processes("ns"), (ps) => ps.length === 2 && ps[1]!.ppid === init!.pid),
        "the leaf reparented to the init"
      )
      yield* loader.destroySubcontainer("ns")
    }))

  it.scopedLive("scenario 21: kill --all SIGKILL on a sub-container of 40 processes, also after its init died", () =>
    Effect.gen(function*() {
      const loader = yield* makeSandbox
      const rootCount = yield* count(loader, "root")
      for (const initFirst of [false, true]) {
        const id = initFirst ? "tree-orphaned" : "tree"
        const { pid } = yield* startSub(loader, id, { args: ["task_tree", "3", "3", "600"] })
        yield* waitUntil(Effect.map(count(loader, id), (n) => n === 40), `${id} has 40 processes`)
        if (initFirst) {
          yield* loader.signalContainer(id, pid, 9, "Process")
          yield* waitUntil(Effect.map(count(loader, id), (n) => n === 39), "the init is gone, its descendants are not")
        }
        yield* loader.signalContainer(id, 0, 9, "AllProcesses").pipe(
          // With the init gone, runsc still signals the rest of the container.
          Effect.catchTag("ContainerNotStarted", () => Effect.void)
        )
        yield* waitUntil(Effect.map(count(loader, id), (n) => n === 0), `${id} has no process left`)
        assert.strictEqual(yield* count(loader, "root"), rootCount, "root keeps all of its own")
        yield* loader.destroySubcontainer(id)
      }
    }), { timeout: 60_000 })

  it.scopedLive("scenario 20: destroying a sub-container running a fork bomb (and an exec'd second one) leaves only root's init", () =>
    Effect.gen(function*() {
      const bundle = yield* makeBundle({ args: ["sleep", "600"] })
      const out = yield* makeOutput
      const loader = yield* Effect.map(
        Layer.build(
          Loader.layer({
            containerId: "root",
            bundle,
            stdio: { stdout: out.fd, stderr: out.fd },
            // The bomb runs into the sandbox's process limit (EAGAIN) and keeps retrying.
            kernel: { maxProcesses: 48 }
          })
        ),
        Context.get(Loader)
      )
      const rootPid = yield* loader.startRoot
      const { out: bombOut } = yield* startSub(loader, "bomb", { args: ["fork_bomb"] })
      yield* loader.execute({ containerId: "bomb", argv: ["fork_bomb"] })
      yield* waitUntil(Effect.map(loader.sandboxStats, (s) => s.processes >= 48), "the bombs filled the sandbox")
      yield* loader.destroySubcontainer("bomb")
      assert.deepStrictEqual((yield* loader.allProcesses).map((p) => p.pid), [rootPid])
      yield* loader.destroySubcontainer("bomb")
      // The limit was hit (EAGAIN), never anything else.
      assert.notMatch(bombOut.read(), /fork_bomb: spawn:/)
      const stats = yield* loader.sandboxStats
      assert.strictEqual(stats.processes, 1)
    }), { timeout: 60_000 })
})

describe("linux.resources.pids.limit", () => {
  it.scopedLive("bounds a container's processes, execs included: spawns past it fail EAGAIN, an exec fails PidsLimitReached; its sibling is unaffected", () =>
    Effect.gen(function*() {
      const loader = yield* makeSandbox
      const { out } = yield* startSub(loader, "bomb", { args: ["fork_bomb"], resources: { pids: { limit: 12 } } })
      yield* waitUntil(Effect.map(count(loader, "bomb"), (n) => n === 12), "the bomb reached its limit")
      // It keeps trying (EAGAIN, every 10 ms) and never gets past it.
      yield* Effect.sleep("300 millis")
      assert.strictEqual(yield* count(loader, "bomb"), 12)
      assert.notMatch(out.read(), /fork_bomb: spawn:/, "every refused spawn was EAGAIN")
      const refused = yield* Effect.flip(loader.execute({ containerId: "bomb", argv: ["exit"] }))
      assert.strictEqual(refused._tag, "PidsLimitReached")
      assert.match(refused.message, /holds 12 processes, its pids limit/)
      // A sibling without a limit (and the sandbox) still starts processes.
      yield* startSub(loader, "other", { args: ["fork_bomb", "20"] })
      yield* waitUntil(Effect.map(count(loader, "other"), (n) => n > 12), "the sibling grew past the bomb's limit")
      yield* loader.destroySubcontainer("bomb")
      yield* loader.destroySubcontainer("other")
    }), { timeout: 60_000 })

  it.scopedLive("0 and -1 are no limit, as in runc", () =>
    Effect.gen(function*() {
      const loader = yield* makeSandbox
      for (const limit of [0, -1]) {
        const id = `unlimited${limit}`
        yield* startSub(loader, id, { args: ["fork_bomb", "3"], resources: { pids: { limit } } })
        yield* waitUntil(Effect.map(count(loader, id), (n) => n > 3), `${id} grew past 3`)
        yield* loader.destroySubcontainer(id)
      }
    }), { timeout: 60_000 })
})

describe("a job-control shell", () => {
  const runShell = (script: string) =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const stdinPath = Path.join(dir, "script")
      Fs.writeFileSync(stdinPath, script)
      const stdin = yield* Effect.acquireRelease(Effect.sync(() => Fs.openSync(stdinPath, "r")), (fd) => Effect.sync(() => Fs.closeSync(fd)))
      const bundle = yield* makeBundle({ args: ["tsh"] })
      const out = yield* makeOutput
      const err = yield* makeOutput
      const loader = yield* Effect.map(
        Layer.build(Loader.layer({ containerId: "root", bundle, stdio: { stdin, stdout: out.fd, stderr: err.fd } })),
        Context.get(Loader)
      )
      yield* loader.startRoot
      const status = yield* loader.waitExit
      return { status, stdout: out.read(), stderr: err.read() }
    })

  it.scopedLive("runs pipelines: a | b | c, with EOF reaching each stage once its writers have exited", () =>
    Effect.gen(function*() {
      const r = yield* runShell(
        ["echo_args one two | cat | cat", "echo hello | cat", "exit 3 | cat", "cat /etc/passwd | cat", "missing_command", "exit 5"].join("\n") +
          "\n"
      )
      assert.strictEqual(
        r.stdout,
        ["argv[0]=echo_args", "argv[1]=one", "argv[2]=two", "hello", "root:x:0:0:root:/root:/bin/sh", ""].join("\n")
      )
      assert.match(r.stderr, /tsh: missing_command: /)
      assert.deepStrictEqual(r.status, exited(5))
    }))

  it.scopedLive("job control without a terminal: background jobs, jobs, kill %N, wait", () =>
    Effect.gen(function*() {
      const r = yield* runShell(["sleep 600 &", "sleep 600 | cat &", "jobs", "kill -15 %1", "kill -9 %2", "wait", "jobs", "exit 0"].join("\n") + "\n")
      const lines = r.stdout.split("\n").filter((l) => l.length > 0 && l !== "sleeping")
      assert.deepStrictEqual(lines, [
        "[1] Running sleep 600",
        "[2] Running sleep 600 | cat",
        "[1] Killed by signal 15 sleep 600",
        // The pipeline's status is its last command's: cat, killed with its group.
        "[2] Killed by signal 9 sleep 600 | cat"
      ])
      assert.deepStrictEqual(r.status, exited(0))
    }))
})

describe("a terminal's foreground process group", () => {
  it.scopedLive("scenario 28: SIGTERM to the foreground group kills the foreground job, not the shell; SIGKILL then ends the shell", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const script = Path.join(dir, "script")
      // The second job keeps the shell busy (and in the background) once the first is gone.
      Fs.writeFileSync(script, "sleep 600\nsleep 601\n")
      const stdin = yield* Effect.acquireRelease(Effect.sync(() => Fs.openSync(script, "r")), (fd) => Effect.sync(() => Fs.closeSync(fd)))
      const bundle = yield* makeBundle({ args: ["tsh"], terminal: true })
      const out = yield* makeOutput
      const loader = yield* Effect.map(
        Layer.build(Loader.layer({ containerId: "root", bundle, stdio: { stdin, stdout: out.fd, stderr: out.fd } })),
        Context.get(Loader)
      )
      const shell = yield* loader.startRoot
      // A job runs once the shell has given it the terminal: its group is the foreground one.
      const jobRunning = (arg: string) =>
        Effect.map(loader.processes("root"), (ps) =>
          ps.some((p) => p.argv[1] === arg && p.state === "running" && p.pgid === p.tpgid && p.pgid !== shell))
      yield* waitUntil(jobRunning("600"), "the first job runs in the foreground")
      yield* loader.signalContainer("root", 0, 15, "ForegroundProcessGroup")
      yield* waitUntil(jobRunning("601"), "the shell saw its job die and started the next")
      assert.match(out.read(), /\[1\] Killed by signal 15 sleep 600/)
      const ps = yield* loader.processes("root")
      assert.isTrue(ps.some((p) => p.pid === shell), "the shell is alive")
      assert.isFalse(ps.some((p) => p.argv[1] === "600"), "the first job is gone")
      yield* loader.signalContainer("root", 0, 9, "Process")
      assert.deepStrictEqual(yield* loader.waitExit, signaled(9))
    }))

  it.scopedLive("/dev/tty opens the controlling terminal of a process started with one, and no other", () =>
    Effect.gen(function*() {
      const loader = yield* makeSandbox
      const dir = yield* tempDir
      Fs.writeFileSync(Path.join(dir, "input"), "typed\n")
      const run = (id: string, terminal: boolean) =>
        Effect.gen(function*() {
          const bundle = yield* makeBundle({ args: ["devices"], terminal })
          const out = yield* makeOutput
          const stdin = yield* Effect.acquireRelease(
            Effect.sync(() => Fs.openSync(Path.join(dir, "input"), "r")),
            (fd) => Effect.sync(() => Fs.closeSync(fd))
          )
          yield* loader.createSubcontainer(id)
          yield* loader.startSubcontainer({ containerId: id, bundle, stdio: { stdin, stdout: out.fd, stderr: out.fd } })
          assert.deepStrictEqual(yield* loader.wait(id), exited(0))
          return out.read()
        })
      assert.match(yield* run("tty", true), /^stdin typed\n(.|\n)*^tty ok$/m)
      assert.match(yield* run("notty", false), /^tty ENXIO$/m)
    }))

  it.scopedLive("ForegroundProcessGroup without a terminal is NoTerminal; with one it reaches the shell while it is in the foreground", () =>
    Effect.gen(function*() {
      const loader = yield* makeSandbox
      const fail = yield* Effect.flip(loader.signalContainer("root", 0, 15, "ForegroundProcessGroup"))
      assert.strictEqual(fail._tag, "NoTerminal")
      const pid = yield* loader.execute({ containerId: "root", argv: ["sleep", "600"], terminal: true })
      yield* loader.signalContainer("root", pid, 15, "ForegroundProcessGroup")
      assert.deepStrictEqual(yield* loader.waitPid("root", pid), signaled(15))
    }))
})

describe("stdio through pipes inside the sandbox", () => {
  it.scopedLive("exec a | exec b through loader.pipe; and a pipe read from the host side until EOF", () =>
    Effect.gen(function*() {
      const loader = yield* makeSandbox
      const out = yield* makeOutput
      const pipe = yield* loader.pipe
      const writer = yield* loader.execute({ containerId: "root", argv: ["echo_args", "through", "the", "sandbox"], stdio: { stdout: pipe.write } })
      const reader = yield* loader.execute({ containerId: "root", argv: ["cat"], stdio: { stdin: pipe.read, stdout: out.fd } })
      assert.deepStrictEqual(yield* loader.waitPid("root", writer), exited(0))
      // cat sees EOF once the only process holding the write end has exited.
      assert.deepStrictEqual(yield* loader.waitPid("root", reader), exited(0))
      assert.strictEqual(out.read(), "argv[0]=echo_args\nargv[1]=through\nargv[2]=the\nargv[3]=sandbox\n")

      const captured = yield* loader.pipe
      yield* loader.execute({ containerId: "root", argv: ["echo_args", "captured"], stdio: { stdout: captured.write } })
      const chunks: Array<string> = []
      for (;;) {
        const chunk = yield* captured.read.read(4096)
        if (chunk.length === 0) break
        chunks.push(new TextDecoder().decode(chunk))
      }
      yield* captured.read.close
      assert.strictEqual(chunks.join(""), "argv[0]=echo_args\nargv[1]=captured\n")
    }))
})

describe("a container's process count", () => {
  it.scopedLive("includes what its guests spawned, and destroy waits for all of them", () =>
    Effect.gen(function*() {
      const loader = yield* makeSandbox
      yield* startSub(loader, "t", { args: ["task_tree", "1", "5", "600"] })
      yield* waitUntil(Effect.map(count(loader, "t"), (n) => n === 6), "6 processes")
      assert.strictEqual((yield* loader.event("t")).pids.current, 6)
      yield* loader.destroySubcontainer("t")
      const stats = yield* loader.sandboxStats
      assert.strictEqual(stats.processes, 1)
      assert.strictEqual((yield* Effect.flip(loader.processes("t")))._tag, "ContainerNotFound")
    }))
})
