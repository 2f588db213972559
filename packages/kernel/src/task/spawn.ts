/**
 * proc_spawn: finds and loads the program as execve would, then starts it as a child of the
 * caller, within the sandbox's process limit. Every failure is the errno Linux's fork or
 * execve would give.
 */
import { Errno } from "@runsc/abi"
import { getEnv } from "@runsc/spec"
import { Effect } from "effect"
import { type ExecNotFound, fail, type InvalidModule, type NotWasm, type SyscallError } from "../errors.js"
import type { ContentCache } from "../fs/contentCache.js"
import type { SpawnRequest } from "../syscalls/context.js"
import { findExecutable, programFromBytes, readProgram } from "./exec.js"
import type { StartProcess } from "./lifecycle.js"
import type { PidNamespace } from "./pidNamespace.js"
import type { ThreadGroup } from "./threadGroup.js"

export type Spawn = (parent: ThreadGroup, request: SpawnRequest) => Effect.Effect<ThreadGroup, SyscallError>

export interface SpawnDeps {
  readonly startProcess: StartProcess
  readonly files: ContentCache
  readonly rootPidNamespace: PidNamespace<ThreadGroup>
  /** Processes the sandbox may hold at once, zombies included (KernelOptions.maxProcesses). */
  readonly maxProcesses: number
}

/** Linux's errno for each way finding a program fails, as proc_spawn reports it. */
const spawnErrno = (error: ExecNotFound | NotWasm | InvalidModule): Errno =>
  error._tag === "ExecNotFound" ? error.errno as Errno : Errno.NOEXEC

/** A spawn path with no slash names a file in the working directory (no PATH search). */
const withSlash = (path: string) => (path.includes("/") ? path : `./${path}`)

export const makeSpawn = (deps: SpawnDeps): Spawn => {
  const { files, rootPidNamespace, maxProcesses } = deps
  // Spawns past the limit check and not yet in the process table (loading their program):
  // counted with the table, so that concurrent spawns cannot pass the limit together.
  let spawning = 0
  return (parent, request) =>
    Effect.gen(function*() {
      if (rootPidNamespace.processes.length + spawning >= maxProcesses) return yield* fail(Errno.AGAIN)
      spawning++
      yield* Effect.addFinalizer(() => Effect.sync(() => spawning--))
      const searchPath = request.searchPath ? getEnv(request.env, "PATH") ?? getEnv(parent.env, "PATH") : undefined
      const found = yield* findExecutable(parent.root, parent.cwd, request.searchPath ? request.path : withSlash(request.path), searchPath)
      const program = yield* programFromBytes(
        parent.root,
        parent.cwd,
        found.path,
        yield* readProgram(found, request.path, files),
        request.argv,
        files
      )
      return yield* deps.startProcess({
        argv: program.argv,
        env: request.env,
        root: parent.root,
        cwd: parent.cwd,
        programPath: program.path,
        programBytes: program.bytes,
        stdio: request.stdio,
        pidNamespace: parent.pidNamespace,
        syntheticMounts: parent.syntheticMounts,
        parent,
        group: request.group,
        resetSignals: request.resetSignals
      })
    }).pipe(Effect.scoped, Effect.catchTags({
      ExecNotFound: (e) => fail(spawnErrno(e)),
      NotWasm: (e) => fail(spawnErrno(e)),
      InvalidModule: (e) => fail(spawnErrno(e)),
      SandboxOutOfMemory: () => fail(Errno.NOMEM),
      ProcessCreationRefused: () => fail(Errno.AGAIN)
    }))
}
