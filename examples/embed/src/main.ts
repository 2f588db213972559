import { NodeRuntime } from "@effect/platform-node"
import { describe, toShellCode } from "@runsc/abi"
import { Loader } from "@runsc/loader"
import { Effect } from "effect"

const program = Effect.gen(function*() {
  const loader = yield* Loader
  const pid = yield* loader.startRoot
  yield* Effect.log(`container ${loader.containerId}: root init is pid ${pid}`)
  const status = yield* loader.waitExit
  yield* Effect.log(`container ${loader.containerId} ${describe(status)}`)
  process.exitCode = toShellCode(status)
})

program.pipe(
  Effect.provide(Loader.layer({ containerId: "hello", bundle: process.argv[2] ?? "examples/hello" })),
  NodeRuntime.runMain
)
