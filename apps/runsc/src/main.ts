/**
 * The runsc process: parses the command line, runs the command, and exits with the guest's
 * status, or 128 with one line on stderr when the CLI itself failed (a full cause with --debug).
 */
import { ValidationError } from "@effect/cli"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodePath from "@effect/platform-node/NodePath"
import * as NodeTerminal from "@effect/platform-node/NodeTerminal"
import type { StartingThread } from "@runsc/kernel"
import { Cause, Clock, Effect, Exit, Layer, Option, Ref } from "effect"
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
 * worker threads the executable started before loading this module (see bin/runsc.js).
 */
export const main = async (argv: ReadonlyArray<string>, startedThreads: ReadonlyArray<StartingThread> = []) =>
  process.exit(await Effect.runPromise(program(argv, startedThreads)))
