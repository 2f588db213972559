/**
 * A connection's buffer against a model (an array of bytes): puts and takes of any sizes, with
 * and without peek, wrap around its ring and come out in order, never more than its capacity.
 */
import { assert, describe, it } from "@effect/vitest"
import { Changes } from "@runsc/kernel"
import { FastCheck } from "effect"
import { ByteQueue } from "../src/byteQueue.js"

type Op = { readonly op: "put"; readonly n: number } | { readonly op: "take"; readonly n: number; readonly peek: boolean; readonly into: boolean }

const op: FastCheck.Arbitrary<Op> = FastCheck.oneof(
  FastCheck.integer({ min: 0, max: 40 }).map((n): Op => ({ op: "put", n })),
  FastCheck.record({ n: FastCheck.integer({ min: 0, max: 40 }), peek: FastCheck.boolean(), into: FastCheck.boolean() }).map((r): Op => ({ op: "take", ...r }))
)

describe("ByteQueue", () => {
  it.prop("matches a model across its ring's wrap", [FastCheck.integer({ min: 1, max: 33 }), FastCheck.array(op, { maxLength: 200 })], ([capacity, ops]) => {
    const queue = new ByteQueue(capacity, new Changes())
    const model: Array<number> = []
    let next = 0
    for (const o of ops) {
      if (o.op === "put") {
        const n = Math.min(o.n, queue.room)
        const data = Uint8Array.from({ length: n }, () => next++ & 0xff)
        queue.put(data)
        model.push(...data)
      } else {
        const expected = o.peek ? model.slice(0, o.n) : model.splice(0, o.n)
        let got: Uint8Array
        if (o.into) {
          const target = new Uint8Array(o.n + 3)
          got = target.subarray(3, 3 + queue.takeInto(target, 3, o.n, o.peek))
        } else {
          got = queue.take(o.n, o.peek)
        }
        assert.deepStrictEqual([...got], expected)
      }
      assert.strictEqual(queue.size, model.length)
      assert.isAtMost(queue.size, capacity)
    }
  })
})
