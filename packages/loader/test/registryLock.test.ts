/**
 * The registry lock serializes changes to the container registry, and nothing slow runs under
 * it: a module an exec (or a start) compiles is compiled before the lock is taken, so one
 * container's slow compile never stalls another container's lifecycle.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { makeSandbox, startSub, waitUntil } from "./helpers.js"

type Wabt = Awaited<ReturnType<typeof import("wabt")>>

/**
 * A WASI command of `functions` small functions: large enough that instrumenting and compiling
 * it takes a while (a tenth of a second or more), where a create or destroy takes milliseconds.
 */
const bigModule = (functions: number) =>
  Effect.promise(async () => {
    const wabt: Wabt = await import("wabt").then((m) => m.default())
    const body: Array<string> = []
    for (let i = 0; i < functions; i++) {
      body.push(`(func $f${i} (param i32) (result i32) local.get 0 i32.const ${i} i32.add i32.const 3 i32.mul local.get 0 i32.xor)`)
    }
    const module = wabt.parseWat("big.wat", `(module (memory (export "memory") 1)\n${body.join("\n")}\n(func (export "_start") i32.const 1 call $f0 drop))`)
    try {
      return new Uint8Array(module.toBinary({}).buffer)
    } finally {
      module.destroy()
    }
  })

describe("the registry lock", () => {
  it.scopedLive("while an exec compiles a large module, another container is created, queried and destroyed", () =>
    Effect.gen(function*() {
      const big = yield* bigModule(100_000)
      const loader = yield* makeSandbox
      yield* startSub(loader, "busy", {
        args: ["sleep", "600"],
        populate: (rootfs) => {
          Fs.writeFileSync(Path.join(rootfs, "bin/big"), big)
          Fs.chmodSync(Path.join(rootfs, "bin/big"), 0o755)
        }
      })
      const cached = (yield* loader.sandboxStats).modules.modules
      const done: Array<string> = []
      const exec = yield* Effect.fork(
        Effect.tap(loader.execute({ containerId: "busy", argv: ["big"] }), () => Effect.sync(() => done.push("exec")))
      )
      // The exec's compile has begun (its module is in the cache, not yet compiled).
      yield* waitUntil(Effect.map(loader.sandboxStats, (s) => s.modules.modules > cached), "the exec is compiling")
      yield* loader.createSubcontainer("other")
      done.push("create")
      assert.strictEqual(yield* loader.runtimeState("other"), "creating")
      done.push("state")
      yield* loader.destroySubcontainer("other")
      done.push("destroy")
      const pid = yield* Fiber.join(exec)
      assert.deepStrictEqual(done, ["create", "state", "destroy", "exec"])
      assert.isAbove(pid, 0)
      yield* loader.destroySubcontainer("busy")
    }), { timeout: 60_000 })
})
