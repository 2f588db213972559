/** `parts` (of `total` bytes together) as one array. */
export const concatBytes = (parts: ReadonlyArray<Uint8Array>, total: number): Uint8Array => {
  const out = new Uint8Array(total)
  let at = 0
  for (const part of parts) {
    out.set(part, at)
    at += part.length
  }
  return out
}

/** The least a chunk is made with: small writes fill one chunk, not an array each. */
const CHUNK = 4096

/**
 * Bytes queued in arrival order (a pipe's buffer): what a writer puts is copied in (its bytes
 * are its channel's, reused by its next call), and a reader takes from the front, whole chunks
 * or part of one.
 *
 * Invariant: when `tail` is set, the last chunk is a view of it, ending where its free room
 * begins (or there are no chunks, and all of it is free); small writes are copied there. So a
 * full 64 KiB pipe holds at most ~16 arrays on the sentry's heap, however it was written: with
 * an array per write, 1-byte writes made it 65,536 (13 MB of heap against the 64 KiB charged),
 * and a few hundred such pipes aborted the sandbox process with a full heap.
 */
export class ByteChunks {
  private chunks: Array<Uint8Array> = []
  private tail: Uint8Array | undefined
  /** Bytes queued. */
  size = 0

  /** Arrays the queued bytes are held in. */
  get chunkCount(): number {
    return this.chunks.length
  }

  /** Copies up to `max` bytes out from the front; `peek` leaves them queued. */
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
    if (!peek) this.size -= out.length
    return out
  }

  put(data: Uint8Array): void {
    this.size += data.length
    let rest = data
    const tail = this.tail
    if (tail !== undefined) {
      const last = this.chunks.at(-1)
      const end = last === undefined ? 0 : last.byteOffset + last.length
      const n = Math.min(tail.length - end, rest.length)
      if (n > 0) {
        tail.set(rest.subarray(0, n), end)
        if (last === undefined) this.chunks.push(tail.subarray(0, n))
        else this.chunks[this.chunks.length - 1] = new Uint8Array(tail.buffer, last.byteOffset, last.length + n)
        rest = rest.subarray(n)
      }
    }
    if (rest.length === 0) return
    const chunk = new Uint8Array(Math.max(rest.length, CHUNK))
    chunk.set(rest)
    this.chunks.push(chunk.subarray(0, rest.length))
    this.tail = chunk.length > rest.length ? chunk : undefined
  }

  clear(): void {
    this.chunks = []
    this.tail = undefined
    this.size = 0
  }
}
