/**
 * Typed failures of the kernel. `SyscallError` is what a syscall handler fails with and becomes
 * the guest-visible errno; the others are actionable failures reported to whoever asked the
 * kernel to do something (start a process, resolve an executable).
 */
import { type Errno, errnoFromHostCode, errnoName } from "@runsc/abi"
import { Data } from "effect"

export class SyscallError extends Data.TaggedError("SyscallError")<{ readonly errno: Errno }> {
  override get message(): string {
    return errnoName(this.errno)
  }
}

/** A failed host `fs` call, as the errno it carries. */
export const fromHostError = (error: unknown): SyscallError =>
  new SyscallError({ errno: errnoFromHostCode((error as NodeJS.ErrnoException | undefined)?.code) })

export class NotWasm extends Data.TaggedError("NotWasm")<{ readonly path: string }> {
  override get message(): string {
    return `${this.path}: not a WebAssembly module (no \\0asm header)`
  }
}

export class InvalidModule extends Data.TaggedError("InvalidModule")<{
  readonly path: string
  readonly reason: string
}> {
  override get message(): string {
    return `${this.path}: invalid WebAssembly module: ${this.reason}`
  }
}

export class ExecNotFound extends Data.TaggedError("ExecNotFound")<{
  readonly name: string
  readonly reason: string
  /** What execve would fail with (ENOENT, EACCES, ENOTDIR, ELOOP). */
  readonly errno: Errno
}> {
  override get message(): string {
    return `${this.name}: ${this.reason}`
  }
}
