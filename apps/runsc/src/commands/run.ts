/** `runsc run ID`: runs the bundle's root container attached and exits with its status. */
import { Args, Command, Options } from "@effect/cli"
import { validateContainerId } from "@runsc/spec"
import { Effect } from "effect"
import { runSandbox } from "./sandbox.js"

export const runCommand = Command.make(
  "run",
  {
    bundle: Options.directory("bundle").pipe(
      Options.withAlias("b"),
      Options.withDescription("bundle directory (default: the current directory)"),
      Options.withDefault(".")
    ),
    id: Args.text({ name: "container-id" })
  },
  ({ bundle, id }) =>
    Effect.gen(function*() {
      const containerId = yield* validateContainerId(id)
      yield* runSandbox({ containerId, bundle })
    })
).pipe(Command.withDescription("create and run a container, attached, and exit with its status"))
