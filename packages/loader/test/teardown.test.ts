/**
 * A container's teardown order comes from its structure: closing its scope kills every process
 * of it and waits for each before anything those processes used (its trees, their host
 * descriptors) is released, whether the container is destroyed or the whole sandbox goes; and a
 * destroy, once begun, completes even when its caller is interrupted.
 */
import { assert, describe, it } from "@effect/vitest"
import { HostFdBudget } from "@runsc/kernel"
import { Context, Effect, Exit, Fiber, Layer, Logger, Scope } from "effect"
import { Loader, type LoaderShape } from "../src/index.js"
import { makeBundle, makeOutput, startSub, tempDir } from "./helpers.js"

/** A sandbox whose sleeping root counts its host descriptors in `budget`, built in `scope`. */
const sandboxIn = (scope: Scope.Scope, budget: HostFdBudget) =>
  Effect.gen(function*() {
    const bundle = yield* makeBundle({ args: ["sleep", "600"] })
    const out = yield* makeOutput
    const loader = yield* Effect.map(
      Layer.buildWithScope(Loader.layer({ containerId: "root", bundle, stdio: { stdout: out.fd, stderr: out.fd }, kernel: { hostFds: budget } }), scope),
      Context.get(Loader)
    )
    yield* loader.startRoot
    return loader
  })

/** A sleeping sub-container `id` that binds a host directory (two host descriptors: its root's, the bind's). */
const sleeper = (loader: LoaderShape, id: string) =>
  Effect.gen(function*() {
    const host = yield* tempDir
    return yield* startSub(loader, id, { args: ["sleep", "600"], mounts: [{ destination: "/data", type: "bind", source: host, options: ["rbind", "ro"] }] })
  })

const liveIn = (loader: LoaderShape, id: string) =>
  Effect.map(loader.allProcesses, (all) => all.filter((p) => p.containerId === id && (p.state === "running" || p.state === "stopped")).length)

describe("teardown", () => {
  it.scopedLive("at the sandbox's teardown every process is dead before any container releases its filesystems", () =>
    Effect.gen(function*() {
      const errors: Array<string> = []
      const logger = Logger.make(({ logLevel, message }) => {
        if (logLevel._tag === "Error" || logLevel._tag === "Fatal") errors.push(String(message))
      })
      yield* Effect.gen(function*() {
        const scope = yield* Scope.make()
        const budget = new HostFdBudget(4096, 65536)
        const loader = yield* sandboxIn(scope, budget)
        for (const id of ["a", "b", "c"]) yield* sleeper(loader, id)
        assert.isAbove(budget.inUse, 0)
        yield* Scope.close(scope, Exit.void)
        assert.strictEqual(budget.inUse, 0, "every tree's descriptor is given back")
      }).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger)))
      assert.deepStrictEqual(errors.filter((e) => e.includes("sentry bug")), [])
    }))

  it.scopedLive("a destroy interrupted at any step completes, or has not begun: never a container forgotten with its trees held", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
      const budget = new HostFdBudget(4096, 65536)
      const loader = yield* sandboxIn(scope, budget)
      const rootOnly = budget.inUse
      for (let round = 0; round < 24; round++) {
        const id = `d${round}`
        yield* sleeper(loader, id)
        const held = budget.inUse
        const destroy = yield* Effect.fork(loader.destroySubcontainer(id))
        for (let i = 0; i < round; i++) yield* Effect.yieldNow()
        yield* Fiber.interrupt(destroy)
        const state = yield* Effect.either(loader.runtimeState(id))
        if (state._tag === "Left") {
          // Begun, so done: no process of it lives, and its trees are given back.
          assert.strictEqual(yield* liveIn(loader, id), 0, `round ${round}`)
          assert.strictEqual(budget.inUse, rootOnly, `round ${round}: its trees' descriptors are given back`)
        } else {
          // Not begun: untouched.
          assert.strictEqual(state.right, "running", `round ${round}`)
          assert.strictEqual(budget.inUse, held, `round ${round}`)
          yield* loader.destroySubcontainer(id)
        }
      }
      assert.strictEqual(budget.inUse, rootOnly)
    }))
})

describe("a sandbox whose root init has exited", () => {
  it.scopedLive("starts no container any more, in the root's PID namespace or a new one: ContainerStopped names the root", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
      const bundle = yield* makeBundle({ args: ["exit", "0"] })
      const out = yield* makeOutput
      const loader = yield* Effect.map(
        Layer.buildWithScope(Loader.layer({ containerId: "root", bundle, stdio: { stdout: out.fd, stderr: out.fd } }), scope),
        Context.get(Loader)
      )
      yield* loader.startRoot
      yield* loader.waitExit
      for (const [id, pidNamespace] of [["shared", undefined], ["own", {}]] as const) {
        const sub = yield* makeBundle({ args: ["sleep", "600"], ...(pidNamespace ? { pidNamespace } : {}) })
        yield* loader.createSubcontainer(id)
        const failed = yield* Effect.flip(loader.startSubcontainer({ containerId: id, bundle: sub }))
        assert.strictEqual(failed._tag, "ContainerStopped", id)
        assert.strictEqual(yield* loader.runtimeState(id), "stopped")
      }
      assert.strictEqual((yield* loader.sandboxStats).processes, 0)
    }))
})
