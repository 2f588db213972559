/**
 * A container's processes are a TaskSet: membership is structural (a spawned child joins its
 * parent's set), and closing the scope that made the set is SIGKILL, a wait for every exit and
 * the reaping of every member, before anything that scope acquired earlier (a container's
 * mounts) is released.
 */
import { assert, layer } from "@effect/vitest"
import { Deferred, Effect, Exit, Scope } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { Kernel, type TaskSet } from "../src/index.js"
import { eventually, fixture, kernelLayer, rootOf, startGuest, tempDir } from "./helpers.js"

layer(kernelLayer, { excludeTestServices: true })("a container's task set", (it) => {
  it.scoped("closing its scope kills, waits for and reaps every process, spawned ones too, before what the scope acquired earlier is released", () =>
    Effect.gen(function*() {
      const kernel = yield* Kernel
      const dir = yield* tempDir()
      Fs.mkdirSync(Path.join(dir, "bin"))
      Fs.writeFileSync(Path.join(dir, "bin/task_tree"), fixture("task_tree"), { mode: 0o755 })
      const root = yield* rootOf(dir)
      const container = yield* Scope.make()
      let set: TaskSet | undefined
      // Acquired before the set, as a container's filesystems are: what it saw when released.
      const atRelease: Array<string> = []
      yield* Scope.addFinalizer(container, Effect.sync(() => {
        atRelease.push(`live ${set!.live.length}`, `unreaped ${set!.processes.length}`)
      }))
      set = yield* kernel.taskSet("c").pipe(Scope.extend(container))
      // A tree of depth 2, width 2: the process, 2 children, 4 grandchildren, all spawned in the sandbox.
      const run = yield* startGuest({
        bytes: fixture("task_tree"),
        argv: ["task_tree", "2", "2"],
        env: ["PATH=/bin"],
        root,
        programPath: "/bin/task_tree",
        tasks: set
      })
      yield* eventually(() => set!.live.length === 7 || !run.tg.isAlive, "the tree has grown", "30 seconds")
      assert.strictEqual(set.live.length, 7, run.stderr())
      const members = set.processes
      assert.isTrue(members.every((tg) => tg.tasks === set && tg.containerId === "c"))
      // Another set's process is not one of them.
      const other = yield* kernel.taskSet("d")
      const outsider = yield* startGuest({ bytes: fixture("sleep"), argv: ["sleep", "600"], tasks: other })
      assert.isFalse(set.has(outsider.tg))

      yield* Scope.close(container, Exit.void)
      assert.deepStrictEqual(atRelease, ["live 0", "unreaped 0"])
      for (const tg of members) assert.isTrue(yield* Deferred.isDone(tg.exitStatus))
      assert.deepStrictEqual(yield* run.exit, { _tag: "Signaled", signal: 9 })
      assert.isTrue(outsider.tg.isAlive)
      // A closed set refuses new processes.
      const late = yield* Effect.either(startGuest({ bytes: fixture("sleep"), argv: ["sleep", "600"], tasks: set }))
      assert.isTrue(late._tag === "Left" && late.left._tag === "ProcessCreationRefused")
    }), { timeout: 60_000 })
})
