/**
 * Containers are actors: each serializes its own lifecycle requests, and nothing sandbox-wide
 * is locked while one runs. An exec compiles its module before its container's turn, and a
 * start compiles in its own container's turn, so one container's slow compile never stalls
 * another container's lifecycle. A destroy, once sent, completes; concurrent destroys all
 * return after it; a container destroyed answers nothing but ContainerNotFound.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { makeBundle, makeSandbox, startSub, waitUntil } from "./helpers.js"

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

describe("container actors", () => {
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

  it.scopedLive("while a container's start compiles a large module, another container is created, started and exec'd into", () =>
    Effect.gen(function*() {
      // Larger than the exec's: its compile must outlast a whole start, exec and destroy elsewhere.
      const big = yield* bigModule(400_000)
      const loader = yield* makeSandbox
      const busy = yield* makeBundle({
        args: ["big"],
        populate: (rootfs) => {
          Fs.writeFileSync(Path.join(rootfs, "bin/big"), big)
          Fs.chmodSync(Path.join(rootfs, "bin/big"), 0o755)
        }
      })
      yield* loader.createSubcontainer("busy")
      const cached = (yield* loader.sandboxStats).modules.modules
      const done: Array<string> = []
      const start = yield* Effect.fork(
        Effect.tap(loader.startSubcontainer({ containerId: "busy", bundle: busy }), () => Effect.sync(() => done.push("busy started")))
      )
      yield* waitUntil(Effect.map(loader.sandboxStats, (s) => s.modules.modules > cached), "the start is compiling")
      yield* startSub(loader, "other", { args: ["sleep", "600"] })
      done.push("other started")
      yield* loader.execute({ containerId: "other", argv: ["sleep", "600"] })
      done.push("exec")
      yield* Fiber.join(start)
      assert.deepStrictEqual(done, ["other started", "exec", "busy started"], JSON.stringify(done))
      yield* loader.destroySubcontainer("other")
      yield* loader.destroySubcontainer("busy")
    }), { timeout: 60_000 })

  it.scopedLive("concurrent destroys all return once every process is dead; then the container answers ContainerNotFound", () =>
    Effect.gen(function*() {
      const loader = yield* makeSandbox
      yield* startSub(loader, "c", { args: ["sleep", "600"] })
      yield* loader.execute({ containerId: "c", argv: ["sleep", "600"] })
      const pids = (yield* loader.processes("c")).map((p) => p.pid)
      assert.lengthOf(pids, 2)
      yield* Effect.all(Array.from({ length: 5 }, () =>
        Effect.zipRight(
          loader.destroySubcontainer("c"),
          Effect.map(loader.allProcesses, (all) => assert.deepStrictEqual(all.filter((p) => pids.includes(p.pid)), []))
        )), { concurrency: "unbounded", discard: true })
      const stateAfter = yield* Effect.either(loader.runtimeState("c"))
      assert.isTrue(stateAfter._tag === "Left" && stateAfter.left._tag === "ContainerNotFound")
      const exec = yield* Effect.either(loader.execute({ containerId: "c", argv: ["sleep", "1"] }))
      assert.isTrue(exec._tag === "Left" && exec.left._tag === "ContainerNotFound")
      // The id is free again: a new container of that name is a new one.
      yield* startSub(loader, "c", { args: ["sleep", "600"] })
      assert.lengthOf(yield* loader.processes("c"), 1)
      yield* loader.destroySubcontainer("c")
    }), { timeout: 60_000 })
})
