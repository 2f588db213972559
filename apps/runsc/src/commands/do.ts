/**
 * `runsc do PROGRAM [ARGS...]`: runs a program in a throw-away sandbox whose root is a host
 * directory (default: the current one). PROGRAM is a host path to a wasm file, or a name on the
 * container's PATH. The guest sees a minimal environment, never the host's.
 */
import { Args, Command, Options } from "@effect/cli"
import { defaultPath, defaultSpec, mergeEnv, parseEnvAssignment, type Spec } from "@runsc/spec"
import { Effect, Either } from "effect"
import { randomBytes } from "node:crypto"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { InvalidFlag } from "../errors.js"
import { runSandbox } from "./sandbox.js"

export const doOptionsWithValue = ["--root-dir", "--env", "--cwd"]
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
    program: Args.text({ name: "program" }),
    args: Args.text({ name: "args" }).pipe(Args.repeated)
  },
  ({ args, cleanEnv, cwd, env, program, rootDir }) =>
    Effect.gen(function*() {
      const assignments = yield* Effect.forEach(env, (text) =>
        Either.match(parseEnvAssignment(text), {
          onLeft: (reason) => Effect.fail(new InvalidFlag({ flag: "--env", reason })),
          onRight: ({ key, value }) => Effect.succeed(`${key}=${value}`)
        }))
      if (!cwd.startsWith("/")) return yield* new InvalidFlag({ flag: "--cwd", reason: "must be an absolute path inside the container" })
      const defaults = cleanEnv ? [] : [`PATH=${defaultPath}`, `TERM=${process.env["TERM"] ?? "xterm"}`]
      const template = defaultSpec([program, ...args])
      const spec: Spec = {
        ...template,
        process: { ...template.process!, args: [program, ...args], env: mergeEnv(defaults, assignments), cwd },
        // Writable through the copy-on-write overlay: the host directory is never changed.
        root: { path: Path.resolve(rootDir), readonly: false }
      }
      // A file at PROGRAM on the host is run directly; otherwise PROGRAM is looked up inside
      // the container, on its PATH.
      const hostProgram = Fs.statSync(program, { throwIfNoEntry: false })?.isFile() ? Path.resolve(program) : undefined
      yield* runSandbox({
        containerId: `runsc-do-${randomBytes(4).toString("hex")}`,
        bundle: { dir: Path.resolve(rootDir), spec, rootPath: Path.resolve(rootDir) },
        homeFromPasswd: !cleanEnv,
        ...(hostProgram !== undefined ? { hostProgram } : {})
      })
    })
).pipe(Command.withDescription("run a program in a throw-away sandbox rooted at a host directory"))
