/**
 * Bytes queued in arrival order (a pipe's buffer, one direction of a socket connection): what a
 * writer puts is copied in (its bytes are its channel's, reused by its next call), and a reader
 * takes from the front, whole chunks or part of one.
 */
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

export class ByteChunks {
  private chunks: Array<Uint8Array> = []
  /** Bytes queued. */
  size = 0

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
    this.chunks.push(data.slice())
    this.size += data.length
  }

  clear(): void {
    this.chunks = []
    this.size = 0
  }
}
