/**
 * What a confined sandbox process may touch, and that Node enforces exactly that: the flags are
 * handed to a real `node` and its permission model is asked about granted and other paths; then
 * a real sandbox, created by the CLI, is asked by a control client to open host files.
 */
import { assert, describe, it } from "@effect/vitest"
import { call, type SandboxClient } from "@runsc/control"
import { loadBundle } from "@runsc/spec"
import { Effect, Either } from "effect"
import { spawnSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { createContainer, makeBundle, makeTempDir, removeDir, runsc, uniqueId } from "../../../test/e2e/helpers.js"
import { type Confinement, confinementOf, nodeFlags } from "../src/confinement.js"

const layout = () => {
  const top = Fs.mkdtempSync(Path.join(Os.tmpdir(), "runsc-confinement-"))
  const bundle = Path.join(top, "bundle")
  const shared = Path.join(top, "shared")
  const writable = Path.join(top, "writable")
  const state = Path.join(top, "state")
  for (const dir of [Path.join(bundle, "rootfs", "bin"), shared, writable, state, Path.join(top, "outside")]) Fs.mkdirSync(dir, { recursive: true })
  Fs.writeFileSync(Path.join(bundle, "rootfs", "bin", "app"), "\0asm")
  Fs.writeFileSync(Path.join(shared, "data"), "shared")
  Fs.writeFileSync(Path.join(top, "outside", "secret"), "secret")
  Fs.writeFileSync(
    Path.join(bundle, "config.json"),
    JSON.stringify({
      ociVersion: "1.0.2",
      process: { args: ["/bin/app"], cwd: "/" },
      root: { path: "rootfs", readonly: true },
      mounts: [
        { destination: "/shared", type: "bind", source: shared, options: ["rbind", "ro"] },
        { destination: "/writable", type: "bind", source: writable, options: ["rbind", "rw"] },
        { destination: "/proc", type: "proc", source: "proc" }
      ]
    })
  )
  return { top, bundle, shared, writable, state }
}

/** Whether `confinement` lets its sandbox read (or write) `path`, as Node decides: the path or a directory above it. */
const mayAccess = (confinement: Confinement, access: "read" | "write", path: string): boolean =>
  confinement[access].some((granted) => path === granted || path.startsWith(granted.endsWith("/") ? granted : `${granted}/`))

const confine = (l: ReturnType<typeof layout>) =>
  Effect.map(loadBundle(l.bundle), (bundle) =>
    confinementOf({
      bundle,
      files: { socket: Path.join(l.state, "c.sock"), donations: Path.join(l.state, "c.fds"), exit: [Path.join(l.state, "c.exit"), Path.join(l.state, "c.exit.tmp")] },
      logs: [Path.join(l.top, "runsc.log")],
      allowRead: [],
      allowWrite: []
    }))

describe("confinement of the sandbox process", () => {
  it.effect("grants the bundle (root included), bind sources (writes to rw ones), its own state files and logs; nothing twice, nothing nested", () =>
    Effect.gen(function*() {
      const l = layout()
      const c = yield* confine(l)
      for (const path of [l.bundle, l.shared, Path.join(l.state, "c.sock"), "/dev/null"]) assert.include(c.read, path)
      assert.notInclude(c.read, Path.join(l.bundle, "rootfs"), "covered by the bundle")
      assert.notInclude(c.read, l.state, "the state root holds other containers' records")
      assert.deepStrictEqual(
        [...c.write].sort(),
        ["/dev/null", Path.join(l.top, "runsc.log"), Path.join(l.state, "c.exit"), Path.join(l.state, "c.exit.tmp"), Path.join(l.state, "c.fds"), Path.join(l.state, "c.sock"), l.writable].sort()
      )
      for (const list of [c.read, c.write]) {
        assert.strictEqual(new Set(list).size, list.length)
        for (const a of list) for (const b of list) assert.isFalse(a !== b && b.startsWith(`${a}/`), `${b} inside ${a}`)
      }
      assert.isTrue(mayAccess(c, "read", Path.join(l.bundle, "rootfs", "bin", "app")))
      assert.isTrue(mayAccess(c, "read", l.bundle))
      assert.isFalse(mayAccess(c, "read", `${l.bundle}-other`))
      assert.isFalse(mayAccess(c, "read", Path.join(l.top, "outside", "secret")))
      assert.isTrue(mayAccess(c, "write", Path.join(l.writable, "new")))
      assert.isFalse(mayAccess(c, "write", Path.join(l.shared, "data")), "an ro bind source is not writable")
      Fs.rmSync(l.top, { recursive: true })
    }))

  it.effect("Node enforces the flags: granted paths readable, others not, no writes to the bundle, no child processes", () =>
    Effect.gen(function*() {
      const l = layout()
      const c = yield* confine(l)
      const flags = nodeFlags(c)
      assert.isDefined(flags)
      const probe = `
        const fs = require("node:fs")
        const report = {}
        const attempt = (name, f) => { try { f(); report[name] = "ok" } catch (e) { report[name] = e.code } }
        attempt("rootfs file", () => fs.readFileSync(${JSON.stringify(Path.join(l.bundle, "rootfs", "bin", "app"))}))
        attempt("rootfs dir", () => fs.readdirSync(${JSON.stringify(Path.join(l.bundle, "rootfs"))}))
        attempt("bind source", () => fs.readFileSync(${JSON.stringify(Path.join(l.shared, "data"))}))
        attempt("outside", () => fs.readFileSync(${JSON.stringify(Path.join(l.top, "outside", "secret"))}))
        attempt("passwd", () => fs.readFileSync("/etc/passwd"))
        attempt("proc of another process", () => fs.readFileSync("/proc/1/environ"))
        attempt("write into an rw bind source", () => fs.writeFileSync(${JSON.stringify(Path.join(l.writable, "new"))}, "x"))
        attempt("write into an ro bind source", () => fs.writeFileSync(${JSON.stringify(Path.join(l.shared, "data"))}, "x"))
        attempt("write into the bundle", () => fs.writeFileSync(${JSON.stringify(Path.join(l.bundle, "x"))}, "x"))
        attempt("state root listing", () => fs.readdirSync(${JSON.stringify(l.state)}))
        attempt("exit record", () => fs.writeFileSync(${JSON.stringify(Path.join(l.state, "c.exit.tmp"))}, "0"))
        attempt("child process", () => require("node:child_process").execFileSync("/bin/true"))
        process.stdout.write(JSON.stringify(report))
      `
      const run = spawnSync(process.execPath, [...flags!, "-e", probe], { encoding: "utf8" })
      assert.strictEqual(run.status, 0, run.stderr)
      assert.strictEqual(run.stderr, "", "the permission model's warnings are silenced")
      assert.deepStrictEqual(JSON.parse(run.stdout), {
        "rootfs file": "ok",
        "rootfs dir": "ok",
        "bind source": "ok",
        outside: "ERR_ACCESS_DENIED",
        passwd: "ERR_ACCESS_DENIED",
        "proc of another process": "ERR_ACCESS_DENIED",
        "write into an rw bind source": "ok",
        "write into an ro bind source": "ERR_ACCESS_DENIED",
        "write into the bundle": "ERR_ACCESS_DENIED",
        "state root listing": "ERR_ACCESS_DENIED",
        "exit record": "ok",
        "child process": "ERR_ACCESS_DENIED"
      })
      Fs.rmSync(l.top, { recursive: true })
    }))
})


describe("a sandbox process created by the CLI", () => {
  it("the sandbox process is confined: host files outside its grants stay closed to it, even when its control client names them; --unconfined warns", async () => {
    const root = await makeTempDir("runsc-e2e-confined-root-")
    const flags = ["--root", root]
    const sleeper = await makeBundle(["/bin/sleep", "600"], ["sleep", "cat"])
    const secrets = await makeTempDir("runsc-e2e-secrets-")
    const secret = Path.join(secrets, "secret")
    Fs.writeFileSync(secret, "top secret\n")
    // A copy of a good bundle, but where the sandbox was not told it may read.
    const foreign = Path.join(secrets, "bundle")
    Fs.cpSync(sleeper.dir, foreign, { recursive: true })
    const ask = <A, E extends { readonly _tag: string }>(socket: string, f: (c: SandboxClient) => Effect.Effect<A, E>) =>
      Effect.runPromise(Effect.either(call(socket, "test", f)))
    try {
      const id = uniqueId("cf")
      assert.strictEqual((await createContainer(flags, sleeper.dir, id, secrets)).code, 0)
      assert.strictEqual((await runsc([...flags, "start", id])).code, 0)
      const cmdline = Fs.readFileSync(`/proc/${JSON.parse((await runsc([...flags, "state", id])).stdout).pid}/cmdline`, "utf8").split("\0")
      assert.isTrue(cmdline.includes("--permission") || cmdline.includes("--experimental-permission"), cmdline.join(" "))
      const socket = Path.join(root, `${id}.sock`)
      // Stdio paths are opened by the sandbox itself, so they are held to its grants.
      for (const stdio of [{ stdin: secret }, { stdout: secret }, { stderr: secret }]) {
        const opened = await ask(socket, (c) => c.ExecuteAsync({ id, argv: ["cat"], stdio }))
        assert.isTrue(Either.isLeft(opened) && opened.left._tag === "StdioUnavailable", JSON.stringify(opened))
      }
      assert.strictEqual(Fs.readFileSync(secret, "utf8"), "top secret\n")
      // A sub-container's trees are never opened by the sandbox from a path a client names: only
      // descriptors its creator donated are mounted, and none were.
      const foreignBundle = await Effect.runPromise(loadBundle(foreign))
      const undonated = await ask(socket, (c) => c.CreateSubcontainer({ id: "foreign", bundle: foreignBundle, donation: "none-sent" }))
      assert.isTrue(Either.isLeft(undonated) && undonated.left._tag === "DonationFailed", JSON.stringify(undonated))
      assert.strictEqual((await runsc([...flags, "delete", "--force", id])).code, 0)

      // The same asks succeed without confinement: the refusals above are the permission model's.
      const open = uniqueId("cu")
      const created = await createContainer([...flags, "--unconfined"], sleeper.dir, open, secrets)
      assert.strictEqual(created.code, 0)
      assert.match(created.output(), /the sandbox of cu-\w+ runs unconfined/)
      assert.strictEqual((await runsc([...flags, "start", open])).code, 0)
      const openSocket = Path.join(root, `${open}.sock`)
      assert.isTrue(Either.isRight(await ask(openSocket, (c) => c.ExecuteAsync({ id: open, argv: ["cat"], stdio: { stdin: secret } }))))
      assert.strictEqual((await runsc([...flags, "delete", "--force", open])).code, 0)
    } finally {
      await removeDir(secrets)
      await removeDir(sleeper.dir)
      await removeDir(root)
    }
  })

  it("a confined sandbox writes its rw bind sources, and nothing else on the host", async () => {
    const root = await makeTempDir("runsc-e2e-confined-root-")
    const bundle = await makeBundle(["/bin/bindrw"], ["bindrw"])
    const host = await makeTempDir("runsc-e2e-binds-")
    for (const dir of ["rw/full", "ro"]) Fs.mkdirSync(Path.join(host, dir), { recursive: true })
    Fs.writeFileSync(Path.join(host, "rw", "gone"), "x")
    Fs.writeFileSync(Path.join(host, "rw", "full", "keep"), "x")
    Fs.writeFileSync(Path.join(host, "ro", "data"), "read only\n")
    Fs.writeFileSync(Path.join(host, "file.txt"), "before\n")
    Fs.mkdirSync(Path.join(bundle.rootfs, "etc"))
    Fs.writeFileSync(Path.join(bundle.rootfs, "etc", "passwd"), "root:x:0:0:root:/root:/bin/sh\n")
    const configPath = Path.join(bundle.dir, "config.json")
    const config = JSON.parse(Fs.readFileSync(configPath, "utf8"))
    config.mounts = [
      { destination: "/tmp", type: "tmpfs", source: "tmpfs" },
      { destination: "/rw", type: "bind", source: Path.join(host, "rw"), options: ["rbind", "rw"] },
      { destination: "/rw.txt", type: "bind", source: Path.join(host, "file.txt"), options: ["bind"] },
      { destination: "/ro", type: "bind", source: Path.join(host, "ro"), options: ["rbind", "ro"] }
    ]
    Fs.writeFileSync(configPath, JSON.stringify(config))
    try {
      const r = await runsc(["--root", root, "run", "--bundle", bundle.dir, uniqueId("bindrw")])
      assert.strictEqual(r.code, 0, r.stderr)
      for (const line of ["create ok", "rename ok", "link ok", "fsync ok", "utimens ok", "write-file-bind ok", "create-ro EROFS", "write-ro EROFS"]) {
        assert.include(r.stdout.split("\n"), line, r.stdout)
      }
      assert.strictEqual(Fs.readFileSync(Path.join(host, "rw", "dir", "moved"), "utf8"), "on")
      assert.strictEqual(Fs.readFileSync(Path.join(host, "file.txt"), "utf8"), "file bind\n")
      assert.deepStrictEqual(Fs.readdirSync(Path.join(host, "ro")), ["data"])
      assert.deepStrictEqual(Fs.readdirSync(bundle.rootfs).sort(), ["bin", "etc"], "the root is read-only")
    } finally {
      await removeDir(host)
      await removeDir(bundle.dir)
      await removeDir(root)
    }
  })
})
