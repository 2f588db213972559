/**
 * A process's file descriptor table: guest fd → open file description, rights and fd flags.
 * Allocation takes the lowest free fd, as POSIX requires. Observers are told of every change,
 * so the platform can keep the worker's fast-write table in step with the table.
 */
import { Errno } from "@runsc/abi"
import { Effect } from "effect"
import { fail, type SyscallError } from "../errors.js"
import { forwarding } from "./forwarding.js"
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

/** The default fd limit (Linux's default soft RLIMIT_NOFILE). */
export const MAX_FDS = 1024

/**
 * How many fd-table entries refer to each open file description, across every table of a
 * kernel (dup, fds a spawned child inherits): a description is closed when its last entry goes.
 */
export class DescriptionRefs {
  private readonly counts = new Map<FileDescription, number>()
  /** What to do when a description one entry alone referred to gets a second (see `whenShared`). */
  private readonly onShared = new Map<FileDescription, () => void>()
  /** What to do when a description is closed, its last entry gone (see `whenClosed`). */
  private readonly onClosed = new Map<FileDescription, () => void>()

  retain(description: FileDescription): void {
    const n = (this.counts.get(description) ?? 0) + 1
    this.counts.set(description, n)
    if (n === 2) {
      const unshare = this.onShared.get(description)
      this.onShared.delete(description)
      unshare?.()
    }
  }

  /** Whether exactly one entry (of any table) refers to `description`. */
  exclusive(description: FileDescription): boolean {
    return this.counts.get(description) === 1
  }

  /** Runs `f` once, when a second entry comes to refer to `description` (or not at all); `cancel` forgets it. */
  whenShared(description: FileDescription, f: () => void): { readonly cancel: () => void } {
    this.onShared.set(description, f)
    return { cancel: () => this.onShared.get(description) === f && this.onShared.delete(description) }
  }

  /** Runs `f` once, when `description` is closed because its last entry went. */
  whenClosed(description: FileDescription, f: () => void): void {
    this.onClosed.set(description, f)
  }

  release(description: FileDescription): Effect.Effect<void> {
    const n = (this.counts.get(description) ?? 1) - 1
    if (n > 0) {
      this.counts.set(description, n)
      return Effect.void
    }
    this.counts.delete(description)
    this.onShared.delete(description)
    const closed = this.onClosed.get(description)
    if (closed !== undefined) {
      this.onClosed.delete(description)
      closed()
    }
    return description.closeNow?.() ?? description.close
  }
}

export class FdTable {
  private readonly entries = new Map<number, FdEntry>()
  private onChange: (fd: number, entry: FdEntry | undefined) => void = () => {}

  /** `limit`: the process's RLIMIT_NOFILE; fds are below it, and past it allocation is EMFILE. */
  constructor(private readonly refs: DescriptionRefs, readonly limit: number = MAX_FDS) {}

  /** Registers the single observer (the task's channel); it is told of the current entries. */
  observe(onChange: (fd: number, entry: FdEntry | undefined) => void): void {
    this.onChange = onChange
    for (const [fd, entry] of this.entries) onChange(fd, entry)
  }

  get(fd: number): Effect.Effect<FdEntry, SyscallError> {
    const entry = this.entries.get(fd)
    return entry ? Effect.succeed(entry) : fail(Errno.BADF)
  }

  /** The entry, or undefined; for the syscall fast path that must not allocate. */
  lookup(fd: number): FdEntry | undefined {
    return this.entries.get(fd)
  }

  /** Every open fd, in order (a child's inheritance, state dumps). */
  get fds(): ReadonlyArray<number> {
    return [...this.entries.keys()].sort((a, b) => a - b)
  }

  /** Installs `entry` at `fd`; whatever `fd` referred to is closed. */
  set(fd: number, entry: FdEntry): Effect.Effect<void> {
    return Effect.suspend(() => {
      const replaced = this.entries.get(fd)
      this.refs.retain(entry.description)
      this.entries.set(fd, entry)
      this.onChange(fd, entry)
      return replaced ? this.refs.release(replaced.description) : Effect.void
    })
  }

  /**
   * A new description of what `fd` refers to, as opening /proc/self/fd/N (or /dev/stdin) gives:
   * reads, writes and the offset are the original's, and the original stays open until this one
   * is closed too.
   */
  reopen(fd: number): Effect.Effect<FileDescription, SyscallError> {
    return Effect.map(this.get(fd), ({ description }) => {
      this.refs.retain(description)
      let closed = false
      return forwarding(description, {
        close: Effect.suspend(() => {
          if (closed) return Effect.void
          closed = true
          return this.refs.release(description)
        })
      })
    })
  }

  /** Changes an fd's flags or rights: `entry` refers to the same description as before. */
  update(fd: number, entry: FdEntry): void {
    this.entries.set(fd, entry)
    this.onChange(fd, entry)
  }

  /** Runs `f` once, when `description` is closed because its last entry (of any table) went. */
  whenClosed(description: FileDescription, f: () => void): void {
    this.refs.whenClosed(description, f)
  }

  /** Installs `entry` at the lowest free fd (EMFILE when there is none). */
  allocate(entry: FdEntry): Effect.Effect<number, SyscallError> {
    for (let fd = 0; fd < this.limit; fd++) {
      if (!this.entries.has(fd)) {
        this.refs.retain(entry.description)
        this.entries.set(fd, entry)
        this.onChange(fd, entry)
        return Effect.succeed(fd)
      }
    }
    return fail(Errno.MFILE)
  }

  /** Acts when called (settled where the description closes at once, see settled.ts). */
  close(fd: number): Effect.Effect<void, SyscallError> {
    const entry = this.entries.get(fd)
    if (entry === undefined) return fail(Errno.BADF)
    this.entries.delete(fd)
    this.onChange(fd, undefined)
    return this.refs.release(entry.description)
  }

  /** fd_renumber: `from` replaces `to` (which must be open), and `from` is closed. */
  renumber(from: number, to: number): Effect.Effect<void, SyscallError> {
    return Effect.gen(this, function*() {
      const entry = yield* this.get(from)
      yield* this.get(to)
      if (from === to) return
      this.entries.delete(from)
      this.onChange(from, undefined)
      // `from`'s reference moves to `to`: retained by set, released here.
      yield* this.set(to, entry)
      yield* this.refs.release(entry.description)
    })
  }

  /** Closes every fd; the table is empty afterwards. */
  get closeAll(): Effect.Effect<void> {
    return Effect.suspend(() => {
      const all = [...this.entries.values()]
      for (const fd of [...this.entries.keys()]) {
        this.entries.delete(fd)
        this.onChange(fd, undefined)
      }
      return Effect.forEach(all, (e) => this.refs.release(e.description), { discard: true })
    })
  }
}
