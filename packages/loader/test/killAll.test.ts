/**
 * Invariant 5: a container's kill of all its processes (kill --all SIGKILL, destroy) is atomic
 * with respect to process creation. A process its guests spawn, or a client execs, while the
 * kill runs is either killed by it or refused (EAGAIN to the guest, a typed error to the
 * client), never left running, wherever the scheduler preempts the kill. Fork bombs race it
 * here, round after round.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Fiber, Layer } from "effect"
import { Loader, type LoaderShape } from "../src/index.js"
import { makeBundle, makeOutput, startSub } from "./helpers.js"

const count = (loader: LoaderShape, id: string) => Effect.map(loader.processes(id), (ps) => ps.length)

/** Waits until `condition` holds; the bound only says "did not hang". */
const eventually = (condition: Effect.Effect<boolean, unknown>, what: string) =>
  Effect.gen(function*() {
    for (let i = 0; i < 1500; i++) {
      if (yield* Effect.orElseSucceed(condition, () => false)) return
      yield* Effect.sleep("10 millis")
    }
    assert.fail(`timed out waiting until ${what}`)
  })

const ROUNDS = 16

describe("kill-all and process creation (invariant 5)", () => {
  it.scopedLive(`${ROUNDS} rounds: kill --all or destroy while a fork bomb spawns and a client execs; no process of the container survives`, () =>
    Effect.gen(function*() {
      const bundle = yield* makeBundle({ args: ["sleep", "600"] })
      const out = yield* makeOutput
      const loader = yield* Effect.map(
        Layer.build(Loader.layer({ containerId: "root", bundle, stdio: { stdout: out.fd, stderr: out.fd }, kernel: { maxProcesses: 96 } })),
        Context.get(Loader)
      )
      const rootPid = yield* loader.startRoot
      for (let round = 0; round < ROUNDS; round++) {
        const id = `bomb-${round}`
        const viaDestroy = round % 2 === 1
        yield* startSub(loader, id, { args: ["fork_bomb"] })
        // Kill while the bomb grows, at a different size each round: spawns are in flight.
        yield* eventually(Effect.map(count(loader, id), (n) => n >= 2 + (round % 8) * 3), `${id} is growing`)
        const exec = yield* Effect.fork(loader.execute({ containerId: id, argv: ["fork_bomb"] }))
        // The kill may be preempted (as a busy sentry's is): here every few dozen scheduler steps.
        const preemptAfter = 16 * (1 + (round % 4))
        if (viaDestroy) {
          yield* Effect.withMaxOpsBeforeYield(loader.destroySubcontainer(id), preemptAfter)
        } else {
          yield* Effect.withMaxOpsBeforeYield(loader.signalContainer(id, 0, 9, "AllProcesses"), preemptAfter)
        }
        const execed = yield* Fiber.await(exec)
        if (Exit.isFailure(execed)) {
          const tag = Exit.causeOption(execed).pipe((c) => c._tag === "Some" ? String(c.value) : "")
          assert.match(tag, /ContainerStopped|ContainerNotFound/, `round ${round}: the racing exec fails typed`)
        }
        if (viaDestroy) {
          assert.deepStrictEqual((yield* loader.allProcesses).map((p) => p.pid), [rootPid], `round ${round}: only root's init is left`)
        } else {
          yield* eventually(Effect.map(count(loader, id), (n) => n === 0), `round ${round}: ${id} has no process left`)
          yield* loader.destroySubcontainer(id)
        }
        assert.strictEqual((yield* loader.sandboxStats).processes, 1, `round ${round}: the sandbox holds root's init alone`)
      }
    }), { timeout: 240_000 })
})
