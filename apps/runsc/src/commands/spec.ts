/** `runsc spec`: writes a template config.json for a wasm process into the bundle directory. */
import { Command, Options } from "@effect/cli"
import { defaultSpec, encodeSpecJson } from "@runsc/spec"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { CannotWrite, ConfigExists } from "../errors.js"

export const specCommand = Command.make(
  "spec",
  {
    bundle: Options.directory("bundle", { exists: "either" }).pipe(
      Options.withAlias("b"),
      Options.withDescription("bundle directory (default: the current directory)"),
      Options.withDefault(".")
    )
  },
  ({ bundle }) =>
    Effect.gen(function*() {
      const path = Path.join(bundle, "config.json")
      yield* Effect.try({
        // "wx" fails if the file exists, atomically: no window between a check and the write.
        try: () => Fs.writeFileSync(path, encodeSpecJson(defaultSpec()), { flag: "wx" }),
        catch: (e) =>
          (e as NodeJS.ErrnoException).code === "EEXIST"
            ? new ConfigExists({ path })
            : new CannotWrite({ path, reason: (e as Error).message })
      })
    })
).pipe(Command.withDescription("create a template config.json for a WebAssembly process"))
