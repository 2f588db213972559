/**
 * fd_readdir's listings: the entries of an open directory as its first call (cookie 0) saw them,
 * so that the cookies of later calls stay stable while the directory changes.
 *
 * Kept per description, but within one sandbox-wide budget (LISTINGS_HEAP), least recently used
 * first out: a listing lives on the sentry's heap (~250 bytes an entry), and a guest holding a
 * thousand descriptions of a directory of 20,000 entries, each listed once, aborted the whole
 * sandbox process with a full heap. A description whose listing was let go lists its directory
 * again at its next call and goes on from its cookie, which is exact while the directory has not
 * changed meanwhile (what Linux promises of names added or removed after opendir is no more).
 * The newest listing is always kept, however large.
 */
import type { FdEntry } from "../fs/fdTable.js"

export type Listing = ReadonlyArray<{ readonly name: Uint8Array; readonly ino: bigint; readonly filetype: number }>

type Description = FdEntry["description"]

/** What the listings of a sandbox may hold of the sentry's heap together. */
export const LISTINGS_HEAP = 64 * 1024 * 1024

/** An entry's heap: its object, its ino, its name's array (measured ~240 bytes with a short name). */
const entryHeap = (name: Uint8Array): number => 256 + name.length

export class Listings {
  private readonly kept = new Map<Description, { readonly listing: Listing; readonly bytes: number }>()
  private bytes = 0

  constructor(private readonly budget = LISTINGS_HEAP) {}

  /** Heap bytes the kept listings are estimated at. */
  get heapUsed(): number {
    return this.bytes
  }

  /** `description`'s listing, if kept (and now the most recently used). */
  get(description: Description): Listing | undefined {
    const kept = this.kept.get(description)
    if (kept === undefined) return undefined
    this.kept.delete(description)
    this.kept.set(description, kept)
    return kept.listing
  }

  /** Keeps `listing` as `description`'s, letting the least recently used others go past the budget. */
  set(description: Description, listing: Listing): void {
    this.forget(description)
    const bytes = listing.reduce((sum, e) => sum + entryHeap(e.name), 0)
    this.kept.set(description, { listing, bytes })
    this.bytes += bytes
    // Oldest first (a Map iterates in insertion order); the newest, last, always stays.
    for (const [other, { bytes }] of this.kept) {
      if (this.bytes <= this.budget || other === description) break
      this.kept.delete(other)
      this.bytes -= bytes
    }
  }

  private forget(description: Description): void {
    const kept = this.kept.get(description)
    if (kept === undefined) return
    this.kept.delete(description)
    this.bytes -= kept.bytes
  }
}
