/**
 * PID namespaces: allocation order, wrap-around at PID_MAX that skips pids in use, lineage.
 */
import { assert, describe, it } from "@effect/vitest"
import { FastCheck } from "effect"
import { PID_MAX, PidNamespace } from "../src/index.js"

/** Moves the allocator's cursor (a private field) to exercise wrap-around without 4M allocations. */
const setCursor = (ns: PidNamespace<unknown>, last: number) => {
  ;(ns as unknown as { last: number }).last = last
}

describe("PidNamespace", () => {
  it("allocates 1, 2, 3, ... and does not reuse a released pid before wrapping", () => {
    const ns = new PidNamespace<string>(undefined)
    assert.deepStrictEqual([ns.allocate("a"), ns.allocate("b"), ns.allocate("c")], [1, 2, 3])
    ns.release(2)
    assert.strictEqual(ns.allocate("d"), 4)
    assert.strictEqual(ns.get(1), "a")
    assert.isUndefined(ns.get(2))
    assert.strictEqual(ns.get(4), "d")
    assert.deepStrictEqual(ns.processes.map(([pid]) => pid).sort((x, y) => x - y), [1, 3, 4])
  })

  it("wraps after PID_MAX - 1 and skips pids still in use", () => {
    const ns = new PidNamespace<string>(undefined)
    assert.strictEqual(ns.allocate("init"), 1)
    assert.strictEqual(ns.allocate("two"), 2)
    setCursor(ns, PID_MAX - 3)
    assert.strictEqual(ns.allocate("x"), PID_MAX - 2)
    assert.strictEqual(ns.allocate("y"), PID_MAX - 1)
    // PID_MAX itself is never a pid; 1 and 2 are taken.
    assert.strictEqual(ns.allocate("z"), 3)
    for (const [pid] of ns.processes) assert.isTrue(pid >= 1 && pid < PID_MAX)
  })

  it("wraps for real after a full cycle of allocations (no cursor tricks)", () => {
    const ns = new PidNamespace<number>(undefined)
    assert.strictEqual(ns.allocate(0), 1) // held for the whole cycle, like init
    let last = 1
    for (let i = 0; i < PID_MAX - 2; i++) {
      const pid = ns.allocate(i)!
      if (pid !== last + 1) assert.fail(`allocation ${i} gave ${pid} after ${last}`)
      last = pid
      ns.release(pid)
    }
    assert.strictEqual(last, PID_MAX - 1)
    assert.strictEqual(ns.allocate(-1), 2, "wrapped past the pid in use")
  }, 30_000)

  type Cmd = { readonly op: "alloc" } | { readonly op: "release"; readonly pick: number }
  const cmd: FastCheck.Arbitrary<Cmd> = FastCheck.oneof(
    FastCheck.constant<Cmd>({ op: "alloc" }),
    FastCheck.nat({ max: 1000 }).map((pick): Cmd => ({ op: "release", pick }))
  )

  it.prop(
    "matches a model: the next free pid after the last one allocated, cyclically in [1, PID_MAX)",
    [FastCheck.integer({ min: 0, max: PID_MAX - 1 }), FastCheck.array(cmd, { maxLength: 150 })],
    ([start, cmds]) => {
      const ns = new PidNamespace<number>(undefined)
      setCursor(ns, start)
      const used = new Set<number>()
      let last = start
      const modelNext = (): number => {
        let pid = last
        do pid = (pid % (PID_MAX - 1)) + 1
        while (used.has(pid))
        return pid
      }
      cmds.forEach((c, i) => {
        if (c.op === "alloc") {
          const expected = modelNext()
          const got = ns.allocate(i)
          assert.strictEqual(got, expected)
          assert.isFalse(used.has(expected), "a pid in use was handed out again")
          used.add(expected)
          last = expected
        } else if (used.size > 0) {
          const pid = [...used][c.pick % used.size]!
          ns.release(pid)
          used.delete(pid)
        }
      })
      assert.deepStrictEqual(new Set(ns.processes.map(([pid]) => pid)), used)
    },
    { fastCheck: { numRuns: 200 } }
  )

  it("lineage is the namespace, then each ancestor up to the root", () => {
    const root = new PidNamespace<string>(undefined)
    const child = new PidNamespace<string>(root)
    const grandchild = new PidNamespace<string>(child)
    assert.deepStrictEqual(root.lineage, [root])
    assert.deepStrictEqual(grandchild.lineage, [grandchild, child, root])
    // Each namespace numbers its own processes from 1.
    root.allocate("host")
    assert.strictEqual(child.allocate("c"), 1)
    assert.strictEqual(grandchild.allocate("g"), 1)
    assert.strictEqual(root.allocate("g"), 2)
  })
})
