/**
 * The sandbox's memory account: what its guests make the sandbox process hold, against one
 * ceiling (the root container's memory limit, else a share of the host's memory; see
 * KernelOptions.totalMemory). Four kinds of charges share it:
 *   - file data of the in-memory filesystems (tmpfs mounts, overlay upper layers);
 *   - their inodes and names, which live on the sentry's JS heap (`chargeHeap`);
 *   - guest linear memory: a process's initial pages when it starts, each memory.grow before
 *     it happens (a grow past the ceiling returns -1);
 *   - a fixed charge per process for what its worker thread costs the host (PROCESS_MEMORY).
 *
 * A container's own account (`child`: its `linux.resources.memory.limit`) lies within the
 * sandbox's: what it charges counts against both, and a charge either fits both or neither.
 *
 * The JS heap is a ceiling of its own. V8's is a few GiB whatever the host has, and a full one
 * aborts the whole sandbox process (a guest making empty files did so after 4.5 minutes of
 * collections). So what guests make the sentry hold on its heap also counts against a heap
 * share, kept by the outermost account, which is refused before V8's limit is near.
 *
 * Invariant: `used` is the sum of what was charged and not released, and never exceeds `total`;
 * the heap charges within it never exceed the heap share. A charge that would pass either (or
 * its parent's) is refused whole and changes nothing. Only the
 * sentry's thread charges and releases (workers ask through a syscall), so no atomics are needed.
 */
import * as Os from "node:os"
import * as V8 from "node:v8"

/**
 * What a process costs the host beyond its guest memory: a worker thread with its own V8
 * isolate and Node environment, measured at 8-9 MiB each (an idle one, with its stack).
 */
export const PROCESS_MEMORY = 8 * 1024 * 1024

/** Bytes in a page of wasm memory. */
export const WASM_PAGE = 65536

/**
 * What the process limit counts per process: its share (PROCESS_MEMORY) and a small guest's
 * memory (a C program starts with well under 1 MiB), so that a fork bomb of small processes meets
 * the process limit (EAGAIN) a little before the sandbox's memory is full (which is ENOMEM).
 */
export const PROCESS_BUDGET = PROCESS_MEMORY + 1024 * 1024

/**
 * The sandbox's memory when nobody sized it (no memory limit in the spec): half the host's.
 * Not all of it, since the host needs memory of its own and the sandbox process holds more
 * than what it charges (its own heap, compiled code); a fixed half, not what is free at boot, so
 * that the same bundle gets the same sandbox on a busy machine and on an idle one. The same
 * fraction Linux gives a tmpfs by default, but here for everything the sandbox's guests hold
 * together: every tmpfs, overlay, guest memory and process.
 */
export const defaultTotalMemory = (): number => Math.floor(Os.totalmem() / 2)

/**
 * What guests may make the sentry hold on its JS heap: half of V8's heap limit. The other half
 * is the sentry's own (its tasks, descriptions, sockets, the collector's room to work).
 */
export const defaultHeapShare = (): number => Math.floor(V8.getHeapStatistics().heap_size_limit / 2)

export class MemoryAccount {
  private charged = 0
  private refused = 0
  private heapCharged = 0

  /**
   * `heapShare` is the outermost account's (defaultHeapShare unless given); an account within
   * another charges its heap bytes to the outermost one's.
   */
  constructor(readonly total: number, private readonly parent?: MemoryAccount, private readonly heapShare = Number.MAX_SAFE_INTEGER) {}

  /** An account within this one, of at most `limit` bytes (a container's). */
  child(limit: number): MemoryAccount {
    return new MemoryAccount(Math.min(limit, this.total), this)
  }

  /** Heap bytes charged now, sandbox-wide (an account within another answers the outermost's). */
  get heapUsed(): number {
    return this.outermost().heapCharged
  }

  /** Bytes charged now. */
  get used(): number {
    return this.charged
  }

  /** Charges refused so far (a cgroup's memory `failcnt`, its `oom` events). */
  get failures(): number {
    return this.refused
  }

  /** Bytes that may still be charged (here and in every account it lies within). */
  get free(): number {
    const own = this.total - this.charged
    return this.parent === undefined ? own : Math.min(own, this.parent.free)
  }

  /** Charges `bytes` if they fit under the total (and its parent's); false (and nothing charged) when not. */
  charge(bytes: number): boolean {
    if (bytes > this.total - this.charged || (this.parent !== undefined && !this.parent.charge(bytes))) {
      this.refused++
      return false
    }
    this.charged += bytes
    return true
  }

  /** Gives back `bytes` charged earlier. */
  release(bytes: number): void {
    this.charged -= bytes
    this.parent?.release(bytes)
  }

  /**
   * Charges `bytes` that the sentry holds on its JS heap for a guest (a tmpfs inode, a name): as
   * `charge` does, and against the heap share too; false (and nothing charged) when either refuses.
   */
  chargeHeap(bytes: number): boolean {
    const outermost = this.outermost()
    if (bytes > outermost.heapShare - outermost.heapCharged) {
      this.refused++
      return false
    }
    if (!this.charge(bytes)) return false
    outermost.heapCharged += bytes
    return true
  }

  /** Gives back heap bytes charged earlier with `chargeHeap`. */
  releaseHeap(bytes: number): void {
    this.release(bytes)
    this.outermost().heapCharged -= bytes
  }

  private outermost(): MemoryAccount {
    return this.parent === undefined ? this : this.parent.outermost()
  }
}
