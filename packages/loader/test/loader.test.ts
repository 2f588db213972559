import { assert, describe, it } from "@effect/vitest"
import { exited, signaled } from "@runsc/abi"
import { defaultSpec } from "@runsc/spec"
import { Context, Effect, Exit, Fiber, Layer, Scope } from "effect"
import { spawnSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { Loader, type LoaderArgs } from "../src/index.js"
import { waitUntil } from "./helpers.js"

const repo = fileURLToPath(new URL("../../../", import.meta.url))
const fixture = (name: string) => Path.join(repo, "test/fixtures/c", name)

/** A temp rootfs holding the given fixtures under /bin, plus /etc/passwd; removed with the scope. */
const makeRoot = (programs: ReadonlyArray<string>, passwd = "root:x:0:0:root:/root:/bin/sh\n") =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const root = Fs.mkdtempSync(Path.join(Os.tmpdir(), "runsc-loader-"))
      Fs.mkdirSync(Path.join(root, "bin"))
      Fs.mkdirSync(Path.join(root, "etc"))
      Fs.writeFileSync(Path.join(root, "etc/passwd"), passwd)
      for (const p of programs) Fs.copyFileSync(fixture(`${p}.wasm`), Path.join(root, "bin", p))
      for (const p of programs) Fs.chmodSync(Path.join(root, "bin", p), 0o755)
      return root
    }),
    (root) => Effect.sync(() => Fs.rmSync(root, { recursive: true, force: true }))
  )

/** Captures the guest's stdout in a temp file. */
const makeOutput = Effect.acquireRelease(
  Effect.sync(() => {
    const path = Path.join(Os.tmpdir(), `runsc-out-${process.pid}-${Math.random().toString(16).slice(2)}`)
    return { path, fd: Fs.openSync(path, "w+") }
  }),
  ({ fd, path }) => Effect.sync(() => {
    Fs.closeSync(fd)
    Fs.rmSync(path, { force: true })
  })
)

const loaderArgs = (root: string, args: ReadonlyArray<string>, stdout: number, env: ReadonlyArray<string> = []): LoaderArgs => {
  const spec = defaultSpec(args)
  return {
    containerId: "test",
    bundle: { dir: root, rootPath: root, spec: { ...spec, process: { ...spec.process!, args: [args[0]!, ...args.slice(1)], env: ["PATH=/bin", ...env] } } },
    stdio: { stdout, stderr: stdout }
  }
}

/** The Loader service, its layer built in the test's scope (released when the test ends). */
const buildLoader = (args: LoaderArgs) => Effect.map(Layer.build(Loader.layer(args)), Context.get(Loader))

describe("Loader", () => {
  it.scopedLive("runs the root container and reports its exit code; waitExit is repeatable", () =>
    Effect.gen(function*() {
      const root = yield* makeRoot(["exit"])
      const out = yield* makeOutput
      const loader = yield* buildLoader(loaderArgs(root, ["exit", "123"], out.fd))
      const pid = yield* loader.startRoot
      assert.strictEqual(pid, 1)
      const waiters = yield* Effect.all([loader.waitExit, loader.waitExit, loader.waitExit], { concurrency: "unbounded" })
      assert.deepStrictEqual(waiters, [exited(123), exited(123), exited(123)])
      assert.deepStrictEqual(yield* loader.waitExit, exited(123))
    }))

  it.scopedLive("fails typed before start, and on a second start", () =>
    Effect.gen(function*() {
      const root = yield* makeRoot(["exit"])
      const out = yield* makeOutput
      const loader = yield* buildLoader(loaderArgs(root, ["exit"], out.fd))
      assert.strictEqual((yield* Effect.flip(loader.waitExit))._tag, "ContainerNotStarted")
      assert.strictEqual((yield* Effect.flip(loader.signal(15)))._tag, "ContainerNotStarted")
      yield* loader.startRoot
      assert.strictEqual((yield* Effect.flip(loader.startRoot))._tag, "ContainerAlreadyStarted")
      assert.deepStrictEqual(yield* loader.waitExit, exited(0))
    }))

  it.scopedLive("a signal that ends a process stops a created root container: the sandbox's wait returns its status", () =>
    Effect.gen(function*() {
      const root = yield* makeRoot(["exit"])
      const out = yield* makeOutput
      const loader = yield* buildLoader(loaderArgs(root, ["exit"], out.fd))
      const sandbox = yield* Effect.fork(loader.awaitRootExit)
      yield* loader.signalContainer(loader.containerId, 0, 15, "Process")
      assert.deepStrictEqual(yield* Fiber.join(sandbox), signaled(15))
      assert.deepStrictEqual(yield* loader.waitExit, signaled(15))
      assert.strictEqual((yield* Effect.flip(loader.startRoot))._tag, "ContainerStopped")
    }))

  it.scopedLive("prepareRoot sets the init up as runc's create does: a missing program fails there; a prepared one starts as prepared", () =>
    Effect.gen(function*() {
      const root = yield* makeRoot(["exit"])
      const out = yield* makeOutput
      const missing = yield* buildLoader(loaderArgs(root, ["/bin/nowhere"], out.fd))
      const refused = yield* Effect.flip(missing.prepareRoot)
      assert.strictEqual(refused._tag, "ExecNotFound")
      assert.match(refused.message, /no such file or directory/)
      assert.strictEqual((yield* Effect.flip(missing.startRoot))._tag, "ContainerAlreadyStarted", "a failed prepare leaves it stopped")
      const loader = yield* buildLoader(loaderArgs(root, ["exit", "42"], out.fd))
      yield* loader.prepareRoot
      assert.strictEqual((yield* Effect.flip(loader.prepareRoot))._tag, "ContainerAlreadyStarted", "prepared once")
      assert.deepStrictEqual(yield* loader.allProcesses, [], "nothing runs before the start")
      assert.strictEqual(yield* loader.startRoot, 1)
      assert.deepStrictEqual(yield* loader.waitExit, exited(42))
    }))

  it.scopedLive("concurrent startRoot calls start the init exactly once", () =>
    Effect.gen(function*() {
      const root = yield* makeRoot(["exit"])
      const out = yield* makeOutput
      const loader = yield* buildLoader(loaderArgs(root, ["exit", "5"], out.fd))
      const results = yield* Effect.all(Array.from({ length: 5 }, () => Effect.either(loader.startRoot)), { concurrency: "unbounded" })
      assert.strictEqual(results.filter((r) => r._tag === "Right").length, 1)
      assert.deepStrictEqual(
        results.filter((r) => r._tag === "Left").map((r) => r._tag === "Left" && r.left._tag),
        Array(4).fill("ContainerAlreadyStarted")
      )
      assert.deepStrictEqual(yield* loader.waitExit, exited(5))
    }))

  it.scopedLive("an invalid container id is refused before anything runs", () =>
    Effect.gen(function*() {
      const root = yield* makeRoot(["exit"])
      const error = yield* Effect.flip(buildLoader({ ...loaderArgs(root, ["exit"], 1), containerId: "../x" }))
      assert.strictEqual(error._tag, "InvalidContainerId")
    }))

  it.scopedLive("typed errors for a missing program, a non-wasm file and a bad cwd", () =>
    Effect.gen(function*() {
      const root = yield* makeRoot([])
      Fs.writeFileSync(Path.join(root, "bin/script"), "echo hi\n", { mode: 0o755 })
      const out = yield* makeOutput
      const start = (args: ReadonlyArray<string>, cwd = "/") => {
        const base = loaderArgs(root, args, out.fd)
        const bundle = base.bundle as Exclude<LoaderArgs["bundle"], string>
        const spec = { ...bundle.spec, process: { ...bundle.spec.process!, cwd } }
        return Effect.flip(Effect.scoped(Effect.flatMap(buildLoader({ ...base, bundle: { ...bundle, spec } }), (l) => l.startRoot)))
      }
      assert.strictEqual((yield* start(["nothere"]))._tag, "ExecNotFound")
      assert.strictEqual((yield* start(["/bin/script"]))._tag, "NotWasm")
      assert.strictEqual((yield* start(["/bin/script"], "/nope"))._tag, "InvalidCwd")
      // A spec without a process (the OCI schema allows one) names what is missing.
      const base = loaderArgs(root, ["exit"], out.fd)
      const { process: _, ...noProcess } = (base.bundle as Exclude<LoaderArgs["bundle"], string>).spec
      const missing = yield* Effect.flip(Effect.scoped(Effect.flatMap(
        buildLoader({ ...base, bundle: { ...(base.bundle as Exclude<LoaderArgs["bundle"], string>), spec: noProcess } }),
        (l) => l.startRoot
      )))
      assert.strictEqual(missing._tag, "InvalidSpec")
      assert.strictEqual(missing.message, "invalid config.json: process: required field is missing")
    }))

  it.scopedLive("HOME comes from the container's /etc/passwd when the spec has none", () =>
    Effect.gen(function*() {
      const root = yield* makeRoot(["print_env"], "root:x:0:0:root:/home/admin:/bin/sh\n")
      const out = yield* makeOutput
      const loader = yield* buildLoader(loaderArgs(root, ["print_env"], out.fd, ["A=1", "A=2"]))
      yield* loader.startRoot
      assert.deepStrictEqual(yield* loader.waitExit, exited(0))
      const env = Fs.readFileSync(out.path, "utf8").trim().split("\n")
      assert.deepStrictEqual(env, ["PATH=/bin", "A=2", "HOME=/home/admin"])
    }))

  it.scopedLive("a signal reaches a sleeping root init", () =>
    Effect.gen(function*() {
      const root = yield* makeRoot(["sleep"])
      const out = yield* makeOutput
      const loader = yield* buildLoader(loaderArgs(root, ["sleep", "60"], out.fd))
      yield* loader.startRoot
      yield* waitUntil(Effect.sync(() => Fs.readFileSync(out.path, "utf8") === "sleeping\n"), "the init sleeps")
      yield* loader.signal(15)
      assert.deepStrictEqual(yield* loader.waitExit, signaled(15))
    }))

  it.scopedLive("teardown kills a spinning guest, waits for it, then releases everything", () =>
    Effect.gen(function*() {
      const root = yield* makeRoot(["spin"])
      const out = yield* makeOutput
      const sandbox = yield* Scope.make()
      const loader = yield* buildLoader(loaderArgs(root, ["spin"], out.fd)).pipe(Scope.extend(sandbox))
      yield* loader.startRoot
      const waiting = yield* Effect.fork(loader.waitExit)
      yield* waitUntil(Effect.map(loader.event("test"), (e) => e.cpu.usage.total > 0n), "the guest spins")
      assert.deepStrictEqual((yield* loader.processes("test")).map((p) => p.state), ["running"])
      yield* Scope.close(sandbox, Exit.void)
      // The scope has closed: the guest was SIGKILLed and had exited before the kernel was released.
      assert.deepStrictEqual(yield* Fiber.join(waiting), signaled(9))
    }))

  it.live("many sandboxes in one process, concurrently", () =>
    Effect.gen(function*() {
      const results = yield* Effect.forEach(
        [0, 1, 2, 3, 4, 5],
        (code) =>
          Effect.scoped(Effect.gen(function*() {
            const root = yield* makeRoot(["exit"])
            const out = yield* makeOutput
            return yield* Loader.run.pipe(Effect.provide(Loader.layer(loaderArgs(root, ["exit", `${code}`], out.fd))))
          })),
        { concurrency: "unbounded" }
      )
      assert.deepStrictEqual(results, [0, 1, 2, 3, 4, 5].map(exited))
    }))
})

describe("teardown", () => {
  it("closing a sandbox right after its start leaves nothing that keeps the process alive", () => {
    const rootfs = Fs.mkdtempSync(Path.join(Os.tmpdir(), "runsc-teardown-"))
    try {
      Fs.mkdirSync(Path.join(rootfs, "bin"))
      for (const p of ["sleep", "exit"]) {
        Fs.copyFileSync(fixture(`${p}.wasm`), Path.join(rootfs, "bin", p))
        Fs.chmodSync(Path.join(rootfs, "bin", p), 0o755)
      }
      const script = fileURLToPath(new URL("./fixtures/closeAfterStart.mjs", import.meta.url))
      // Killing a guest makes the pool replace its worker: the replacement must not outlive the pool.
      for (const [program, warm] of [["/bin/sleep", "1"], ["/bin/exit", "1"], ["/bin/sleep", "0"], ["/bin/sleep", "4"]]) {
        const run = spawnSync(process.execPath, [script, rootfs, program!, warm!], { cwd: Path.join(repo, "packages/loader"), encoding: "utf8", timeout: 20_000 })
        assert.strictEqual(run.status, 0, `${program} warm ${warm}: status ${run.status} signal ${run.signal} ${run.stderr}`)
      }
    } finally {
      Fs.rmSync(rootfs, { recursive: true, force: true })
    }
  })
})

describe("README", () => {
  it("shows the Effect program of examples/embed verbatim, and it runs as written", () => {
    const readme = Fs.readFileSync(Path.join(repo, "README.md"), "utf8")
    const source = Fs.readFileSync(Path.join(repo, "examples/embed/src/main.ts"), "utf8")
    assert.include(readme, source.trim())
    const run = spawnSync(process.execPath, [Path.join(repo, "examples/embed/dist/main.js")], { cwd: repo, encoding: "utf8", timeout: 30_000 })
    assert.strictEqual(run.status, 0, run.stderr)
    assert.include(run.stdout, "Hello from WebAssembly in the runsc sandbox!")
    assert.include(run.stdout, "root init is pid 1")
    assert.include(run.stdout, "exited with code 0")
  })
})
