/**
 * `runsc do PROGRAM [ARGS...]`: runs a program in a throw-away sandbox whose root is a host
 * directory (default: the current one). PROGRAM is a host path to a wasm file, or a name on the
 * container's PATH. The guest sees a minimal environment, never the host's. With --timeout, a
 * guest still running when it elapses is killed (SIGKILL: status 137, as `timeout -s KILL`).
 * --publish and --egress are the dev.runsc.publish and dev.runsc.egress annotations of a bundle.
 */
import { Args, Command, Options } from "@effect/cli"
import { defaultPath, defaultSpec, EGRESS_ANNOTATION, mergeEnv, parseEnvAssignment, PUBLISH_ANNOTATION, type Spec } from "@runsc/spec"
import { Duration, Effect, Either, Option } from "effect"
import { randomBytes } from "node:crypto"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { InvalidFlag } from "../errors.js"
import { runSandbox } from "./sandbox.js"

export const doOptionsWithValue = ["--root-dir", "--env", "--cwd", "--timeout", "--publish", "--egress"]

/** The longest --timeout: a timer's limit (2^31 - 1 ms, ~596 h); a longer one would never fire. */
const MAX_TIMEOUT_MS = 2 ** 31 - 1

/** A --timeout: seconds, or a number with a unit (ms, s, m, h), as GNU timeout takes it (plus ms). */
export const parseTimeout = (text: string): Either.Either<Duration.Duration, string> => {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text)
  if (match === null) return Either.left(`${JSON.stringify(text)} is not a duration (e.g. 30, 1.5s, 500ms, 2m, 1h)`)
  const amount = Number(match[1])
  const millis = amount * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(match[2] ?? "s") as "ms" | "s" | "m" | "h"]
  if (!(millis > 0)) return Either.left("must be more than zero")
  return millis <= MAX_TIMEOUT_MS ? Either.right(Duration.millis(millis)) : Either.left("must be at most 596h")
}
export const doFlags = ["--clean-env"]

export const doCommand = Command.make(
  "do",
  {
    rootDir: Options.directory("root-dir").pipe(
      Options.withDescription("host directory used as the container root (default: the current directory)"),
      Options.withDefault(".")
    ),
    env: Options.text("env").pipe(Options.withDescription("K=V environment variable (repeatable)"), Options.repeated),
    cleanEnv: Options.boolean("clean-env").pipe(Options.withDescription("the guest sees only the --env variables")),
    cwd: Options.text("cwd").pipe(Options.withDescription("working directory inside the container"), Options.withDefault("/")),
    timeout: Options.text("timeout").pipe(
      Options.withDescription("kill the guest (SIGKILL, status 137) if it still runs after DURATION (30, 1.5s, 500ms, 2m, 1h)"),
      Options.optional
    ),
    publish: Options.text("publish").pipe(
      Options.withDescription("[HOST_ADDRESS:]HOST_PORT:GUEST_PORT: serve a guest port on the host (loopback unless an address is given; repeatable)"),
      Options.repeated
    ),
    egress: Options.text("egress").pipe(
      Options.withDescription("CIDR[:PORT[-PORT]]: let the guest connect there through the host (10.0.2.2 is the host's loopback; repeatable)"),
      Options.repeated
    ),
    program: Args.text({ name: "program" }),
    args: Args.text({ name: "args" }).pipe(Args.repeated)
  },
  ({ args, cleanEnv, cwd, egress, env, program, publish, rootDir, timeout }) =>
    Effect.gen(function*() {
      const assignments = yield* Effect.forEach(env, (text) =>
        Either.match(parseEnvAssignment(text), {
          onLeft: (reason) => Effect.fail(new InvalidFlag({ flag: "--env", reason })),
          onRight: ({ key, value }) => Effect.succeed(`${key}=${value}`)
        }))
      if (!cwd.startsWith("/")) return yield* new InvalidFlag({ flag: "--cwd", reason: "must be an absolute path inside the container" })
      const limit = Option.isSome(timeout)
        ? yield* Either.match(parseTimeout(timeout.value), {
          onLeft: (reason) => Effect.fail(new InvalidFlag({ flag: "--timeout", reason })),
          onRight: (duration) => Effect.succeed({ duration, text: timeout.value })
        })
        : undefined
      const defaults = cleanEnv ? [] : [`PATH=${defaultPath}`, `TERM=${process.env["TERM"] ?? "xterm"}`]
      const template = defaultSpec([program, ...args])
      const spec: Spec = {
        ...template,
        process: { ...template.process!, args: [program, ...args], env: mergeEnv(defaults, assignments), cwd },
        // Writable through the copy-on-write overlay: the host directory is never changed.
        root: { path: Path.resolve(rootDir), readonly: false },
        // As a bundle's annotations would ask, and checked as strictly.
        annotations: {
          ...(publish.length > 0 ? { [PUBLISH_ANNOTATION]: publish.join(",") } : {}),
          ...(egress.length > 0 ? { [EGRESS_ANNOTATION]: egress.join(",") } : {})
        }
      }
      // A file at PROGRAM on the host is run directly; otherwise PROGRAM is looked up inside
      // the container, on its PATH.
      const hostProgram = Fs.statSync(program, { throwIfNoEntry: false })?.isFile() ? Path.resolve(program) : undefined
      yield* runSandbox({
        containerId: `runsc-do-${randomBytes(4).toString("hex")}`,
        bundle: { dir: Path.resolve(rootDir), spec, rootPath: Path.resolve(rootDir) },
        homeFromPasswd: !cleanEnv,
        // Its annotations are this command line's, not an image's: --publish may name any host address.
        publishBeyondLoopback: true,
        ...(hostProgram !== undefined ? { hostProgram } : {})
      }, limit)
    })
).pipe(Command.withDescription("run a program in a throw-away sandbox rooted at a host directory"))
