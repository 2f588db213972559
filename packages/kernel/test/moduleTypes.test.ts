/**
 * moduleTypes: the function types of a module's imports and exports, read from its binary
 * (wasmBinary.ts); "cannot tell" (undefined) for what the reader does not know. What the module
 * cache does with them is in process.test.ts ("rejects malformed modules ...").
 */
import { assert, describe, it } from "@effect/vitest"
import { functionTypes } from "../src/platform/moduleTypes.js"

const header = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]
const section = (id: number, payload: ReadonlyArray<number>) => [id, payload.length, ...payload]
const name = (text: string) => [text.length, ...new TextEncoder().encode(text)]

/** A module importing m.f of type 0, defining one function of type `definedType`, exported as _start. */
const moduleWith = (types: ReadonlyArray<number>, definedType: number) =>
  new Uint8Array([
    ...header,
    ...section(1, types),
    ...section(2, [0x01, ...name("m"), ...name("f"), 0x00, 0x00]),
    ...section(3, [0x01, definedType]),
    ...section(7, [0x01, ...name("_start"), 0x00, 0x01]),
    ...section(10, [0x01, 0x02, 0x00, 0x0b])
  ])

// Type 0: (func (param i32) (result i32)) as a subtype in a recursion group; type 1: a struct
// in the same group; type 2: (func).
const gcTypes = [
  0x02,
  0x4e, 0x02, 0x50, 0x00, 0x60, 0x01, 0x7f, 0x01, 0x7f, 0x5f, 0x01, 0x7f, 0x01,
  0x60, 0x00, 0x00
]

describe("functionTypes", () => {
  it("reads function types inside recursion groups and subtypes, indexed as the types they define", () => {
    const types = functionTypes(moduleWith(gcTypes, 2))
    assert.deepStrictEqual(types?.imports, [{ module: "m", name: "f", type: { params: ["i32"], results: ["i32"] } }])
    assert.deepStrictEqual(types?.exports.get("_start"), { params: [], results: [] })
  })

  it("cannot tell the type of a function whose type is not a function type, or of a type form it does not know", () => {
    assert.isUndefined(functionTypes(moduleWith(gcTypes, 1)))
    assert.isUndefined(functionTypes(moduleWith([0x01, 0x40, 0x00], 0)))
  })
})
