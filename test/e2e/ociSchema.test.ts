/**
 * What the CLI prints for tools checked against the OCI runtime-spec's own JSON schemas: `spec`'s
 * config.json against config-schema.json, `state` against state-schema.json. The schemas are
 * Debian's (golang-github-opencontainers-specs-dev): RUNSC_OCI_SCHEMA_DIR if set, else the
 * installed package's, else the package fetched from Debian's archive into node_modules' cache
 * (debianPackage.ts), so that the README's test command needs nothing installed by hand.
 */
import { assert, describe, it } from "@effect/vitest"
import AjvDraft04 from "ajv-draft-04"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { afterAll, beforeAll } from "vitest"
import { debianPackage } from "./debianPackage.js"
import { createContainer, makeBundle, makeTempDir, removeDir, runsc, uniqueId } from "./helpers.js"

const SCHEMA_PACKAGE = "golang-github-opencontainers-specs-dev"
const SCHEMA_PATH = "usr/share/gocode/src/github.com/opencontainers/runtime-spec/schema"

const findSchemaDir = async (): Promise<string> => {
  const given = process.env["RUNSC_OCI_SCHEMA_DIR"]
  if (given !== undefined) return given
  const installed = Path.join("/", SCHEMA_PATH)
  if (Fs.existsSync(Path.join(installed, "state-schema.json"))) return installed
  return Path.join(await debianPackage(SCHEMA_PACKAGE), SCHEMA_PATH)
}

let schemaDir = ""

/** A validator that knows every schema file of the directory by its name (how they refer to each other). */
const loadSchemas = () => {
  if (!Fs.existsSync(Path.join(schemaDir, "state-schema.json"))) throw new Error(`no OCI runtime-spec schemas in ${schemaDir}`)
  // The schemas are draft-04; the package is CommonJS with its class as `default`.
  const ajv = new AjvDraft04.default({ allErrors: true, strict: false })
  for (const file of Fs.readdirSync(schemaDir).filter((f) => f.endsWith(".json"))) {
    ajv.addSchema(JSON.parse(Fs.readFileSync(Path.join(schemaDir, file), "utf8")), file)
  }
  return (schema: string, value: unknown) => {
    const validate = ajv.getSchema(schema)!
    return validate(value) ? [] : (validate.errors ?? []).map((e: { instancePath: string; message?: string }) => `${e.instancePath} ${e.message}`)
  }
}

let work = ""
beforeAll(async () => {
  work = await makeTempDir("runsc-e2e-oci-")
  schemaDir = await findSchemaDir()
}, 120_000)
afterAll(async () => {
  await removeDir(work)
})

describe("output valid per the OCI runtime-spec schemas", () => {
  it("runsc spec: config.json is a valid OCI config", async () => {
    const errors = loadSchemas()
    const dir = Path.join(work, "spec")
    Fs.mkdirSync(dir)
    const made = await runsc(["spec", "--bundle", dir])
    assert.strictEqual(made.code, 0, made.stderr)
    const config = JSON.parse(Fs.readFileSync(Path.join(dir, "config.json"), "utf8"))
    assert.deepStrictEqual(errors("config-schema.json", config), [])
    // The validator does reject: a config without its version is not one.
    assert.isNotEmpty(errors("config-schema.json", { ...config, ociVersion: undefined }))
  })

  it("runsc state: created, running and stopped are valid OCI states, for a root and a sub-container", async () => {
    const errors = loadSchemas()
    const root = Path.join(work, "root")
    const flags = ["--root", root]
    const sleeper = await makeBundle(["/bin/sleep", "600"], ["sleep"])
    const sub = await makeBundle(["/bin/sleep", "600"], ["sleep"])
    try {
      const pod = uniqueId("oci")
      const state = async (id: string, status: string) => {
        const r = await runsc([...flags, "state", id])
        assert.strictEqual(r.code, 0, r.stderr)
        const value = JSON.parse(r.stdout)
        assert.strictEqual(value.status, status)
        assert.deepStrictEqual(errors("state-schema.json", value), [], r.stdout)
      }
      assert.strictEqual((await createContainer([...flags, "--allow-read", sub.dir], sleeper.dir, pod, work)).code, 0)
      await state(pod, "created")
      const config = JSON.parse(Fs.readFileSync(Path.join(sub.dir, "config.json"), "utf8"))
      config.annotations = { "io.kubernetes.cri.container-type": "container", "io.kubernetes.cri.sandbox-id": pod }
      Fs.writeFileSync(Path.join(sub.dir, "config.json"), JSON.stringify(config))
      const app = uniqueId("app")
      assert.strictEqual((await createContainer(flags, sub.dir, app, work)).code, 0)
      await state(app, "created")
      assert.strictEqual((await runsc([...flags, "start", pod])).code, 0)
      assert.strictEqual((await runsc([...flags, "start", app])).code, 0)
      await state(pod, "running")
      await state(app, "running")
      assert.strictEqual((await runsc([...flags, "kill", app, "KILL"])).code, 0)
      assert.strictEqual((await runsc([...flags, "kill", pod, "KILL"])).code, 0)
      assert.strictEqual((await runsc([...flags, "wait", pod])).code, 0)
      await state(pod, "stopped")
      await state(app, "stopped")
      for (const id of [app, pod]) assert.strictEqual((await runsc([...flags, "delete", id])).code, 0)
    } finally {
      await removeDir(sleeper.dir)
      await removeDir(sub.dir)
    }
  })
})
