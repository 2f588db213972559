/**
 * The runsc side, in process: a Kernel kept up for the whole suite (its warm worker pool ready)
 * and guests started on it with `startProcess`, or a whole throw-away sandbox (Loader layer).
 */
import { type ExitStatus } from "@runsc/abi"
import { Dentry, hostMount, hostRoot, hostStream, Kernel, overlay } from "@runsc/kernel"
import { Loader } from "@runsc/loader"
import { defaultSpec } from "@runsc/spec"
import { Deferred, Effect, ManagedRuntime } from "effect"
import { now } from "./stats.js"

export type KernelRuntime = ManagedRuntime.ManagedRuntime<Kernel, never>

export const makeKernelRuntime = (warmWorkers = 1): KernelRuntime =>
  ManagedRuntime.make(Kernel.layer({ warmWorkers }))

export interface GuestRun {
  readonly bytes: Uint8Array
  readonly argv: ReadonlyArray<string>
  /** Host directory used as the guest's root (preopened as "/"). */
  readonly rootPath: string
  /**
   * How the root is served: read-only (default), writable through to the host (as an rw bind
   * mount is), or under a fresh copy-on-write overlay (as a container's root is).
   */
  readonly rootMode?: "readonly" | "writable" | "overlay"
  /** The guest's stdin (default: this process's). */
  readonly stdin?: number
  readonly stdout: number
}

export interface GuestResult {
  readonly status: ExitStatus
  /** startProcess called → exit status completed, in ms. */
  readonly ms: number
}

/**
 * Starts one guest process on the kernel (its root and stdio made first) and calls `started`
 * right before `startProcess`, which the caller's clock may start from; its thread group.
 */
export const startOnKernel = (run: GuestRun, started: () => void = () => {}) =>
  Effect.gen(function*() {
    const kernel = yield* Kernel
    const fds = kernel.hostFds
    const lower = run.rootMode === "writable" ? yield* hostMount(run.rootPath, { writable: true, fds }) : yield* hostRoot(run.rootPath, { fds })
    const root = Dentry.root(run.rootMode === "overlay" ? yield* overlay(lower, { instance: 1 }) : lower)
    const stdio = [hostStream(run.stdin ?? 0), hostStream(run.stdout), hostStream(2)] as const
    started()
    return yield* kernel.startProcess({
      argv: run.argv,
      env: [],
      root,
      cwd: root,
      programPath: run.argv[0] ?? "guest",
      programBytes: run.bytes,
      stdio
    })
  })

/**
 * One guest process on the kernel. The root dentry and stdio descriptions are built before the
 * clock starts; the measured span is `startProcess` → exit status (worker back in the pool).
 */
export const runOnKernel = (run: GuestRun): Effect.Effect<GuestResult, unknown, Kernel> =>
  Effect.scoped(
  Effect.gen(function*() {
    const kernel = yield* Kernel
    let t0 = 0
    const tg = yield* startOnKernel(run, () => void (t0 = now()))
    const status = yield* Deferred.await(tg.exitStatus)
    const ms = now() - t0
    yield* kernel.reap(tg)
    return { status, ms }
  }))

/**
 * A whole throw-away sandbox, as `runsc do` builds it but without the CLI: Loader layer (kernel,
 * worker pool, module compile), root init run to its exit, teardown. Returns the total in ms.
 */
export const runFreshSandbox = (
  hostProgram: string,
  argv: ReadonlyArray<string>,
  rootPath: string,
  stdout: number
): Promise<{ status: ExitStatus; ms: number }> => {
  const template = defaultSpec(argv)
  const spec = { ...template, process: { ...template.process!, env: [] }, root: { path: rootPath, readonly: true } }
  const t0 = now()
  return Effect.runPromise(
    Loader.run.pipe(
      Effect.provide(
        Loader.layer({
          containerId: "bench-sandbox",
          bundle: { dir: rootPath, spec, rootPath },
          hostProgram,
          stdio: { stdout }
        })
      )
    )
  ).then((status) => ({ status, ms: now() - t0 }))
}
