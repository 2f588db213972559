/**
 * One direction of a stream connection: the receiver's buffer, of a fixed capacity (its
 * SO_RCVBUF), which the sender fills and the receiver drains. A full queue makes the sender
 * wait (or fail EAGAIN): a guest can never make the sentry hold more than the capacity, which
 * is charged to its owner's memory when the connection is made.
 *
 * The bytes live in one ring of `capacity` bytes, made at the first put: a send copies into it
 * and a receive copies out of it, with no array made per call (bulk transfers otherwise spend
 * as much in allocation and its garbage collection as in the copies themselves).
 */
import type { Changes } from "@runsc/kernel"

export class ByteQueue {
  /** The sender will send no more (shutdown SHUT_WR, or closed): reads end at 0 once drained. */
  ended = false
  /** The receiver is gone: sends fail EPIPE. */
  closed = false
  /** The receiver shut down its reading (a Unix socket's SHUT_RD): sends fail EPIPE, and what is queued can still be read. */
  refusing = false
  /** Bytes queued. */
  size = 0
  private ring: Uint8Array | undefined
  /** Where the oldest queued byte is in the ring. */
  private head = 0

  constructor(
    readonly capacity: number,
    /** Notified at every change of contents or ends (the connection's). */
    private readonly changes: Changes
  ) {}

  get room(): number {
    return this.capacity - this.size
  }

  /** Copies `data` in at the end; the caller checked it fits (`room`). */
  put(data: Uint8Array): void {
    if (data.length === 0) return
    const ring = (this.ring ??= new Uint8Array(this.capacity))
    const tail = (this.head + this.size) % this.capacity
    const first = Math.min(data.length, this.capacity - tail)
    ring.set(data.subarray(0, first), tail)
    if (first < data.length) ring.set(data.subarray(first), 0)
    this.size += data.length
    this.changes.notify()
  }

  /** Copies up to `max` bytes out from the front into a new array; `peek` leaves them queued. */
  take(max: number, peek = false): Uint8Array {
    const out = new Uint8Array(Math.min(max, this.size))
    this.takeInto(out, 0, out.length, peek)
    return out
  }

  /** `take` into `target` at `at` (up to `max` bytes, as many as fit); how many. */
  takeInto(target: Uint8Array, at: number, max: number, peek = false): number {
    const n = Math.min(max, this.size, target.length - at)
    if (n === 0) return 0
    const ring = this.ring!
    const first = Math.min(n, this.capacity - this.head)
    target.set(ring.subarray(this.head, this.head + first), at)
    if (first < n) target.set(ring.subarray(0, n - first), at + first)
    if (!peek) {
      this.head = (this.head + n) % this.capacity
      this.size -= n
      this.changes.notify()
    }
    return n
  }

  end(): void {
    this.ended = true
    this.changes.notify()
  }

  /** No more is taken in (a Unix socket's SHUT_RD); reads end once what is queued is drained. */
  refuse(): void {
    this.refusing = true
    this.end()
  }

  /** The receiver is gone: what was queued is dropped, and the ring with it. */
  close(): void {
    this.closed = true
    this.size = 0
    this.head = 0
    this.ring = undefined
    this.changes.notify()
  }
}
