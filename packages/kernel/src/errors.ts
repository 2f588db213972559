/**
 * Typed failures of the kernel. `SyscallError` is what a syscall handler fails with and becomes
 * the guest-visible errno; the others are actionable failures reported to whoever asked the
 * kernel to do something (start a process, resolve an executable); those are Schema tagged
 * errors, so that they cross the control socket as typed values.
 */
import { type Errno, errnoFromHostCode, errnoName } from "@runsc/abi"
import { Data, type Effect, Exit, Schema } from "effect"

export class SyscallError extends Data.TaggedError("SyscallError")<{ readonly errno: Errno }> {
  override get message(): string {
    return errnoName(this.errno)
  }
}

/**
 * The SyscallError of each errno, made once: an errno is all one carries, and building an Error
 * captures a stack trace, which costs more than many a syscall (a failed lookup is common).
 */
const byErrno: ReadonlyArray<SyscallError> = Array.from({ length: 77 }, (_, errno) => new SyscallError({ errno: errno as Errno }))

export const syscallError = (errno: Errno): SyscallError => byErrno[errno] ?? new SyscallError({ errno })

/** Fails with `errno`: a settled failure (an Exit), which the syscall server reads without a fiber step. */
export const fail = (errno: Errno): Effect.Effect<never, SyscallError> => Exit.fail(syscallError(errno))

/** A failed host `fs` call, as the errno it carries. */
export const fromHostError = (error: unknown): SyscallError =>
  syscallError(errnoFromHostCode((error as NodeJS.ErrnoException | undefined)?.code))

/** The gofer's native core (built at install with the system C compiler) could not be loaded. */
export class GoferUnavailable extends Schema.TaggedError<GoferUnavailable>()("GoferUnavailable", { reason: Schema.String }) {
  override get message(): string {
    return `the gofer's native core is not built, so no host directory can be mounted (reinstall with a C compiler and Node's headers, e.g. apt-get install gcc): ${this.reason}`
  }
}

/** Host trees that could not be handed to a sandbox, or taken by it (fs/donation.ts). */
export class DonationFailed extends Schema.TaggedError<DonationFailed>()("DonationFailed", { reason: Schema.String }) {
  override get message(): string {
    return `the container's host trees could not be handed to its sandbox: ${this.reason}`
  }
}

export class NotWasm extends Schema.TaggedError<NotWasm>()("NotWasm", { path: Schema.String }) {
  override get message(): string {
    return `${this.path}: not a WebAssembly module (no \\0asm header)`
  }
}

export class InvalidModule extends Schema.TaggedError<InvalidModule>()("InvalidModule", {
  path: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `${this.path}: invalid WebAssembly module: ${this.reason}`
  }
}

export class ExecNotFound extends Schema.TaggedError<ExecNotFound>()("ExecNotFound", {
  name: Schema.String,
  reason: Schema.String,
  /** What execve would fail with (ENOENT, EACCES, ENOTDIR, ELOOP). */
  errno: Schema.Number
}) {
  override get message(): string {
    return `${this.name}: ${this.reason}`
  }
}

/** A process could not start: the sandbox's memory cannot hold it (what proc_spawn reports as ENOMEM). */
export class SandboxOutOfMemory extends Schema.TaggedError<SandboxOutOfMemory>()("SandboxOutOfMemory", {
  path: Schema.String,
  /** Bytes the process needs to start: its worker's share and its initial guest memory. */
  needed: Schema.Number,
  /** Bytes the sandbox had free, and its total. */
  free: Schema.Number,
  total: Schema.Number
}) {
  override get message(): string {
    const mib = (bytes: number) => `${(bytes / 1048576).toFixed(1)} MiB`
    return `${this.path}: the sandbox's memory is full (the process needs ${mib(this.needed)}; ${mib(this.free)} of ${mib(this.total)} free)`
  }
}

/**
 * A process was not created: the set it would join is being killed (its container's kill of all
 * its processes, or its destroy), its PID namespace's init has died, or its parent was killed.
 * What proc_spawn reports as EAGAIN.
 */
export class ProcessCreationRefused extends Schema.TaggedError<ProcessCreationRefused>()("ProcessCreationRefused", {
  path: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `${this.path}: no new process may start: ${this.reason}`
  }
}

/** A container's root filesystem cannot be served (missing, not a directory, no gofer). */
export class InvalidRoot extends Schema.TaggedError<InvalidRoot>()("InvalidRoot", {
  path: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `root filesystem ${this.path}: ${this.reason}`
  }
}

/** A mount of the spec cannot be served by the sandbox (a type it has no filesystem for, a bad option, a missing source). */
export class InvalidMount extends Schema.TaggedError<InvalidMount>()("InvalidMount", {
  destination: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `mount at ${this.destination}: ${this.reason}`
  }
}
