/**
 * What the fast path (src/fastPath.ts) must agree on with the rest of runsc without sharing its
 * code (it loads no Effect): the container id rule. Its behaviour against the full CLI is
 * test/e2e/fastPath.test.ts's.
 */
import { assert, describe, it } from "@effect/vitest"
import { isValidContainerId } from "@runsc/spec"
import { FastCheck } from "effect"
import { isPlainContainerId } from "../src/fastPath.js"

describe("fast path", () => {
  it.prop(
    "its container id rule is @runsc/spec's",
    [FastCheck.string({ unit: FastCheck.constantFrom("a", "Z", "0", "_", "-", "+", ".", "/", " ", "é", ":"), maxLength: 300 })],
    ([id]) => {
      assert.strictEqual(isPlainContainerId(id), isValidContainerId(id))
    }
  )

  it("also at the length limit", () => {
    for (const n of [254, 255, 256]) assert.strictEqual(isPlainContainerId("a".repeat(n)), isValidContainerId("a".repeat(n)))
  })
})
