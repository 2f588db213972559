import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, FastCheck } from "effect"
import {
  defaultPath,
  getEnv,
  InvalidContainerId,
  mergeEnv,
  parseEnvAssignment,
  resolveEnv,
  validateContainerId
} from "../src/index.js"

describe("resolveEnv", () => {
  it("resolves duplicates last-wins at the first position and drops entries without '='", () => {
    assert.deepStrictEqual(
      resolveEnv(["A=1", "B=2", "JUNK", "A=3", "=x", "C=", "B=4=5"]),
      ["A=3", "B=4=5", "C="]
    )
  })

  it("getEnv agrees with resolveEnv", () => {
    const env = ["PATH=/bin", "HOME=/", "PATH=" + defaultPath]
    assert.strictEqual(getEnv(env, "PATH"), defaultPath)
    assert.strictEqual(getEnv(env, "HOME"), "/")
    assert.isUndefined(getEnv(env, "TERM"))
  })

  it("mergeEnv lets overrides win", () => {
    assert.deepStrictEqual(mergeEnv(["A=1", "B=2"], ["B=3", "C=4"]), ["A=1", "B=3", "C=4"])
  })

  const entry = FastCheck.oneof(
    FastCheck.tuple(FastCheck.constantFrom("A", "B", "PATH", "HOME"), FastCheck.string()).map(([k, v]) => `${k}=${v}`),
    FastCheck.string()
  )
  const keyOf = (e: string) => e.slice(0, e.indexOf("="))

  it.prop("never yields duplicate keys and keeps the last value", [FastCheck.array(entry, { maxLength: 30 })], ([env]) => {
    const resolved = resolveEnv(env)
    const keys = resolved.map(keyOf)
    assert.strictEqual(new Set(keys).size, keys.length)
    for (const e of resolved) {
      const key = keyOf(e)
      const last = env.filter((x) => x.indexOf("=") > 0 && keyOf(x) === key).at(-1)
      assert.strictEqual(e, last)
      assert.strictEqual(getEnv(env, key), e.slice(key.length + 1))
    }
    // every well-formed key survives, in order of first appearance
    const firstSeen = [...new Set(env.filter((x) => x.indexOf("=") > 0).map(keyOf))]
    assert.deepStrictEqual(keys, firstSeen)
  })
})

describe("parseEnvAssignment", () => {
  it("splits at the first '=' and rejects empty keys and missing '='", () => {
    assert.deepStrictEqual(parseEnvAssignment("K=V=W"), Either.right({ key: "K", value: "V=W" }))
    assert.deepStrictEqual(parseEnvAssignment("K="), Either.right({ key: "K", value: "" }))
    assert.isTrue(Either.isLeft(parseEnvAssignment("K")))
    assert.isTrue(Either.isLeft(parseEnvAssignment("=V")))
  })
})

describe("validateContainerId", () => {
  it.effect("accepts ids matching the pattern", () =>
    Effect.gen(function*() {
      for (const id of ["abc", "a.b-c_d+e", "0", "x".repeat(255), "..."]) {
        assert.strictEqual(yield* validateContainerId(id), id)
      }
    }))

  it.effect("rejects everything else", () =>
    Effect.gen(function*() {
      for (const id of ["", ".", "..", "a/b", "a b", "x".repeat(256), "é", "a\n"]) {
        const e = yield* Effect.flip(validateContainerId(id))
        assert.instanceOf(e, InvalidContainerId)
        assert.strictEqual(e.id, id)
        assert.include(e.message, "^[\\w+\\-.]+$")
      }
    }))
})
