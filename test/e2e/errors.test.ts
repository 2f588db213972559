/**
 * CLI failures end to end: programs that are not runnable, bad config.json, bad container
 * ids, `spec`. Each must exit 128 with exactly one line `runsc: <message>` on stderr that
 * says what is wrong (a full cause only with --debug).
 */
import { assert, describe, it } from "@effect/vitest"
import { spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { afterAll, beforeAll } from "vitest"
import {
  assembleWat,
  cFixture,
  cliFailureLine,
  describeResult,
  helloBundle,
  installFixtures,
  lines,
  makeBundle,
  makeTempDir,
  putExecutable,
  putFile,
  removeDir,
  repoRoot,
  runsc,
  uniqueId
} from "./helpers.js"

const UNKNOWN_IMPORT_WAT = `
(module
  (import "wasi_snapshot_preview1" "no_such_syscall" (func $nope (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (drop (call $nope (i32.const 0)))))
`

describe.concurrent("runsc do: programs that cannot run", () => {
  let root = "" // the container root
  let host = "" // a host directory holding the bad programs (outside the root)

  beforeAll(async () => {
    root = await makeTempDir()
    host = await makeTempDir()
    await installFixtures(root, ["exit"])
    const truncated = Fs.readFileSync(cFixture("exit")).subarray(0, 20)
    const elf = Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]), Buffer.alloc(56, 0)])
    const unknownImport = await assembleWat(UNKNOWN_IMPORT_WAT, "unknown_import.wat")
    for (const dir of [host, root]) {
      await putExecutable(dir, "bin/text", "just some text, not a program\n")
      await putExecutable(dir, "bin/elf", elf)
      await putExecutable(dir, "bin/truncated", truncated)
      await putExecutable(dir, "bin/unknown_import", unknownImport)
    }
  })

  afterAll(async () => {
    await removeDir(root)
    await removeDir(host)
  })

  const doIn = (program: string, ...flags: Array<string>) => runsc([...flags, "do", "--root-dir", root, program], { cwd: root })

  // PROGRAM given as a host path (the file exists on the host)...
  it("a text file given as a host path: not a WebAssembly module", async () => {
    const line = cliFailureLine(await doIn(Path.join(host, "bin/text")))
    assert.include(line, "not a WebAssembly module")
    assert.include(line, Path.join(host, "bin/text"))
  })

  it("an ELF file given as a host path: not a WebAssembly module", async () => {
    const line = cliFailureLine(await doIn(Path.join(host, "bin/elf")))
    assert.include(line, "not a WebAssembly module")
    assert.include(line, Path.join(host, "bin/elf"))
  })

  // ...and as a path inside the container.
  it("a text file inside the container: not a WebAssembly module", async () => {
    const line = cliFailureLine(await doIn("/bin/text"))
    assert.include(line, "not a WebAssembly module")
    assert.include(line, "/bin/text")
  })

  it("an ELF file inside the container: not a WebAssembly module", async () => {
    const line = cliFailureLine(await doIn("/bin/elf"))
    assert.include(line, "not a WebAssembly module")
    assert.include(line, "/bin/elf")
  })

  it("a missing absolute program: no such file", async () => {
    const line = cliFailureLine(await doIn("/bin/does-not-exist"))
    assert.include(line, "/bin/does-not-exist")
    assert.include(line, "no such file")
  })

  it("a missing bare program name: not found on PATH", async () => {
    const line = cliFailureLine(await doIn("does-not-exist-e2e"))
    assert.include(line, "does-not-exist-e2e")
    assert.include(line, "not found")
  })

  it("a truncated wasm (first 20 bytes): invalid WebAssembly module", async () => {
    const [viaHost, inside] = await Promise.all([doIn(Path.join(host, "bin/truncated")), doIn("/bin/truncated")])
    assert.include(cliFailureLine(viaHost), "invalid WebAssembly module")
    assert.include(cliFailureLine(inside), "invalid WebAssembly module")
  })

  it("a wasm importing a function the sandbox does not provide: names the import", async () => {
    const [viaHost, inside] = await Promise.all([doIn(Path.join(host, "bin/unknown_import")), doIn("/bin/unknown_import")])
    for (const r of [viaHost, inside]) {
      const line = cliFailureLine(r)
      assert.include(line, "invalid WebAssembly module")
      assert.include(line, "no_such_syscall")
    }
  })

  it("without the gofer's native core (addons refused, as when no C compiler built it): a typed error that says so, never a fallback", async () => {
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const rootfs = Path.join(helloBundle, "rootfs")
      const args = ["--no-addons", Path.join(repoRoot, "apps/runsc/bin/runsc.cjs"), "do", "--root-dir", rootfs, Path.join(rootfs, "bin/hello")]
      const child = spawn(process.execPath, args, { stdio: ["ignore", "ignore", "pipe"] })
      let stderr = ""
      child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()))
      child.once("close", (code) => resolve({ code, stderr }))
    })
    assert.strictEqual(r.code, 128, r.stderr)
    assert.match(r.stderr, /^runsc: root filesystem .*: the gofer's native core is not built, so no host directory can be mounted \(reinstall with a C compiler/)
    assert.lengthOf(lines(r.stderr), 1)
  })

  it("a directory as program: refused with one line", async () => {
    const line = cliFailureLine(await doIn("/bin"))
    assert.include(line, "/bin")
  })

  it("with --debug the first line is the same and more lines (the cause) may follow", async () => {
    const r = await doIn("/bin/elf", "--debug")
    assert.strictEqual(r.code, 128, describeResult(r))
    const errLines = lines(r.stderr)
    const first = errLines.find((l) => l.startsWith("runsc: "))
    assert.isDefined(first, r.stderr)
    assert.include(first!, "not a WebAssembly module")
  })

  it("bad flags: --cwd relative, --env without '=', unknown --panic-signal", async () => {
    const [cwd, env, panic] = await Promise.all([
      runsc(["do", "--root-dir", root, "--cwd", "relative/dir", "/bin/exit"], { cwd: root }),
      runsc(["do", "--root-dir", root, "--env", "NOEQUALS", "/bin/exit"], { cwd: root }),
      runsc(["--panic-signal", "NOTASIGNAL", "do", "--root-dir", root, "/bin/exit"], { cwd: root })
    ])
    assert.include(cliFailureLine(cwd), "--cwd")
    assert.include(cliFailureLine(env), "--env")
    assert.include(cliFailureLine(panic), "--panic-signal")
  })

  it("bad --user of exec: past 32 bits, empty, or a gid that is not a number (checked before the container is looked up)", async () => {
    const state = await makeTempDir("runsc-e2e-state-")
    try {
      for (const user of ["4294967296", "", ":5", "0:abc", "0:4294967296", "1.5", " 7"]) {
        const r = await runsc(["--root", state, "exec", "--user", user, "nonexistent", "/bin/exit"])
        assert.include(cliFailureLine(r), "--user", JSON.stringify(user))
      }
    } finally {
      await removeDir(state)
    }
  })
})

describe.concurrent("runsc run: bad bundles", () => {
  const dirs: Array<string> = []
  afterAll(async () => {
    await Promise.all(dirs.map(removeDir))
  })

  /** A bundle whose config.json is `text` (a valid rootfs with /bin/exit next to it). */
  const bundleWithConfig = async (text: string | undefined) => {
    const bundle = await makeBundle(["/bin/exit", "0"], ["exit"])
    dirs.push(bundle.dir)
    const config = Path.join(bundle.dir, "config.json")
    if (text === undefined) Fs.rmSync(config)
    else Fs.writeFileSync(config, text)
    return bundle.dir
  }

  const validConfig = (process: Record<string, unknown>) =>
    JSON.stringify({ ociVersion: "1.0.2", process: { args: ["/bin/exit", "0"], cwd: "/", ...process }, root: { path: "rootfs" } })

  it("a valid bundle of the same shape runs (control)", async () => {
    const dir = await bundleWithConfig(validConfig({}))
    const r = await runsc(["run", "--bundle", dir, uniqueId("e2e-ok")])
    assert.strictEqual(r.code, 0, describeResult(r))
    assert.strictEqual(r.stderr, "")
  })

  it("malformed JSON: names config.json and says JSON", async () => {
    const dir = await bundleWithConfig(`{ "ociVersion": "1.0.2", "process": {`)
    const line = cliFailureLine(await runsc(["run", "--bundle", dir, uniqueId("e2e-bad")]))
    assert.include(line, "config.json")
    assert.match(line, /JSON/)
  })

  it("process.args[1] a number: names process.args[1]", async () => {
    const dir = await bundleWithConfig(validConfig({ args: ["/bin/exit", 5] }))
    const line = cliFailureLine(await runsc(["run", "--bundle", dir, uniqueId("e2e-bad")]))
    assert.include(line, "process.args[1]")
  })

  it("process.cwd relative: names process.cwd", async () => {
    const dir = await bundleWithConfig(validConfig({ cwd: "tmp" }))
    const line = cliFailureLine(await runsc(["run", "--bundle", dir, uniqueId("e2e-bad")]))
    assert.include(line, "process.cwd")
  })

  it("no process: names process (runc requires one too)", async () => {
    const dir = await bundleWithConfig(JSON.stringify({ ociVersion: "1.0.2", root: { path: "rootfs" } }))
    const line = cliFailureLine(await runsc(["run", "--bundle", dir, uniqueId("e2e-bad")]))
    assert.strictEqual(line, "runsc: invalid config.json: process: required field is missing")
  })

  it("a uid past 32 bits, a memory limit of -1: names the field", async () => {
    const uid = await bundleWithConfig(validConfig({ user: { uid: 2 ** 32, gid: 0 } }))
    assert.include(cliFailureLine(await runsc(["run", "--bundle", uid, uniqueId("e2e-bad")])), "process.user.uid")
    const memory = await bundleWithConfig(
      JSON.stringify({ ...JSON.parse(validConfig({})), linux: { resources: { memory: { limit: -1 } } } })
    )
    assert.include(cliFailureLine(await runsc(["run", "--bundle", memory, uniqueId("e2e-bad")])), "linux.resources.memory.limit")
  })

  it("missing config.json: names config.json", async () => {
    const dir = await bundleWithConfig(undefined)
    const line = cliFailureLine(await runsc(["run", "--bundle", dir, uniqueId("e2e-bad")]))
    assert.include(line, "config.json")
  })

  it("bad container id a/b: exit 128, names the id", async () => {
    const dir = await bundleWithConfig(validConfig({}))
    const line = cliFailureLine(await runsc(["run", "--bundle", dir, "a/b"]))
    assert.include(line, "a/b")
  })
})

describe.concurrent("runsc spec", () => {
  it("writes a template config.json into --bundle; a second spec fails and keeps the file", async () => {
    const dir = await makeTempDir()
    try {
      const first = await runsc(["spec", "--bundle", dir])
      assert.strictEqual(first.code, 0, describeResult(first))
      assert.strictEqual(first.stderr, "")
      const path = Path.join(dir, "config.json")
      const text = Fs.readFileSync(path, "utf8")
      const config = JSON.parse(text) as { ociVersion?: unknown; process?: { args?: unknown } }
      assert.isString(config.ociVersion)
      assert.isArray(config.process?.args)
      const args = config.process!.args as Array<unknown>
      assert.isAbove(args.length, 0)
      for (const a of args) assert.isString(a)

      const second = await runsc(["spec", "--bundle", dir])
      const line = cliFailureLine(second)
      assert.include(line, "config.json")
      assert.include(line, "exists")
      assert.strictEqual(Fs.readFileSync(path, "utf8"), text, "the existing config.json must not change")
    } finally {
      await removeDir(dir)
    }
  })

  it("without --bundle writes config.json in the current directory", async () => {
    const dir = await makeTempDir()
    try {
      const r = await runsc(["spec"], { cwd: dir })
      assert.strictEqual(r.code, 0, describeResult(r))
      assert.deepStrictEqual(Fs.readdirSync(dir), ["config.json"])
      assert.isString((JSON.parse(Fs.readFileSync(Path.join(dir, "config.json"), "utf8")) as { ociVersion?: unknown }).ociVersion)
    } finally {
      await removeDir(dir)
    }
  })

  it("refuses to overwrite an existing config.json it did not write", async () => {
    const dir = await makeTempDir()
    try {
      await putFile(dir, "config.json", "mine\n")
      const line = cliFailureLine(await runsc(["spec", "--bundle", dir]))
      assert.include(line, "exists")
      assert.strictEqual(Fs.readFileSync(Path.join(dir, "config.json"), "utf8"), "mine\n")
    } finally {
      await removeDir(dir)
    }
  })
})
