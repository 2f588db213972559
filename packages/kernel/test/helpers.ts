/**
 * Shared test helpers: guest fixtures (C-built wasm and WAT assembled with wabt), temporary
 * directories, and running one guest on a Kernel with its stdout/stderr captured in temp files.
 */
import type { ExitStatus } from "@runsc/abi"
import { Cause, Clock, Deferred, Duration, Effect, Exit, Option, type Scope } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import {
  Dentry,
  type FileDescription,
  HostFdBudget,
  hostRoot,
  hostStream,
  type InvalidModule,
  type ProcessCreationRefused,
  type SandboxOutOfMemory,
  Kernel,
  type PidNamespace,
  type SyntheticMount,
  type GoferUnavailable,
  type SyscallError,
  type TaskSet,
  type ThreadGroup
} from "../src/index.js"

const fixturesDir = fileURLToPath(new URL("../../../test/fixtures/", import.meta.url))

const fixtureCache = new Map<string, Uint8Array>()

/** A C fixture compiled to wasm: `test/fixtures/c/<name>.wasm`. */
export const fixture = (name: string): Uint8Array => {
  let bytes = fixtureCache.get(name)
  if (bytes === undefined) {
    bytes = new Uint8Array(Fs.readFileSync(Path.join(fixturesDir, "c", `${name}.wasm`)))
    fixtureCache.set(name, bytes)
  }
  return bytes
}

/** The text of a WAT fixture: `test/fixtures/wat/<name>.wat`. */
export const watFixture = (name: string): string => Fs.readFileSync(Path.join(fixturesDir, "wat", `${name}.wat`), "utf8")

type Wabt = Awaited<ReturnType<typeof import("wabt")>>
let wabtPromise: Promise<Wabt> | undefined

/** Assembles WAT text to a wasm binary. */
export const wat = (text: string, name = "guest.wat"): Effect.Effect<Uint8Array> =>
  Effect.promise(async () => {
    wabtPromise ??= import("wabt").then((m) => m.default())
    const wabt = await wabtPromise
    const module = wabt.parseWat(name, text)
    try {
      return new Uint8Array(module.toBinary({}).buffer)
    } finally {
      module.destroy()
    }
  })

/** A temporary directory removed when the scope closes. */
export const tempDir = (prefix = "runsc-kernel-test-"): Effect.Effect<string, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), prefix))),
    (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
  )

/** The root dentry of a host directory served as a container root. */
export const rootOf = (dir: string): Effect.Effect<Dentry, SyscallError | GoferUnavailable, Scope.Scope> =>
  Effect.map(Effect.flatMap(HostFdBudget.ofProcess, (fds) => hostRoot(dir, { fds })), Dentry.root)

/** A host fd opened on a temp file, closed with the scope; `read` returns the whole file. */
export const captureFile = (dir: string, name: string, content?: string) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const path = Path.join(dir, name)
      if (content !== undefined) Fs.writeFileSync(path, content)
      const fd = Fs.openSync(path, content !== undefined ? "r" : "w+")
      return { fd, path, read: () => Fs.readFileSync(path, "utf8"), bytes: () => Fs.readFileSync(path) }
    }),
    ({ fd }) => Effect.sync(() => Fs.closeSync(fd))
  )

export interface GuestRun {
  readonly tg: ThreadGroup
  /** Waits for the exit status. */
  readonly exit: Effect.Effect<ExitStatus>
  readonly stdout: () => string
  readonly stdoutBytes: () => Buffer
  readonly stderr: () => string
}

export interface GuestOptions {
  readonly bytes: Uint8Array
  readonly argv?: ReadonlyArray<string>
  readonly env?: ReadonlyArray<string>
  readonly root?: Dentry
  readonly stdin?: string | FileDescription
  readonly programPath?: string
  readonly pidNamespace?: PidNamespace<ThreadGroup>
  readonly syntheticMounts?: ReadonlyArray<SyntheticMount>
  /** The set (container) the process joins (default: the kernel's own). */
  readonly tasks?: TaskSet
}

/**
 * Starts a guest with stdin from a temp file (or the given description) and stdout/stderr
 * captured in temp files. The files live as long as the scope.
 */
export const startGuest = (
  options: GuestOptions
): Effect.Effect<GuestRun, InvalidModule | SandboxOutOfMemory | ProcessCreationRefused | SyscallError | GoferUnavailable, Kernel | Scope.Scope> =>
  Effect.gen(function*() {
    const kernel = yield* Kernel
    const io = yield* tempDir("runsc-io-")
    const root = options.root ?? (yield* rootOf(io))
    const stdin = typeof options.stdin === "object"
      ? options.stdin
      : hostStream((yield* captureFile(io, "stdin", options.stdin ?? "")).fd)
    const out = yield* captureFile(io, "stdout")
    const err = yield* captureFile(io, "stderr")
    const tg = yield* kernel.startProcess({
      argv: options.argv ?? ["guest"],
      env: options.env ?? [],
      root,
      cwd: root,
      programPath: options.programPath ?? "/x.wasm",
      programBytes: options.bytes,
      stdio: [stdin, hostStream(out.fd), hostStream(err.fd)],
      ...(options.pidNamespace ? { pidNamespace: options.pidNamespace } : {}),
      ...(options.syntheticMounts ? { syntheticMounts: options.syntheticMounts } : {}),
      ...(options.tasks ? { tasks: options.tasks } : {})
    })
    // A test that fails half-way must not leave its guest running in the shared kernel.
    yield* Effect.addFinalizer(() => kernel.signal(tg, 9).pipe(Effect.zipRight(Deferred.await(tg.exitStatus))))
    return { tg, exit: Deferred.await(tg.exitStatus), stdout: out.read, stdoutBytes: out.bytes, stderr: err.read }
  })

export interface GuestResult {
  readonly status: ExitStatus
  readonly stdout: string
  readonly stdoutBytes: Buffer
  readonly stderr: string
  readonly tg: ThreadGroup
}

/** Runs a guest to completion (at most `timeout`, default 20 s). */
export const runGuest = (
  options: GuestOptions,
  timeout: Duration.DurationInput = "20 seconds"
): Effect.Effect<GuestResult, InvalidModule | SandboxOutOfMemory | ProcessCreationRefused | SyscallError | GoferUnavailable, Kernel> =>
  Effect.scoped(
    Effect.gen(function*() {
      const run = yield* startGuest(options)
      const status = yield* run.exit.pipe(
        Effect.timeoutFail({ duration: timeout, onTimeout: () => new Error(`guest did not exit within ${Duration.format(timeout)}`) }),
        Effect.orDie
      )
      return { status, stdout: run.stdout(), stdoutBytes: run.stdoutBytes(), stderr: run.stderr(), tg: run.tg }
    })
  )

export const Exited = (code: number): ExitStatus => ({ _tag: "Exited", code })
export const Signaled = (signal: number): ExitStatus => ({ _tag: "Signaled", signal })

/** Milliseconds of (real) time an effect takes, with its result. */
export const timed = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<[A, number], E, R> =>
  Effect.gen(function*() {
    const start = yield* Clock.currentTimeMillis
    const a = yield* self
    return [a, (yield* Clock.currentTimeMillis) - start] as [A, number]
  })

/** Polls `check` every 10 ms until it holds; dies with `what` after `timeout`. */
export const eventually = (
  check: () => boolean,
  what = "condition",
  timeout: Duration.DurationInput = "10 seconds"
): Effect.Effect<void> =>
  Effect.gen(function*() {
    const deadline = (yield* Clock.currentTimeMillis) + Duration.toMillis(timeout)
    while (!check()) {
      if ((yield* Clock.currentTimeMillis) > deadline) return yield* Effect.dieMessage(`${what}: not met in time`)
      yield* Effect.sleep("10 millis")
    }
  })

/** The exit of an effect that should fail, for asserting its typed error. */
export const failureOf = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<E | undefined, never, R> =>
  Effect.map(Effect.exit(self), (exit) =>
    Exit.isFailure(exit) ? Option.getOrUndefined(Cause.failureOption(exit.cause)) : undefined)

/** A shared Kernel layer for a test file: one warm worker, live clock. */
export const kernelLayer = Kernel.layer({ warmWorkers: 1 })

// ---- WAT probes ------------------------------------------------------------------------------

/** wasm signatures of the imports a probe may call. */
const signatures: Record<string, string> = {
  args_get: "(param i32 i32) (result i32)",
  args_sizes_get: "(param i32 i32) (result i32)",
  environ_get: "(param i32 i32) (result i32)",
  environ_sizes_get: "(param i32 i32) (result i32)",
  clock_res_get: "(param i32 i32) (result i32)",
  clock_time_get: "(param i32 i64 i32) (result i32)",
  fd_advise: "(param i32 i64 i64 i32) (result i32)",
  fd_allocate: "(param i32 i64 i64) (result i32)",
  fd_close: "(param i32) (result i32)",
  fd_datasync: "(param i32) (result i32)",
  fd_fdstat_get: "(param i32 i32) (result i32)",
  fd_fdstat_set_flags: "(param i32 i32) (result i32)",
  fd_fdstat_set_rights: "(param i32 i64 i64) (result i32)",
  fd_filestat_get: "(param i32 i32) (result i32)",
  fd_filestat_set_size: "(param i32 i64) (result i32)",
  fd_filestat_set_times: "(param i32 i64 i64 i32) (result i32)",
  fd_pread: "(param i32 i32 i32 i64 i32) (result i32)",
  fd_prestat_get: "(param i32 i32) (result i32)",
  fd_prestat_dir_name: "(param i32 i32 i32) (result i32)",
  fd_pwrite: "(param i32 i32 i32 i64 i32) (result i32)",
  fd_read: "(param i32 i32 i32 i32) (result i32)",
  fd_readdir: "(param i32 i32 i32 i64 i32) (result i32)",
  fd_renumber: "(param i32 i32) (result i32)",
  fd_seek: "(param i32 i64 i32 i32) (result i32)",
  fd_sync: "(param i32) (result i32)",
  fd_tell: "(param i32 i32) (result i32)",
  fd_write: "(param i32 i32 i32 i32) (result i32)",
  path_create_directory: "(param i32 i32 i32) (result i32)",
  path_filestat_get: "(param i32 i32 i32 i32 i32) (result i32)",
  path_filestat_set_times: "(param i32 i32 i32 i32 i64 i64 i32) (result i32)",
  path_link: "(param i32 i32 i32 i32 i32 i32 i32) (result i32)",
  path_open: "(param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)",
  path_readlink: "(param i32 i32 i32 i32 i32 i32) (result i32)",
  path_remove_directory: "(param i32 i32 i32) (result i32)",
  path_rename: "(param i32 i32 i32 i32 i32 i32) (result i32)",
  path_symlink: "(param i32 i32 i32 i32 i32) (result i32)",
  path_unlink_file: "(param i32 i32 i32) (result i32)",
  poll_oneoff: "(param i32 i32 i32 i32) (result i32)",
  proc_exit: "(param i32)",
  proc_raise: "(param i32) (result i32)",
  sched_yield: "(result i32)",
  random_get: "(param i32 i32) (result i32)",
  sock_accept: "(param i32 i32 i32) (result i32)",
  sock_recv: "(param i32 i32 i32 i32 i32 i32) (result i32)",
  sock_send: "(param i32 i32 i32 i32 i32) (result i32)",
  sock_shutdown: "(param i32 i32) (result i32)"
}

export const wasiSignatures: Readonly<Record<string, string>> = signatures

/** The process calls of docs/process-api.md: import module and wasm signature. */
export const processSignatures: Readonly<Record<string, { readonly module: string; readonly sig: string }>> = {
  proc_id: { module: "wasix_32v1", sig: "(param i32) (result i32)" },
  proc_parent: { module: "wasix_32v1", sig: "(param i32 i32) (result i32)" },
  proc_signal: { module: "wasix_32v1", sig: "(param i32 i32) (result i32)" },
  proc_join: { module: "wasix_32v1", sig: "(param i32 i32 i32) (result i32)" },
  fd_pipe: { module: "wasix_32v1", sig: "(param i32 i32) (result i32)" },
  fd_dup: { module: "wasix_32v1", sig: "(param i32 i32) (result i32)" },
  proc_spawn: { module: "runsc_proc_v1", sig: "(param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)" },
  proc_setpgid: { module: "runsc_proc_v1", sig: "(param i32 i32) (result i32)" },
  proc_getpgid: { module: "runsc_proc_v1", sig: "(param i32 i32) (result i32)" },
  proc_setsid: { module: "runsc_proc_v1", sig: "(param i32) (result i32)" },
  proc_getsid: { module: "runsc_proc_v1", sig: "(param i32 i32) (result i32)" },
  tty_getpgrp: { module: "runsc_proc_v1", sig: "(param i32 i32) (result i32)" },
  tty_setpgrp: { module: "runsc_proc_v1", sig: "(param i32 i32) (result i32)" },
  proc_sigignore: { module: "runsc_proc_v1", sig: "(param i32 i32) (result i32)" }
}

/** Escapes bytes for a WAT string literal. */
export const watString = (bytes: Uint8Array | string): string => {
  const b = typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes
  let out = ""
  for (const x of b) out += `\\${x.toString(16).padStart(2, "0")}`
  return out
}

export interface ProbeOptions {
  /** Pages of memory (64 KiB each); default 1. */
  readonly pages?: number
  /** Data segments: [offset, bytes or text]. */
  readonly data?: ReadonlyArray<readonly [number, Uint8Array | string]>
  /** An i32 expression; the guest exits with its value (proc_exit). */
  readonly body: string
  /** Extra module fields (functions, globals). */
  readonly extra?: string
}

/**
 * The WAT text of a probe guest: every WASI function and process call imported as `$name`, one memory, and a
 * `_start` that calls `proc_exit(body)` — so the test reads the errno it got as the exit code.
 */
export const probeText = (options: ProbeOptions): string => `
(module
${Object.entries(signatures).map(([name, sig]) => `  (import "wasi_snapshot_preview1" "${name}" (func $${name} ${sig}))`).join("\n")}
${Object.entries(processSignatures).map(([name, { module, sig }]) => `  (import "${module}" "${name}" (func $${name} ${sig}))`).join("\n")}
  (memory (export "memory") ${options.pages ?? 1})
${(options.data ?? []).map(([at, bytes]) => `  (data (i32.const ${at}) "${watString(bytes)}")`).join("\n")}
${options.extra ?? ""}
  (func (export "_start")
    (call $proc_exit ${options.body})))
`

export const probe = (options: ProbeOptions): Effect.Effect<Uint8Array> => wat(probeText(options), "probe.wat")
