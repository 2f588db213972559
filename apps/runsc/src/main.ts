/**
 * The runsc process: parses the command line, runs the command, and exits with the guest's
 * status, or 128 with one line on stderr when the CLI itself failed (a full cause with --debug).
 */
import { ValidationError } from "@effect/cli"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodePath from "@effect/platform-node/NodePath"
import * as NodeTerminal from "@effect/platform-node/NodeTerminal"
import { SandboxRpcs } from "@runsc/control"
import type { StartingThread } from "@runsc/kernel"
import { Cause, Clock, Effect, Exit, Layer, Option, Ref, Schema } from "effect"
import * as Fs from "node:fs"
import { cli, separateGuestArgs } from "./cli.js"
import { versionText } from "./commands/features.js"
import { ExitCode, StartedThreads } from "./processContext.js"

const CLI_FAILURE = 128

// What @effect/cli needs, taken module by module: the NodeContext barrel would also load the
// HTTP client stack, which costs start-up time and is never used here.
const cliEnvironment = Layer.mergeAll(NodeFileSystem.layer, NodePath.layer, NodeTerminal.layer)

const describeFailure = (cause: Cause.Cause<unknown>): string => {
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) {
    const error = failure.value
    if (ValidationError.isValidationError(error)) return "invalid command line (see runsc --help)"
    if (error instanceof Error) return error.message
    return String(error)
  }
  return Cause.pretty(cause).split("\n")[0] ?? "unexpected failure"
}

/**
 * With `--log FILE` (a global flag, so before the command), a failure of the CLI is also one
 * JSON line there — what containerd shows as the runtime's error. Read from argv itself: the
 * failure may be that the command line did not parse.
 */
const logFailure = (argv: ReadonlyArray<string>, message: string) =>
  Effect.gen(function*() {
    const at = argv.indexOf("--log")
    const path = at >= 0 ? argv[at + 1] : argv.find((a) => a.startsWith("--log="))?.slice("--log=".length)
    if (path === undefined) return
    const time = new Date(yield* Clock.currentTimeMillis).toISOString()
    yield* Effect.try(() => Fs.appendFileSync(path, `${JSON.stringify({ msg: message, level: "error", time })}\n`)).pipe(Effect.ignore)
  })

const program = (argv: ReadonlyArray<string>, startedThreads: ReadonlyArray<StartingThread>) => Effect.gen(function*() {
  // runc's shape, which engines parse (the CLI library would print the bare version).
  if (argv.length === 3 && (argv[2] === "--version" || argv[2] === "-v")) {
    Fs.writeSync(1, `${versionText}\n`)
    return 0
  }
  const code = yield* Ref.make(0)
  const exit = yield* cli(separateGuestArgs(argv)).pipe(
    Effect.provide(cliEnvironment),
    Effect.provideService(ExitCode, code),
    Effect.provideService(StartedThreads, startedThreads),
    Effect.exit
  )
  if (Exit.isSuccess(exit)) return yield* Ref.get(code)
  const debug = argv.includes("--debug")
  const line = describeFailure(exit.cause)
  Fs.writeSync(2, `runsc: ${line}\n${debug ? `${Cause.pretty(exit.cause)}\n` : ""}`)
  yield* logFailure(argv, line)
  return CLI_FAILURE
})

/**
 * Runs the command line and exits the process with its status. `startedThreads` are guest
 * worker threads the executable started before loading this module (see bin/runsc.cjs).
 */
export const main = async (argv: ReadonlyArray<string>, startedThreads: ReadonlyArray<StartingThread> = []) =>
  process.exit(await Effect.runPromise(program(argv, startedThreads)))

/**
 * Reports a failure the sandbox answered to a call of the fast path (fastPath.ts) as this CLI
 * reports its own (one line on stderr, and on --log), and exits 128: the sandbox's encoded
 * cause decoded with the protocol's errors of `method`, whose messages are here.
 */
export const reportRefusal = async (argv: ReadonlyArray<string>, method: string, encoded: unknown) => {
  const rpc = SandboxRpcs.requests.get(method)
  const cause = rpc === undefined
    ? Cause.die(new Error(`unknown control call ${method}`))
    : Schema.decodeUnknownOption(Schema.Cause({ error: rpc.errorSchema, defect: Schema.Defect }))(encoded).pipe(
      Option.getOrElse(() => Cause.die(new Error(`${method} failed, with a cause that does not decode`)))
    )
  const line = describeFailure(cause)
  Fs.writeSync(2, `runsc: ${line}\n${argv.includes("--debug") ? `${Cause.pretty(cause)}\n` : ""}`)
  await Effect.runPromise(logFailure(argv, line))
  process.exit(CLI_FAILURE)
}
