/**
 * fd_readdir's listings within their heap budget: least recently used out first, the newest
 * always kept, and a listing's bytes counted once however often it is replaced.
 */
import { assert, describe, it } from "@effect/vitest"
import { Listings, type Listing } from "../src/syscalls/listings.js"

type Description = Parameters<Listings["get"]>[0]
const description = () => ({}) as Description
/** A listing of `n` entries of 4-byte names: 260 bytes each. */
const listing = (n: number): Listing => Array.from({ length: n }, (_, i) => ({ name: new Uint8Array(4), ino: BigInt(i), filetype: 4 }))

describe("Listings", () => {
  it("keeps listings within the budget, least recently used out first", () => {
    const listings = new Listings(260 * 30)
    const [a, b, c, d] = [description(), description(), description(), description()]
    listings.set(a, listing(10))
    listings.set(b, listing(10))
    listings.set(c, listing(10))
    assert.strictEqual(listings.heapUsed, 260 * 30)
    // a used again: b is now the oldest.
    assert.isDefined(listings.get(a))
    listings.set(d, listing(10))
    assert.isUndefined(listings.get(b), "the least recently used went")
    for (const kept of [a, c, d]) assert.isDefined(listings.get(kept))
    assert.strictEqual(listings.heapUsed, 260 * 30)
  })

  it("a new listing of a description replaces its old one; the newest is kept even past the budget, alone", () => {
    const listings = new Listings(260 * 10)
    const [a, b] = [description(), description()]
    listings.set(a, listing(5))
    listings.set(a, listing(8))
    assert.strictEqual(listings.heapUsed, 260 * 8)
    listings.set(b, listing(1000))
    assert.isUndefined(listings.get(a))
    assert.lengthOf(listings.get(b)!, 1000)
    assert.strictEqual(listings.heapUsed, 260 * 1000)
  })

  it("a thousand descriptions of a directory of 20,000 entries stay within the budget", () => {
    const listings = new Listings()
    const big = listing(20_000)
    for (let i = 0; i < 1000; i++) listings.set(description(), big)
    assert.isAtMost(listings.heapUsed, 64 * 1024 * 1024)
  })
})
