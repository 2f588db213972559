/**
 * A pipe's byte queue against a plain array: random puts, takes, peeks and clears give back the
 * bytes in order; small writes share arrays, so a full pipe written a byte at a time holds ~16.
 */
import { assert, it } from "@effect/vitest"
import { FastCheck } from "effect"
import { ByteChunks } from "../src/index.js"

const op = FastCheck.oneof(
  FastCheck.record({ kind: FastCheck.constant("put" as const), length: FastCheck.oneof(FastCheck.nat(16), FastCheck.nat(9000)), byte: FastCheck.integer({ min: 0, max: 255 }) }),
  FastCheck.record({ kind: FastCheck.constant("take" as const), max: FastCheck.oneof(FastCheck.nat(16), FastCheck.nat(9000)), peek: FastCheck.boolean() }),
  FastCheck.record({ kind: FastCheck.constant("clear" as const) })
)

it.prop("takes give back what puts queued, in order", [FastCheck.array(op, { maxLength: 60 })], ([ops]) => {
  const queue = new ByteChunks()
  let model: Array<number> = []
  let counter = 0
  for (const o of ops) {
    if (o.kind === "put") {
      // Distinct bytes, so that a misplaced one shows.
      const data = Uint8Array.from({ length: o.length }, () => (o.byte + counter++) & 255)
      queue.put(data)
      data.fill(0) // the writer's channel is reused: what was queued must be a copy
      model.push(...Uint8Array.from({ length: o.length }, (_, i) => (o.byte + counter - o.length + i) & 255))
    } else if (o.kind === "take") {
      const got = queue.take(o.max, o.peek)
      const want = model.slice(0, Math.min(o.max, model.length))
      assert.deepStrictEqual([...got], want)
      if (!o.peek) model = model.slice(want.length)
    } else {
      queue.clear()
      model = []
    }
    assert.strictEqual(queue.size, model.length)
  }
})

it("a pipe's 64 KiB written a byte at a time is held in 16 arrays, and read a byte at a time gives them back in order", () => {
  const queue = new ByteChunks()
  for (let i = 0; i < 65536; i++) queue.put(Uint8Array.of(i & 255))
  assert.strictEqual(queue.chunkCount, 16)
  for (let i = 0; i < 65536; i++) assert.strictEqual(queue.take(1)[0], i & 255)
  assert.strictEqual(queue.size, 0)
})
