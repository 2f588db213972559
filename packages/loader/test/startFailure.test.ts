/**
 * A start that fails after the container has taken its filesystems (its program is missing, or
 * is not wasm) gives back what it took — the host descriptors of its root and bind mounts, the
 * memory of its trees — and leaves the container stopped, as runc leaves a container whose
 * start failed; destroy then forgets it.
 */
import { assert, describe, it } from "@effect/vitest"
import { HostFdBudget } from "@runsc/kernel"
import { Context, Effect, Layer } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { Loader } from "../src/index.js"
import { makeBundle, makeOutput, tempDir } from "./helpers.js"

/** A sandbox whose sleeping root counts its host descriptors in `budget`. */
const sandboxCounting = (budget: HostFdBudget) =>
  Effect.gen(function*() {
    const bundle = yield* makeBundle({ args: ["sleep", "600"] })
    const out = yield* makeOutput
    return yield* Effect.map(
      Layer.build(Loader.layer({ containerId: "root", bundle, stdio: { stdout: out.fd, stderr: out.fd }, kernel: { hostFds: budget } })),
      Context.get(Loader)
    )
  })

/** A bundle whose program cannot be launched: `/bin/not-there`, or `/bin/junk` (not wasm); its root is writable and it binds a host directory. */
const unlaunchable = (program: "/bin/not-there" | "/bin/junk") =>
  Effect.gen(function*() {
    const host = yield* tempDir
    return yield* makeBundle({
      args: [program],
      writableRoot: true,
      mounts: [{ destination: "/data", type: "bind", source: host, options: ["rbind", "ro"] }],
      populate: (rootfs) => {
        Fs.writeFileSync(Path.join(rootfs, "bin/junk"), "plain text, not a wasm module\n")
        Fs.chmodSync(Path.join(rootfs, "bin/junk"), 0o755)
      }
    })
  })

describe("a start that fails", () => {
  it.scopedLive("50 failed starts of sub-containers hold no host descriptor and no memory; each is stopped, cannot start again, and is destroyed", () =>
    Effect.gen(function*() {
      const budget = new HostFdBudget(4096, 65536)
      const loader = yield* sandboxCounting(budget)
      yield* loader.startRoot
      const missing = yield* unlaunchable("/bin/not-there")
      const junk = yield* unlaunchable("/bin/junk")
      const fdsBefore = budget.inUse
      const memoryBefore = (yield* loader.sandboxStats).memory.used
      for (let i = 0; i < 50; i++) {
        const id = `bad-${i}`
        yield* loader.createSubcontainer(id)
        const failed = yield* Effect.flip(loader.startSubcontainer({ containerId: id, bundle: i % 2 === 0 ? missing : junk }))
        assert.strictEqual(failed._tag, i % 2 === 0 ? "ExecNotFound" : "NotWasm")
        assert.strictEqual(budget.inUse, fdsBefore, `start ${i}: the descriptors it took are given back`)
        assert.strictEqual(yield* loader.runtimeState(id), "stopped")
      }
      assert.strictEqual((yield* loader.sandboxStats).memory.used, memoryBefore)
      const again = yield* Effect.flip(loader.startSubcontainer({ containerId: "bad-0", bundle: missing }))
      assert.strictEqual(again._tag, "ContainerAlreadyStarted", "a stopped container does not start again")
      assert.strictEqual(budget.inUse, fdsBefore)
      for (let i = 0; i < 50; i++) {
        yield* loader.destroySubcontainer(`bad-${i}`)
        assert.strictEqual((yield* Effect.flip(loader.runtimeState(`bad-${i}`)))._tag, "ContainerNotFound")
      }
      assert.strictEqual(budget.inUse, fdsBefore)
      assert.strictEqual(yield* loader.runtimeState("root"), "running")
      const { processes } = yield* loader.sandboxStats
      assert.strictEqual(processes, 1, "only the root's init lives")
    }))

  it.scopedLive("a sub-container whose bundle cannot be loaded at start is stopped", () =>
    Effect.gen(function*() {
      const loader = yield* sandboxCounting(new HostFdBudget(4096, 65536))
      yield* loader.startRoot
      const gone = yield* tempDir
      yield* loader.createSubcontainer("nobundle")
      const failed = yield* Effect.flip(loader.startSubcontainer({ containerId: "nobundle", bundle: Path.join(gone, "missing") }))
      assert.strictEqual(failed._tag, "BundleNotFound")
      assert.strictEqual(yield* loader.runtimeState("nobundle"), "stopped")
      yield* loader.destroySubcontainer("nobundle")
    }))

  it.scopedLive("a root container whose start failed is stopped and holds no host descriptor", () =>
    Effect.gen(function*() {
      const budget = new HostFdBudget(4096, 65536)
      const bundle = yield* unlaunchable("/bin/not-there")
      const out = yield* makeOutput
      const loader = yield* Effect.map(
        Layer.build(Loader.layer({ containerId: "root", bundle, stdio: { stdout: out.fd, stderr: out.fd }, kernel: { hostFds: budget } })),
        Context.get(Loader)
      )
      assert.strictEqual(yield* loader.runtimeState("root"), "creating")
      assert.strictEqual((yield* Effect.flip(loader.startRoot))._tag, "ExecNotFound")
      assert.strictEqual(budget.inUse, 0)
      assert.strictEqual(yield* loader.runtimeState("root"), "stopped")
    }))
})
