/**
 * One direction of a stream connection: the receiver's buffer, of a fixed capacity (its
 * SO_RCVBUF), which the sender fills and the receiver drains. A full queue makes the sender
 * wait (or fail EAGAIN): a guest can never make the sentry hold more than the capacity, which
 * is charged to its owner's memory when the connection is made.
 */
import { ByteChunks, type Changes } from "@runsc/kernel"

export class ByteQueue extends ByteChunks {
  /** The sender will send no more (shutdown SHUT_WR, or closed): reads end at 0 once drained. */
  ended = false
  /** The receiver is gone (closed, or shut down for reading): sends fail EPIPE. */
  closed = false

  constructor(
    readonly capacity: number,
    /** Notified at every change of contents or ends (the connection's). */
    private readonly changes: Changes
  ) {
    super()
  }

  get room(): number {
    return this.capacity - this.size
  }

  override take(max: number, peek = false): Uint8Array {
    const out = super.take(max, peek)
    if (!peek && out.length > 0) this.changes.notify()
    return out
  }

  override put(data: Uint8Array): void {
    super.put(data)
    this.changes.notify()
  }

  end(): void {
    this.ended = true
    this.changes.notify()
  }

  /** The receiver is gone: what was queued is dropped. */
  close(): void {
    this.closed = true
    this.clear()
    this.changes.notify()
  }
}
