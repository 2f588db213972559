/**
 * The content cache of files the sentry reads for itself: a hit costs no host read, a file
 * rewritten or replaced on the host is read again, and the cache stays within its bound.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { ContentCache, type Inode, readFile, resolve } from "../src/index.js"
import { rootOf, tempDir } from "./helpers.js"

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes)

describe("ContentCache", () => {
  it.scoped("serves a file again without reading it; reads it again once the host rewrote or replaced it", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      const file = Path.join(dir, "prog")
      Fs.writeFileSync(file, "first")
      const root = yield* rootOf(dir)
      const cache = new ContentCache()
      const lookup = resolve(root, root, "/prog", { followFinal: true })
      const first = yield* lookup
      assert.strictEqual(text(yield* readFile(first, cache)), "first")
      // Same identity: served from the cache even though the host file is gone.
      Fs.rmSync(file)
      assert.strictEqual(text(yield* readFile(first, cache)), "first")
      // A new file at the path is a new identity.
      Fs.writeFileSync(file, "second, longer")
      assert.strictEqual(text(yield* readFile(yield* lookup, cache)), "second, longer")
      // Rewritten in place to the same size: its times change, so it is read again.
      const before = (yield* lookup).inode.identity
      Fs.writeFileSync(file, "second, LONGER")
      Fs.utimesSync(file, new Date(2001, 1, 1), new Date(2001, 1, 1))
      assert.notStrictEqual((yield* lookup).inode.identity, before)
      assert.strictEqual(text(yield* readFile(yield* lookup, cache)), "second, LONGER")
    }))

  it.effect("keeps at most maxBytes, dropping the oldest entries", () =>
    Effect.gen(function*() {
      const cache = new ContentCache(10)
      let reads = 0
      const inode = (identity: string) => ({ identity }) as unknown as Inode
      const read = (n: number) => Effect.sync(() => (reads++, new Uint8Array(n)))
      yield* cache.read(inode("a"), read(6))
      yield* cache.read(inode("b"), read(4))
      yield* cache.read(inode("a"), read(6))
      assert.strictEqual(reads, 2, "a and b fit: a is a hit")
      yield* cache.read(inode("c"), read(4))
      yield* cache.read(inode("a"), read(6))
      assert.strictEqual(reads, 4, "c pushed the oldest (a) out")
      yield* cache.read(inode("huge"), read(11))
      yield* cache.read(inode("huge"), read(11))
      assert.strictEqual(reads, 6, "larger than the bound: never cached")
    }))
})
