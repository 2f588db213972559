/**
 * The control socket end to end, in one process: a Loader served on a Unix socket file, called
 * through the CLI's client — lifecycle calls, typed errors crossing the wire, the socket file's
 * safety (mode, stale and live sockets), and clients that misbehave.
 */
import { assert, describe, it } from "@effect/vitest"
import { exited, signaled } from "@runsc/abi"
import { type DonationFailed, donateTrees, openTrees } from "@runsc/kernel"
import { Loader } from "@runsc/loader"
import { defaultSpec, hostTreesOf, loadBundle } from "@runsc/spec"
import { Effect, Layer } from "effect"
import { spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { call, donationSocketOf, prepareSocketPath, serveControl } from "../src/index.js"

const repo = fileURLToPath(new URL("../../../", import.meta.url))

const tempDir = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "runsc-control-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

/** A bundle directory on disk: config.json running `args`, a rootfs with the C fixtures in /bin. */
const writeBundle = (dir: string, args: ReadonlyArray<string>) => {
  const rootfs = Path.join(dir, "rootfs")
  Fs.mkdirSync(Path.join(rootfs, "bin"), { recursive: true })
  for (const name of ["sleep", "exit", "echo_args"]) {
    Fs.copyFileSync(Path.join(repo, "test/fixtures/c", `${name}.wasm`), Path.join(rootfs, "bin", name))
    Fs.chmodSync(Path.join(rootfs, "bin", name), 0o755)
  }
  const template = defaultSpec()
  const spec = { ...template, root: { path: "rootfs" }, process: { ...template.process!, args, env: ["PATH=/bin"] }, mounts: [] }
  Fs.writeFileSync(Path.join(dir, "config.json"), JSON.stringify(spec))
  return dir
}

/** A sandbox (root container sleeping) served on `<dir>/sandbox.sock`; returns the socket path. */
const servedSandbox = Effect.gen(function*() {
  const dir = yield* tempDir
  const bundle = writeBundle(Path.join(dir, "root"), ["sleep", "600"])
  const socket = Path.join(dir, "run", "sandbox.sock")
  const devNull = yield* Effect.acquireRelease(Effect.sync(() => Fs.openSync("/dev/null", "r+")), (fd) => Effect.sync(() => Fs.closeSync(fd)))
  yield* Layer.build(
    serveControl(socket).pipe(
      Layer.provideMerge(Loader.layer({ containerId: "root", bundle, stdio: { stdin: devNull, stdout: devNull, stderr: devNull } }))
    )
  )
  return { dir, socket }
})

/** A sub-container created as the CLI creates one: its host trees donated, its bundle sent. */
const createSubcontainer = (socket: string, id: string, dir: string, stdio?: { readonly stdout?: string }) =>
  Effect.gen(function*() {
    const bundle = yield* loadBundle(dir)
    const donation = `token-${id}`
    yield* donateTrees(donationSocketOf(socket), donation, yield* openTrees(hostTreesOf(bundle).map((t) => t.path)))
    yield* call(socket, "CreateSubcontainer", (c) =>
      c.CreateSubcontainer({ id, bundle, donation, ...(stdio !== undefined ? { stdio } : {}) }))
  }).pipe(Effect.scoped)

describe("control socket", () => {
  it.scopedLive("the Loader's methods over the socket: start, sub-container with stdio files, ps, signal, wait, destroy", () =>
    Effect.gen(function*() {
      const { dir, socket } = yield* servedSandbox
      const rootPid = yield* call(socket, "StartRoot", (c) => c.StartRoot())
      assert.isAbove(rootPid, 0)
      const out = Path.join(dir, "web.out")
      Fs.writeFileSync(out, "")
      yield* createSubcontainer(socket, "web", writeBundle(Path.join(dir, "web"), ["echo_args", "over", "the", "socket"]))
      const pid = yield* call(socket, "StartSubcontainer", (c) => c.StartSubcontainer({ id: "web", stdio: { stdout: out } }))
      assert.deepStrictEqual(yield* call(socket, "Wait", (c) => c.Wait({ id: "web" }), "10 seconds"), exited(0))
      assert.strictEqual(Fs.readFileSync(out, "utf8"), "argv[0]=echo_args\nargv[1]=over\nargv[2]=the\nargv[3]=socket\n")
      assert.strictEqual(yield* call(socket, "RuntimeState", (c) => c.RuntimeState({ id: "web" })), "stopped")
      assert.isAbove(pid, rootPid)

      const sleeper = yield* call(socket, "ExecuteAsync", (c) => c.ExecuteAsync({ id: "root", argv: ["sleep", "600"], stdio: {} }))
      const ps = yield* call(socket, "Processes", (c) => c.Processes({ id: "root" }))
      assert.deepStrictEqual(ps.map((p) => p.pid), [rootPid, sleeper])
      assert.strictEqual(typeof ps[0]!.startedAt, "bigint")
      assert.strictEqual((yield* call(socket, "Event", (c) => c.Event({ id: "root" }))).pids.current, 2)
      yield* call(socket, "Signal", (c) => c.Signal({ id: "root", pid: sleeper, signo: 15, mode: "Process" }))
      assert.deepStrictEqual(yield* call(socket, "WaitPid", (c) => c.WaitPid({ id: "root", pid: sleeper }), "10 seconds"), signaled(15))
      yield* call(socket, "Pause", (c) => c.Pause())
      yield* call(socket, "Resume", (c) => c.Resume())
      yield* call(socket, "DestroySubcontainer", (c) => c.DestroySubcontainer({ id: "web" }))
      yield* call(socket, "DestroySubcontainer", (c) => c.DestroySubcontainer({ id: "web" }))
    }))

  it.scopedLive("failures cross the wire as the Loader's tagged errors, with their fields and messages", () =>
    Effect.gen(function*() {
      const { dir, socket } = yield* servedSandbox
      const notFound = yield* Effect.flip(call(socket, "Wait", (c) => c.Wait({ id: "nope" })))
      assert.strictEqual(notFound._tag, "ContainerNotFound")
      assert.strictEqual(notFound.message, "container nope not found")
      const badId = yield* Effect.flip(createSubcontainer(socket, "no/slash", writeBundle(Path.join(dir, "bad"), ["exit"])))
      assert.strictEqual(badId._tag, "InvalidContainerId")
      const caught = yield* call(socket, "Pause", (c) => c.Resume()).pipe(
        Effect.catchTag("NotPaused", (e) => Effect.succeed(`caught ${e.id}`))
      )
      assert.strictEqual(caught, "caught root")
      yield* call(socket, "StartRoot", (c) => c.StartRoot())
      const twice = yield* Effect.flip(call(socket, "StartRoot", (c) => c.StartRoot()))
      assert.strictEqual(twice._tag, "ContainerAlreadyStarted")
      const missing = yield* Effect.flip(call(socket, "ExecuteAsync", (c) => c.ExecuteAsync({ id: "root", argv: ["missing"], stdio: {} })))
      assert.strictEqual(missing._tag, "ExecNotFound")
      if (missing._tag === "ExecNotFound") assert.strictEqual(missing.errno, 44)
      const bundle = yield* loadBundle(writeBundle(Path.join(dir, "undonated"), ["exit"]))
      const undonated = yield* Effect.flip(
        call(socket, "CreateSubcontainer", (c) => c.CreateSubcontainer({ id: "undonated", bundle, donation: "never-sent" }))
      )
      assert.strictEqual(undonated._tag, "DonationFailed")
      assert.match(undonated.message, /no host trees were donated with token never-sent/)
      const noStdio = yield* Effect.flip(
        call(socket, "ExecuteAsync", (c) => c.ExecuteAsync({ id: "root", argv: ["exit"], stdio: { stdin: Path.join(dir, "absent") } }))
      )
      assert.strictEqual(noStdio._tag, "StdioUnavailable")
    }))

  it.scopedLive("donations: a flood of unclaimed ones is bounded and closed, one with the wrong number of trees is refused, a claimed one is found behind them", () =>
    Effect.gen(function*() {
      const { dir, socket } = yield* servedSandbox
      yield* call(socket, "StartRoot", (c) => c.StartRoot())
      const donations = donationSocketOf(socket)
      assert.strictEqual(Fs.statSync(donations).mode & 0o777, 0o600)
      const openFds = () => Fs.readdirSync("/proc/self/fd").length
      const before = openFds()
      // 100 donations nobody claims, 4 descriptors each, and connections that carry nothing.
      for (let i = 0; i < 100; i++) {
        yield* donateTrees(donations, `junk-${i}`, yield* openTrees([dir, dir, dir, dir])).pipe(Effect.scoped)
      }
      for (let i = 0; i < 20; i++) Net.createConnection({ path: donations }).on("error", () => {}).end()
      // A bundle with one bind mount, but one tree donated for it: refused, that one closed.
      const bundle = yield* loadBundle(writeBundle(Path.join(dir, "short"), ["exit"]))
      const bound = { ...bundle, spec: { ...bundle.spec, mounts: [{ destination: "/data", type: "bind", source: dir, options: ["rbind"] }] } }
      yield* donateTrees(donations, "short", yield* openTrees([bundle.rootPath])).pipe(Effect.scoped)
      const short = yield* Effect.flip(call(socket, "CreateSubcontainer", (c) => c.CreateSubcontainer({ id: "short", bundle: bound, donation: "short" })))
      assert.strictEqual(short._tag, "DonationFailed")
      assert.match(short.message, /1 descriptors were donated for the 2 host trees/)
      // Queued behind them all, a real one is claimed; what is kept unclaimed stays bounded.
      const out = Path.join(dir, "late.out")
      Fs.writeFileSync(out, "")
      yield* createSubcontainer(socket, "late", writeBundle(Path.join(dir, "late"), ["echo_args", "late"]))
      yield* call(socket, "StartSubcontainer", (c) => c.StartSubcontainer({ id: "late", stdio: { stdout: out } }))
      assert.deepStrictEqual(yield* call(socket, "Wait", (c) => c.Wait({ id: "late" }), "10 seconds"), exited(0))
      assert.strictEqual(Fs.readFileSync(out, "utf8"), "argv[0]=echo_args\nargv[1]=late\n")
      // 16 donations of 4 kept at most (the sandbox is this process), and a few of the CLI's own.
      assert.isAtMost(openFds() - before, 16 * 4 + 8)
      // The sandbox mounts what was donated and never opens the paths the spec names: a root
      // path that does not exist serves the donated tree.
      const real = yield* loadBundle(writeBundle(Path.join(dir, "real"), ["echo_args", "donated"]))
      yield* donateTrees(donations, "moved", yield* openTrees([real.rootPath])).pipe(Effect.scoped)
      const moved = { ...real, rootPath: Path.join(dir, "nowhere", "rootfs") }
      yield* call(socket, "CreateSubcontainer", (c) => c.CreateSubcontainer({ id: "moved", bundle: moved, donation: "moved", stdio: { stdout: out } }))
      yield* call(socket, "StartSubcontainer", (c) => c.StartSubcontainer({ id: "moved", stdio: {} }))
      assert.deepStrictEqual(yield* call(socket, "Wait", (c) => c.Wait({ id: "moved" }), "10 seconds"), exited(0))
      assert.strictEqual(Fs.readFileSync(out, "utf8"), "argv[0]=echo_args\nargv[1]=late\nargv[0]=echo_args\nargv[1]=donated\n")
    }))

  it.scopedLive("a donation queue filled by nobody's claims refuses more at once (typed, never a wait); a claim drains it and donations are taken again", () =>
    Effect.gen(function*() {
      const { dir, socket } = yield* servedSandbox
      const donations = donationSocketOf(socket)
      let queued = 0
      let refused: DonationFailed | undefined
      while (refused === undefined && queued < 1000) {
        const sent = yield* Effect.either(donateTrees(donations, `flood-${queued}`, yield* openTrees([dir])).pipe(Effect.scoped))
        if (sent._tag === "Left" && sent.left._tag === "DonationFailed") refused = sent.left
        else queued++
      }
      assert.isAtLeast(queued, 128)
      assert.match(refused!.message, /its queue of donations not yet taken is full/)
      // A claim takes what is queued (keeping 16 unclaimed, closing the rest) until its own.
      const bundle = yield* loadBundle(writeBundle(Path.join(dir, "after"), ["exit"]))
      const missing = yield* Effect.flip(call(socket, "CreateSubcontainer", (c) => c.CreateSubcontainer({ id: "x", bundle, donation: "absent" })))
      assert.strictEqual(missing._tag, "DonationFailed")
      yield* createSubcontainer(socket, "after", Path.join(dir, "after"))
    }))

  it.scopedLive("the socket file is 0600 in a 0700 directory; a stale one is replaced, a live one or a non-socket is never taken over", () =>
    Effect.gen(function*() {
      const { dir, socket } = yield* servedSandbox
      assert.strictEqual(Fs.statSync(socket).mode & 0o777, 0o600)
      assert.strictEqual(Fs.statSync(Path.dirname(socket)).mode & 0o777, 0o700, "the directory the server made")
      // A second sandbox on a live socket: refused, and the first keeps serving.
      const devNull = Fs.openSync("/dev/null", "r+")
      const second = yield* Effect.flip(Layer.build(
        serveControl(socket).pipe(
          Layer.provide(Loader.layer({ containerId: "other", bundle: writeBundle(Path.join(dir, "o"), ["sleep", "1"]), stdio: { stdout: devNull } }))
        )
      ))
      Fs.closeSync(devNull)
      assert.strictEqual(second._tag, "SocketInUse")
      assert.strictEqual(yield* call(socket, "RuntimeState", (c) => c.RuntimeState({ id: "root" })), "creating")

      // A socket file whose server was SIGKILLed: nobody accepts on it.
      const stale = Path.join(dir, "stale", "sandbox.sock")
      Fs.mkdirSync(Path.dirname(stale))
      yield* Effect.promise(() =>
        new Promise<void>((resolve) => {
          const child = spawn(process.execPath, ["-e", `require("net").createServer().listen(${JSON.stringify(stale)}, () => console.log("up"))`])
          child.stdout.once("data", () => child.kill("SIGKILL"))
          child.once("exit", () => resolve())
        })
      )
      assert.isTrue(Fs.lstatSync(stale).isSocket(), "the stale socket file is left behind")
      yield* Layer.build(serveControl(stale).pipe(Layer.provide(Loader.layer({ containerId: "s", bundle: writeBundle(Path.join(dir, "s"), ["sleep", "1"]) }))))
      assert.strictEqual(yield* call(stale, "RuntimeState", (c) => c.RuntimeState({ id: "s" })), "creating")

      const plain = Path.join(dir, "plain.sock")
      Fs.writeFileSync(plain, "not a socket")
      const refused = yield* Effect.flip(Layer.build(
        serveControl(plain).pipe(Layer.provide(Loader.layer({ containerId: "p", bundle: writeBundle(Path.join(dir, "p"), ["sleep", "1"]) })))
      ))
      assert.strictEqual(refused._tag, "SocketPathInvalid")
      assert.strictEqual(Fs.readFileSync(plain, "utf8"), "not a socket")
    }))

  it.scopedLive("a path too long for a socket address is refused, never bound under a name cut short", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const tooLong = yield* Effect.flip(prepareSocketPath(Path.join(dir, `${"x".repeat(120)}.sock`)))
      assert.strictEqual(tooLong._tag, "SocketPathInvalid")
      assert.deepStrictEqual(Fs.readdirSync(dir), [])
    }))

  it.scopedLive("a root container whose start failed is stopped to RuntimeState", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const socket = Path.join(dir, "run", "sandbox.sock")
      const bundle = writeBundle(Path.join(dir, "root"), ["not-there"])
      yield* Layer.build(serveControl(socket).pipe(Layer.provide(Loader.layer({ containerId: "root", bundle }))))
      assert.strictEqual(yield* call(socket, "RuntimeState", (c) => c.RuntimeState({ id: "root" })), "creating")
      const failed = yield* Effect.flip(call(socket, "StartRoot", (c) => c.StartRoot()))
      assert.strictEqual(failed._tag, "ExecNotFound")
      assert.strictEqual(yield* call(socket, "RuntimeState", (c) => c.RuntimeState({ id: "root" })), "stopped")
    }))

  it.scopedLive("no sandbox: SandboxUnreachable at once; garbage and oversized frames fail only their own connection", () =>
    Effect.gen(function*() {
      const { dir, socket } = yield* servedSandbox
      const gone = yield* Effect.flip(call(Path.join(dir, "nothing.sock"), "Wait", (c) => c.Wait({ id: "x" })))
      assert.strictEqual(gone._tag, "SandboxUnreachable")
      const junk = (data: string | Buffer) =>
        Effect.promise(() =>
          new Promise<string>((resolve) => {
            const conn = Net.createConnection({ path: socket })
            let reply = ""
            conn.on("data", (d) => (reply += d.toString()))
            conn.on("error", () => resolve(reply))
            conn.on("close", () => resolve(reply))
            conn.write(data)
            setTimeout(() => conn.end(), 200)
          })
        )
      yield* junk("this is not json\n{\"_tag\":\"Request\",\"tag\":\"NoSuchMethod\",\"id\":\"1\",\"payload\":{},\"headers\":[]}\n")
      yield* junk(Buffer.alloc(2 * 1024 * 1024, 0x41))
      // The server is still serving everyone else.
      assert.strictEqual(yield* call(socket, "RuntimeState", (c) => c.RuntimeState({ id: "root" })), "creating")
    }))

  it.scopedLive("a frame that is not a request fails its connection: answered or closed, never left hanging; the server serves on", () =>
    Effect.gen(function*() {
      const { socket } = yield* servedSandbox
      const request = (id: string) => `${JSON.stringify({ _tag: "Request", id, tag: "RuntimeState", payload: { id: "root" }, headers: [] })}\n`
      /**
       * Sends `first`, then a valid request on the same connection; resolves with what came back
       * once the connection closes or answers that request (bounded: "did not hang" only).
       */
      const session = (first: string) =>
        Effect.async<{ readonly reply: string; readonly closed: boolean }>((resume) => {
          const conn = Net.createConnection({ path: socket })
          let reply = ""
          let settled = false
          const settle = (closed: boolean) => {
            if (settled) return
            settled = true
            conn.destroy()
            resume(Effect.succeed({ reply, closed }))
          }
          conn.on("data", (d) => {
            reply += d.toString()
            if (reply.includes("\"requestId\":\"2\"")) settle(false)
          })
          conn.on("error", () => settle(true))
          conn.on("close", () => settle(true))
          conn.write(first)
          const later = setTimeout(() => conn.writable && conn.write(request("2")), 100)
          const bound = setTimeout(() => settle(false), 20_000)
          return Effect.sync(() => {
            clearTimeout(later)
            clearTimeout(bound)
            conn.destroy()
          })
        })
      for (const frame of ["this is not json\n", "null\n", "42\n", "[]\n", "{}\n", "{\"_tag\":\"Request\"}\n"]) {
        const { closed, reply } = yield* session(frame)
        const answered = reply.includes("\"requestId\":\"2\"")
        assert.isTrue(closed || answered, `${JSON.stringify(frame)}: the connection neither closed nor answered the next request: ${reply}`)
        // The server is still serving everyone else.
        assert.strictEqual(yield* call(socket, "RuntimeState", (c) => c.RuntimeState({ id: "root" })), "creating", JSON.stringify(frame))
      }
    }))

  it.scopedLive("a sandbox that closes the connection as a call goes out is SandboxUnreachable, never a defect", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const socket = Path.join(dir, "closing.sock")
      // Accepts and at once destroys every connection, as a sandbox exiting under a call does.
      const server = yield* Effect.acquireRelease(
        Effect.async<Net.Server>((resume) => {
          const s = Net.createServer((conn) => conn.destroy())
          s.listen(socket, () => resume(Effect.succeed(s)))
        }),
        (s) => Effect.async<void>((resume) => {
          s.close(() => resume(Effect.void))
        })
      )
      assert.isTrue(server.listening)
      for (let i = 0; i < 20; i++) {
        const exit = yield* Effect.exit(call(socket, "Wait", (c) => c.Wait({ id: "x" }), "2 seconds"))
        assert.isTrue(exit._tag === "Failure" && exit.cause._tag === "Fail", `call ${i}: ${String(exit)}`)
        if (exit._tag === "Failure" && exit.cause._tag === "Fail") assert.strictEqual(exit.cause.error._tag, "SandboxUnreachable")
      }
    }))
})
