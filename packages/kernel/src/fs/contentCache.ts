/**
 * Whole-file contents the sentry reads for itself (programs to run, /etc/passwd), cached by the
 * file's identity so that starting the same program again costs no host reads.
 *
 * Invariant: an entry is keyed by the identity the file had when its inode was looked up
 * (device, inode, size, modification and change times), so a file replaced or rewritten on
 * the host gets a new key and is read again; stale entries only age out. The cache holds at
 * most `maxBytes`, dropping its oldest entries first.
 */
import { Effect } from "effect"
import type { SyscallError } from "../errors.js"
import type { Inode } from "./inode.js"

const DEFAULT_MAX_BYTES = 64 * 1024 * 1024

export class ContentCache {
  private readonly entries = new Map<string, Uint8Array>()
  private bytes = 0

  constructor(private readonly maxBytes = DEFAULT_MAX_BYTES) {}

  /**
   * The contents of `inode`, from the cache when its identity is known and cached, else `read`.
   * `read` must hold nothing until it runs (a hit never runs it): suspend an open.
   */
  read(inode: Inode, read: Effect.Effect<Uint8Array, SyscallError>): Effect.Effect<Uint8Array, SyscallError> {
    const key = inode.identity
    if (key === undefined) return read
    const hit = this.entries.get(key)
    if (hit !== undefined) return Effect.succeed(hit)
    return Effect.tap(read, (contents) => Effect.sync(() => this.add(key, contents)))
  }

  private add(key: string, contents: Uint8Array): void {
    if (contents.length > this.maxBytes || this.entries.has(key)) return
    this.entries.set(key, contents)
    this.bytes += contents.length
    for (const [oldest, value] of this.entries) {
      if (this.bytes <= this.maxBytes) break
      this.entries.delete(oldest)
      this.bytes -= value.length
    }
  }
}
