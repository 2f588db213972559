/**
 * What engines (podman, containerd) send runc and rely on its answers to, through the CLI
 * binary: `--version` in runc's shape, `features`, the flags runc has that a wasm sandbox
 * accepts (with no effect, or refused until it has one), and `delete --force` of a container
 * that does not exist.
 */
import { assert, describe, it } from "@effect/vitest"
import { spawn, spawnSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { afterAll, beforeAll } from "vitest"
import {
  assembleWat,
  cliFailureLine,
  connectionsTo,
  createContainer,
  describeResult,
  killSandboxesUnder,
  makeBundle,
  makeTempDir,
  putExecutable,
  removeDir,
  runsc,
  runscBin,
  startRunsc,
  uniqueId,
  until
} from "./helpers.js"

/** Writes "to fd 4\n" to its fd 4 and "to fd 5\n" to its fd 5; exits with the sum of their errnos. */
const FD_WRITER_WAT = `
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "to fd 4\\n")
  (data (i32.const 32) "to fd 5\\n")
  (func (export "_start") (local $r i32)
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 8))
    (local.set $r (call $fd_write (i32.const 4) (i32.const 0) (i32.const 1) (i32.const 12)))
    (i32.store (i32.const 0) (i32.const 32))
    (local.set $r (i32.add (local.get $r) (call $fd_write (i32.const 5) (i32.const 0) (i32.const 1) (i32.const 12))))
    (call $proc_exit (local.get $r))))
`

let work = ""
let bundle: { readonly dir: string; readonly rootfs: string } | undefined

beforeAll(async () => {
  work = await makeTempDir("runsc-e2e-engine-")
  bundle = await makeBundle(["/bin/sleep", "600"], ["sleep"])
})

afterAll(async () => {
  killSandboxesUnder(work)
  await removeDir(work)
  if (bundle) await removeDir(bundle.dir)
})

const freshRoot = async () => ["--root", await Fs.promises.mkdtemp(Path.join(work, "root-"))]

describe("the answers engines read", () => {
  it("--version and -v print runc's first lines: runsc version X, spec: V", async () => {
    for (const flag of ["--version", "-v"]) {
      const r = await runsc([flag])
      assert.strictEqual(r.code, 0, describeResult(r))
      assert.match(r.stdout, /^runsc version \d+\.\d+\.\d+\nspec: 1\.0\.\d+\n$/)
    }
  })

  it("features prints the runtime-spec features document, naming only what runsc acts on", async () => {
    const r = await runsc(["features"])
    assert.strictEqual(r.code, 0, describeResult(r))
    const features = JSON.parse(r.stdout)
    assert.strictEqual(features.ociVersionMin, "1.0.0")
    assert.match(features.ociVersionMax, /^1\.\d+\.\d+$/)
    assert.deepStrictEqual(features.hooks, [], "no hook is run")
    assert.includeMembers(features.mountOptions, ["bind", "ro"])
    assert.includeMembers(features.linux.namespaces, ["pid", "mount"])
    assert.deepInclude(features.linux.cgroup, { v1: true, v2: true, systemd: true }, "the sandbox goes into the spec's cgroup")
    assert.isFalse(features.linux.seccomp.enabled)
  })

  it("delete --force of a container that does not exist succeeds (engines call it after every delete); without --force it fails", async () => {
    const flags = await freshRoot()
    const forced = await runsc([...flags, "delete", "--force", "never-created"])
    assert.strictEqual(forced.code, 0, describeResult(forced))
    assert.strictEqual(forced.stderr, "")
    assert.match(cliFailureLine(await runsc([...flags, "delete", "never-created"])), /"never-created" does not exist/)
  })
})

describe("a created container, as runc's", () => {
  it("kill TERM before start: the container stops with 143, its sandbox exits, wait reads the status, delete cleans up; kill 0 changes nothing", async () => {
    const flags = await freshRoot()
    const id = uniqueId("ek")
    assert.strictEqual((await createContainer(flags, bundle!.dir, id, work)).code, 0)
    const probe = await runsc([...flags, "kill", id, "0"])
    assert.strictEqual(probe.code, 0, describeResult(probe))
    assert.strictEqual(JSON.parse((await runsc([...flags, "state", id])).stdout).status, "created")
    const killed = await runsc([...flags, "kill", id, "TERM"])
    assert.strictEqual(killed.code, 0, describeResult(killed))
    await until("the container is stopped", async () => JSON.parse((await runsc([...flags, "state", id])).stdout).status === "stopped")
    const waited = await runsc([...flags, "wait", id])
    assert.deepStrictEqual(JSON.parse(waited.stdout), { id, exitStatus: 143 }, describeResult(waited))
    assert.match(cliFailureLine(await runsc([...flags, "start", id])), /stopped/)
    assert.strictEqual((await runsc([...flags, "delete", id])).code, 0)
    assert.deepStrictEqual((await runsc([...flags, "list", "-q"])).stdout, "")
  })
})

describe("create sets the process up, as runc's does", () => {
  it("a program that is missing or not wasm fails the create (its reason in the message and in --log, for engines to map to 127/126), leaving nothing", async () => {
    const flags = await freshRoot()
    for (const [args, reason] of [[["/bin/nowhere"], /\/bin\/nowhere: no such file or directory/], [["/etc/hostname"], /not a WebAssembly module/]] as const) {
      const broken = await makeBundle(args, [])
      Fs.mkdirSync(Path.join(broken.rootfs, "etc"))
      Fs.writeFileSync(Path.join(broken.rootfs, "etc", "hostname"), "e2e\n", { mode: 0o755 })
      const log = Path.join(work, `${uniqueId("log")}.json`)
      try {
        const created = await createContainer([...flags, "--log", log], broken.dir, uniqueId("ep"), work)
        assert.strictEqual(created.code, 128)
        assert.match(created.output(), reason)
        assert.match(JSON.parse(Fs.readFileSync(log, "utf8").trim().split("\n").at(-1)!).msg, reason)
        assert.deepStrictEqual((await runsc([...flags, "list", "-q"])).stdout, "")
      } finally {
        await removeDir(broken.dir)
      }
    }
  })
})

describe("waits engines make", () => {
  it("wait --pid N / --rootpid N: one process of the container (here an exec'd one), its status printed as wait prints the init's", async () => {
    const flags = await freshRoot()
    const id = uniqueId("ew")
    assert.strictEqual((await createContainer(flags, bundle!.dir, id, work)).code, 0)
    assert.strictEqual((await runsc([...flags, "start", id])).code, 0)
    const internal = Path.join(work, `${id}.pid`)
    const exec = await startRunsc([...flags, "exec", "--detach", "--internal-pid-file", internal, id, "/bin/sleep", "600"])
    await until("the exec wrote its pid file", () => Fs.existsSync(internal) && Fs.readFileSync(internal, "utf8") !== "")
    const pid = Fs.readFileSync(internal, "utf8")
    const socket = Path.join(flags[1]!, `${id}.sock`)
    const before = connectionsTo(socket)
    const waits = [startRunsc([...flags, "wait", "--pid", pid, id]), startRunsc([...flags, "wait", "--rootpid", pid, id])]
    // Both are waiting on the sandbox before the process is killed.
    await until("both waits are connected", () => connectionsTo(socket) >= before + 2)
    const killed = await runsc([...flags, "kill", "--pid", pid, id, "KILL"])
    assert.strictEqual(killed.code, 0, describeResult(killed))
    for (const wait of waits) {
      const r = await (await wait).result
      assert.strictEqual(r.code, 0, describeResult(r))
      assert.deepStrictEqual(JSON.parse(r.stdout), { id, exitStatus: 137 })
    }
    await (await exec).result
    assert.match(cliFailureLine(await runsc([...flags, "wait", "--pid", "1", "--rootpid", "1", id])), /--pid: cannot be used with --rootpid/)
    assert.match(cliFailureLine(await runsc([...flags, "wait", "--pid", "999", id])), /999/)
    assert.strictEqual((await runsc([...flags, "delete", "--force", id])).code, 0)
  })
})

describe("a detached exec's output, as conmon reads it", () => {
  it("the waiter --pid-file names exits only after the relay has written all of the process's output (an engine stops reading at its exit)", async () => {
    const flags = await freshRoot()
    const id = uniqueId("eo")
    const catBundle = await makeBundle(["/bin/sleep", "600"], ["sleep", "cat"])
    // The exec's stdout is a FIFO this test reads only when it chooses (a Node stream would read ahead).
    const fifo = Path.join(work, `${id}.fifo`)
    spawnSync("mkfifo", [fifo])
    const reader = Fs.openSync(fifo, Fs.constants.O_RDONLY | Fs.constants.O_NONBLOCK)
    const writer = Fs.openSync(fifo, "w")
    try {
      assert.strictEqual((await createContainer(flags, catBundle.dir, id, work)).code, 0)
      assert.strictEqual((await runsc([...flags, "start", id])).code, 0)
      // More than the FIFO holds, less than it and the relay's socket do: cat writes it all and
      // exits while the relay still holds what this test has not read.
      const payload = 100 * 1024
      const holder = Path.join(work, `${id}.holder`)
      const exec = spawn(runscBin, [...flags, "exec", "--detach", "--pid-file", holder, id, "/bin/cat"], { stdio: ["pipe", writer, "ignore"] })
      exec.stdin!.end("x".repeat(payload))
      Fs.closeSync(writer)
      await until("the detached exec wrote its pid file", () => Fs.existsSync(holder) && Fs.readFileSync(holder, "utf8") !== "")
      const waiter = Number(Fs.readFileSync(holder, "utf8"))
      const running = () => Fs.existsSync(`/proc/${waiter}`) && !Fs.readFileSync(`/proc/${waiter}/stat`, "utf8").includes(") Z ")
      // cat has written everything and exited (only the init is left); its waiter holds on.
      await until("cat has exited", async () => (await runsc([...flags, "ps", "--format", "json", id])).stdout.trim() === "[1]")
      await new Promise((resolve) => setTimeout(resolve, 300))
      assert.isTrue(running(), "the waiter waits while output is undelivered")
      let read = 0
      const buffer = Buffer.alloc(65536)
      await until("all of the output arrives", () => {
        for (;;) {
          try {
            const n = Fs.readSync(reader, buffer)
            if (n === 0) return read >= payload
            read += n
          } catch {
            return read >= payload
          }
        }
      })
      assert.strictEqual(read, payload)
      await until("the waiter exits once the output is written", () => !running())
      assert.strictEqual((await runsc([...flags, "delete", "--force", id])).code, 0)
    } finally {
      Fs.closeSync(reader)
      await removeDir(catBundle.dir)
    }
  })
})

describe("runc's flags that engines send", () => {
  it("global --systemd-cgroup and --rootless VALUE are accepted", async () => {
    const flags = await freshRoot()
    for (const extra of [["--systemd-cgroup"], ["--rootless", "true"], ["--rootless=auto"]]) {
      const r = await runsc([...extra, ...flags, "list"])
      assert.strictEqual(r.code, 0, `${extra.join(" ")}: ${describeResult(r)}`)
    }
  })

  it("create --no-pivot --no-new-keyring --preserve-fds 0 creates; --preserve-fds N passes the CLI's fds 3..3+N-1 as the process's 4..4+N-1, to run and to exec; a closed one is refused before anything starts", async () => {
    const flags = await freshRoot()
    const id = uniqueId("ef")
    const created = await createContainer(flags, bundle!.dir, id, work, ["--no-pivot", "--no-new-keyring", "--preserve-fds", "0"])
    assert.strictEqual(created.code, 0, created.output())
    // A guest that writes to its fds 4 and 5, as an init and as an exec'd process.
    const writer = await assembleWat(FD_WRITER_WAT, "fdwrite.wat")
    const withWriter = await makeBundle(["/bin/fdwrite"], [])
    await putExecutable(withWriter.rootfs, "bin/fdwrite", writer)
    await putExecutable(bundle!.rootfs, "bin/fdwrite", writer)
    /** runsc with its fds 3 and 4 open on two new host files; what the guest wrote in each. */
    const withTwoFiles = async (args: ReadonlyArray<string>) => {
      const files = ["a", "b"].map((name) => Path.join(work, `${uniqueId(name)}.out`))
      const fds = files.map((path) => Fs.openSync(path, "w"))
      const child = spawn(runscBin, [...flags, ...args], { stdio: ["ignore", "pipe", "pipe", ...fds] })
      fds.forEach((fd) => Fs.closeSync(fd))
      let output = ""
      child.stdout!.on("data", (d) => (output += d))
      child.stderr!.on("data", (d) => (output += d))
      const code = await new Promise<number | null>((resolve) => child.once("exit", resolve))
      return { code, output, written: () => files.map((path) => Fs.readFileSync(path, "utf8")) }
    }
    const run = await withTwoFiles(["run", "--bundle", withWriter.dir, "--preserve-fds", "2", uniqueId("pf")])
    assert.strictEqual(run.code, 0, run.output)
    assert.deepStrictEqual(run.written(), ["to fd 4\n", "to fd 5\n"])
    assert.strictEqual((await runsc([...flags, "start", id])).code, 0)
    const exec = await withTwoFiles(["exec", "--preserve-fds", "2", id, "/bin/fdwrite"])
    assert.strictEqual(exec.code, 0, exec.output)
    assert.deepStrictEqual(exec.written(), ["to fd 4\n", "to fd 5\n"])
    // Without them, the guest's fds 4 and 5 are not open (EBADF, 8, twice).
    assert.strictEqual((await runsc([...flags, "exec", id, "/bin/fdwrite"])).code, 16)
    // Fds past those given: some are Node's own by the time runsc looks (its event loop's), so
    // only a range with closed ones in it can be told from what an engine passed.
    const refused = await withTwoFiles(["create", "--bundle", bundle!.dir, "--preserve-fds", "100", uniqueId("ef")])
    assert.strictEqual(refused.code, 128)
    assert.match(refused.output, /--preserve-fds: fd \d+ is not open/)
    assert.match(cliFailureLine(await runsc([...flags, "exec", "--preserve-fds", "100", id, "/bin/sleep", "1"])), /--preserve-fds: fd \d+ is not open/)
    const list = await runsc([...flags, "list", "-q"])
    assert.deepStrictEqual(list.stdout, `${id}\n`, "the refused create left nothing")
    assert.strictEqual((await runsc([...flags, "delete", "--force", id])).code, 0)
    await removeDir(withWriter.dir)
  })
})
