/**
 * A process's file descriptor table: guest fd → open file description, rights and fd flags.
 * Allocation takes the lowest free fd, as POSIX requires. Observers are told of every change,
 * so the platform can keep the worker's fast-write table in step with the table.
 */
import { Errno } from "@runsc/abi"
import { Effect } from "effect"
import { SyscallError } from "../errors.js"
import type { FileDescription } from "./inode.js"
import type { Dentry } from "./resolve.js"

export interface FdEntry {
  readonly description: FileDescription
  readonly rightsBase: bigint
  readonly rightsInheriting: bigint
  readonly flags: number
  /** For preopened directories: the name the guest sees in fd_prestat_dir_name. */
  readonly preopen?: string
  /** For directories: the name they were opened by, the base of lookups relative to this fd. */
  readonly dentry?: Dentry
}

export const MAX_FDS = 1024

export class FdTable {
  private readonly entries = new Map<number, FdEntry>()
  private onChange: (fd: number, entry: FdEntry | undefined) => void = () => {}

  /** Registers the single observer (the task's channel); it is told of the current entries. */
  observe(onChange: (fd: number, entry: FdEntry | undefined) => void): void {
    this.onChange = onChange
    for (const [fd, entry] of this.entries) onChange(fd, entry)
  }

  get(fd: number): Effect.Effect<FdEntry, SyscallError> {
    const entry = this.entries.get(fd)
    return entry ? Effect.succeed(entry) : Effect.fail(new SyscallError({ errno: Errno.BADF }))
  }

  /** The entry, or undefined; for the syscall fast path that must not allocate. */
  lookup(fd: number): FdEntry | undefined {
    return this.entries.get(fd)
  }

  set(fd: number, entry: FdEntry): void {
    this.entries.set(fd, entry)
    this.onChange(fd, entry)
  }

  allocate(entry: FdEntry): Effect.Effect<number, SyscallError> {
    for (let fd = 0; fd < MAX_FDS; fd++) {
      if (!this.entries.has(fd)) {
        this.set(fd, entry)
        return Effect.succeed(fd)
      }
    }
    return Effect.fail(new SyscallError({ errno: Errno.MFILE }))
  }

  close(fd: number): Effect.Effect<void, SyscallError> {
    return Effect.flatMap(this.get(fd), (entry) => {
      this.entries.delete(fd)
      this.onChange(fd, undefined)
      return entry.description.close
    })
  }

  /** fd_renumber: `from` replaces `to` (which must be open), and `from` is closed. */
  renumber(from: number, to: number): Effect.Effect<void, SyscallError> {
    return Effect.gen(this, function*() {
      const entry = yield* this.get(from)
      const replaced = yield* this.get(to)
      if (from === to) return
      this.entries.delete(from)
      this.onChange(from, undefined)
      this.set(to, entry)
      yield* replaced.description.close
    })
  }

  /** Closes every description; the table is empty afterwards. */
  get closeAll(): Effect.Effect<void> {
    return Effect.suspend(() => {
      const all = [...this.entries.values()]
      for (const fd of [...this.entries.keys()]) {
        this.entries.delete(fd)
        this.onChange(fd, undefined)
      }
      return Effect.forEach(all, (e) => e.description.close, { discard: true })
    })
  }
}
