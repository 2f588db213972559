import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { decodeSpec, defaultSpec, encodeSpecJson, pidNamespace } from "../src/index.js"

describe("defaultSpec", () => {
  it.effect("round-trips through encode + decode", () =>
    Effect.gen(function*() {
      const spec = defaultSpec()
      const json = encodeSpecJson(spec)
      assert.isTrue(json.endsWith("}\n"))
      assert.include(json, "\n  \"ociVersion\": \"1.0.2\"")
      const decoded = yield* decodeSpec(JSON.parse(json))
      assert.deepStrictEqual(decoded, spec)
      assert.strictEqual(encodeSpecJson(decoded), json)
    }))

  it("has the runsc template shape", () => {
    const spec = defaultSpec()
    assert.deepStrictEqual(spec.process?.args, ["hello.wasm"])
    assert.strictEqual(spec.process?.cwd, "/")
    assert.deepStrictEqual(spec.root, { path: "rootfs", readonly: true })
    assert.include(spec.process?.capabilities?.bounding ?? [], "CAP_KILL")
    assert.deepStrictEqual(spec.mounts?.map((m) => m.destination), ["/proc", "/dev", "/tmp"])
    assert.deepStrictEqual(pidNamespace(spec), { _tag: "New" })
  })

  it("takes args, falling back to the default for an empty argv", () => {
    assert.deepStrictEqual(defaultSpec(["ruby.wasm", "-e", "p 1"]).process?.args, ["ruby.wasm", "-e", "p 1"])
    assert.deepStrictEqual(defaultSpec([]).process?.args, ["hello.wasm"])
  })
})

describe("pidNamespace", () => {
  const spec = defaultSpec()
  it("is Shared without a pid namespace, New with or without a path otherwise", () => {
    assert.deepStrictEqual(pidNamespace({ ...spec, linux: { namespaces: [{ type: "mount" }] } }), { _tag: "Shared" })
    assert.deepStrictEqual(pidNamespace({ ociVersion: "1.0.2" }), { _tag: "Shared" })
    assert.deepStrictEqual(
      pidNamespace({ ...spec, linux: { namespaces: [{ type: "pid", path: "/proc/7/ns/pid" }] } }),
      { _tag: "New", path: "/proc/7/ns/pid" }
    )
  })
})
