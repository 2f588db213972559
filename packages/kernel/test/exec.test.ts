/**
 * Finding and loading programs as execve does: PATH search (skipping directories and
 * non-executable files), `#!` interpreters, refusing files that are not WebAssembly.
 */
import { assert, describe, it, layer } from "@effect/vitest"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { ExecNotFound, loadExecutable, NotWasm } from "../src/index.js"
import { Exited, failureOf, fixture, kernelLayer, rootOf, runGuest, tempDir } from "./helpers.js"

const makeRoot = Effect.gen(function*() {
  const dir = yield* tempDir()
  const at = (p: string) => Path.join(dir, p)
  for (const d of ["bin", "a", "b", "c/exit", "home"]) Fs.mkdirSync(at(d), { recursive: true })
  Fs.writeFileSync(at("bin/exit"), fixture("exit"), { mode: 0o755 })
  Fs.writeFileSync(at("a/exit"), fixture("exit"), { mode: 0o644 }) // not executable
  Fs.writeFileSync(at("b/exit"), fixture("echo_args"), { mode: 0o755 })
  Fs.writeFileSync(at("bin/elf"), Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0, 0, 0]), { mode: 0o755 })
  Fs.writeFileSync(at("bin/script"), "#!/bin/exit 5\nignored\n", { mode: 0o755 })
  Fs.writeFileSync(at("bin/loop"), "#!/bin/loop\n", { mode: 0o755 })
  Fs.writeFileSync(at("bin/nointerp"), "#!/bin/missing\n", { mode: 0o755 })
  Fs.writeFileSync(at("home/rel"), "#!bin/echo\n", { mode: 0o755 })
  Fs.writeFileSync(at("bin/echo"), fixture("echo_args"), { mode: 0o755 })
  Fs.symlinkSync("/bin/exit", at("home/link"))
  return yield* rootOf(dir)
})

describe("loadExecutable", () => {
  it.scopedLive("searches PATH, skipping directories and files without an execute bit", () =>
    Effect.gen(function*() {
      const root = yield* makeRoot
      const exe = yield* loadExecutable(root, root, ["exit", "3"], "/c:/a:/b:/bin")
      assert.strictEqual(exe.path, "/b/exit")
      assert.deepStrictEqual(exe.argv, ["exit", "3"])
      assert.deepStrictEqual(exe.bytes, fixture("echo_args"))
      assert.strictEqual((yield* loadExecutable(root, root, ["exit"], "/bin")).path, "/bin/exit")
      const missing = yield* failureOf(loadExecutable(root, root, ["nope"], "/bin:/a"))
      assert.instanceOf(missing, ExecNotFound)
      assert.instanceOf(yield* failureOf(loadExecutable(root, root, ["exit"], "/a:/c")), ExecNotFound)
      assert.instanceOf(yield* failureOf(loadExecutable(root, root, [], "/bin")), ExecNotFound)
    }))

  it.scopedLive("a name with a slash is a path: no search, and it must be executable", () =>
    Effect.gen(function*() {
      const root = yield* makeRoot
      assert.strictEqual((yield* loadExecutable(root, root, ["./bin/exit"], undefined)).path, "/bin/exit")
      assert.strictEqual((yield* loadExecutable(root, root, ["/home/link"], undefined)).path, "/bin/exit")
      const denied = yield* failureOf(loadExecutable(root, root, ["/a/exit"], "/bin"))
      assert.instanceOf(denied, ExecNotFound)
      assert.match((denied as ExecNotFound).reason, /permission denied/)
      const dir = yield* failureOf(loadExecutable(root, root, ["/bin"], undefined))
      assert.match((dir as ExecNotFound).reason, /directory/)
      const escape = yield* failureOf(loadExecutable(root, root, ["../../../../bin/sh"], undefined))
      assert.instanceOf(escape, ExecNotFound)
    }))

  it.scopedLive("files that are not WebAssembly are refused with NotWasm", () =>
    Effect.gen(function*() {
      const root = yield* makeRoot
      assert.instanceOf(yield* failureOf(loadExecutable(root, root, ["/bin/elf"], undefined)), NotWasm)
      assert.instanceOf(yield* failureOf(loadExecutable(root, root, ["/bin/loop"], undefined)), NotWasm)
      assert.instanceOf(yield* failureOf(loadExecutable(root, root, ["/bin/nointerp"], undefined)), ExecNotFound)
    }))

  it.scopedLive("a #! script runs its interpreter with [interpreter, arg, script, args...]", () =>
    Effect.gen(function*() {
      const root = yield* makeRoot
      const exe = yield* loadExecutable(root, root, ["script", "x"], "/bin")
      assert.strictEqual(exe.path, "/bin/exit")
      assert.deepStrictEqual(exe.argv, ["/bin/exit", "5", "/bin/script", "x"])
      assert.deepStrictEqual(exe.bytes, fixture("exit"))
      // A relative interpreter is taken from the current directory (here the root).
      const rel = yield* loadExecutable(root, root, ["/home/rel", "y"], undefined)
      assert.deepStrictEqual(rel.argv, ["bin/echo", "/home/rel", "y"])
    }))
})

layer(kernelLayer, { excludeTestServices: true })("running what loadExecutable found", (it) => {
  it.scoped("a script's interpreter gets the script's argv", () =>
    Effect.gen(function*() {
      const root = yield* makeRoot
      const exe = yield* loadExecutable(root, root, ["script"], "/bin")
      const r = yield* runGuest({ bytes: exe.bytes, argv: exe.argv, root, programPath: exe.path })
      assert.deepStrictEqual(r.status, Exited(5))
    }))
})
