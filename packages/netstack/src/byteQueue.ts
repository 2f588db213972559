/**
 * One direction of a stream connection: the receiver's buffer, of a fixed capacity (its
 * SO_RCVBUF), which the sender fills and the receiver drains. A full queue makes the sender
 * wait (or fail EAGAIN): a guest can never make the sentry hold more than the capacity, which
 * is charged to its owner's memory when the connection is made.
 */
import type { Changes } from "@runsc/kernel"

export class ByteQueue {
  private chunks: Array<Uint8Array> = []
  size = 0
  /** The sender will send no more (shutdown SHUT_WR, or closed): reads end at 0 once drained. */
  ended = false
  /** The receiver is gone (closed, or shut down for reading): sends fail EPIPE. */
  closed = false

  constructor(
    readonly capacity: number,
    /** Notified at every change of contents or ends (the connection's). */
    private readonly changes: Changes
  ) {}

  get room(): number {
    return this.capacity - this.size
  }

  /** Copies up to `max` bytes out; `peek` leaves them queued. */
  take(max: number, peek = false): Uint8Array {
    const out = new Uint8Array(Math.min(max, this.size))
    let at = 0
    let index = 0
    while (at < out.length) {
      const head = this.chunks[index]!
      const n = Math.min(head.length, out.length - at)
      out.set(head.subarray(0, n), at)
      at += n
      if (peek) index++
      else if (n === head.length) this.chunks.shift()
      else this.chunks[0] = head.subarray(n)
    }
    if (!peek && out.length > 0) {
      this.size -= out.length
      this.changes.notify()
    }
    return out
  }

  /** Queues a copy of `data` (the caller's bytes are the channel's, reused by the next call). */
  put(data: Uint8Array): void {
    this.chunks.push(data.slice())
    this.size += data.length
    this.changes.notify()
  }

  end(): void {
    this.ended = true
    this.changes.notify()
  }

  /** The receiver is gone: what was queued is dropped. */
  close(): void {
    this.closed = true
    this.chunks = []
    this.size = 0
    this.changes.notify()
  }
}
