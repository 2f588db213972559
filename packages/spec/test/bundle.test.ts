import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { BundleNotFound, decodeSpec, InvalidSpec, loadBundle } from "../src/index.js"

/** A fresh bundle directory holding `config` (a string is written verbatim, anything else as JSON). */
const writeBundle = (config: unknown) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const dir = await fs.mkdtemp(path.join(os.tmpdir(), "runsc-spec-"))
      const text = typeof config === "string" ? config : JSON.stringify(config, null, 2)
      await fs.writeFile(path.join(dir, "config.json"), text)
      return dir
    }),
    (dir) => Effect.promise(() => fs.rm(dir, { recursive: true, force: true }))
  )

const good = {
  ociVersion: "1.0.2",
  process: {
    terminal: false,
    user: { uid: 1000, gid: 1000, additionalGids: [5, 6], umask: 18 },
    args: ["hello.wasm", "--flag"],
    env: ["PATH=/bin", "HOME=/root"],
    cwd: "/home",
    capabilities: { bounding: ["CAP_KILL"], ambient: [] },
    rlimits: [{ type: "RLIMIT_NOFILE", hard: 1024, soft: 512 }],
    noNewPrivileges: true,
    apparmorProfile: "unmodelled", // unknown fields are accepted ...
    oomScoreAdj: 0
  },
  root: { path: "rootfs", readonly: true },
  hostname: "box",
  mounts: [{ destination: "/proc", type: "proc", source: "proc", options: ["nosuid"] }],
  annotations: { "org.opencontainers.image.ref.name": "demo" },
  hooks: { prestart: [] }, // ... at every level
  linux: {
    namespaces: [{ type: "pid", path: "/proc/1/ns/pid" }, { type: "mount" }],
    resources: { memory: { limit: 1024 } },
    seccomp: { defaultAction: "SCMP_ACT_ALLOW" }
  }
}

const withProcess = (process: unknown) => ({ ...good, process })

/** Loads a bundle holding `config` and returns the InvalidSpec it must fail with. */
const invalid = (config: unknown) =>
  Effect.gen(function*() {
    const dir = yield* writeBundle(config)
    const error = yield* Effect.flip(loadBundle(dir))
    assert.instanceOf(error, InvalidSpec)
    return error as InvalidSpec
  })

describe("loadBundle", () => {
  it.scoped("decodes a real-world config, ignoring unknown fields", () =>
    Effect.gen(function*() {
      const dir = yield* writeBundle(good)
      const bundle = yield* loadBundle(dir)
      assert.strictEqual(bundle.dir, dir)
      assert.strictEqual(bundle.rootPath, path.join(dir, "rootfs"))
      assert.deepStrictEqual(bundle.spec.process?.args, ["hello.wasm", "--flag"])
      assert.strictEqual(bundle.spec.process?.user?.uid, 1000)
      assert.strictEqual(bundle.spec.hostname, "box")
      assert.isFalse("hooks" in bundle.spec)
      assert.isFalse("apparmorProfile" in (bundle.spec.process ?? {}))
      // linux keeps its unmodelled fields for later consumers
      assert.deepStrictEqual(bundle.spec.linux?.["resources"], { memory: { limit: 1024 } })
    }))

  it.scoped("resolves root.path against the bundle dir, keeping absolute paths", () =>
    Effect.gen(function*() {
      const rel = yield* writeBundle({ ...good, root: { path: "../elsewhere/fs" } })
      assert.strictEqual((yield* loadBundle(rel)).rootPath, path.resolve(rel, "../elsewhere/fs"))
      const abs = yield* writeBundle({ ...good, root: { path: "/srv/rootfs" } })
      assert.strictEqual((yield* loadBundle(abs)).rootPath, "/srv/rootfs")
      const { root: _, ...noRoot } = good
      const none = yield* writeBundle(noRoot)
      assert.strictEqual((yield* loadBundle(none)).rootPath, path.join(none, "rootfs"))
    }))

  it.scoped("process.args missing", () =>
    Effect.gen(function*() {
      const { args: _, ...noArgs } = good.process
      const e = yield* invalid(withProcess(noArgs))
      assert.strictEqual(e.path, "process.args")
      assert.strictEqual(e.message, "invalid config.json: process.args: required field is missing")
    }))

  it.scoped("process.rlimits: RLIMIT_NOFILE above what Linux allows, a soft limit above its hard one", () =>
    Effect.gen(function*() {
      const huge = yield* invalid(withProcess({ ...good.process, rlimits: [{ type: "RLIMIT_NOFILE", hard: 4_000_000, soft: 4_000_000 }] }))
      assert.strictEqual(huge.path, "process.rlimits[0]")
      assert.match(huge.message, /RLIMIT_NOFILE 4000000 is above 1048576/)
      const inverted = yield* invalid(withProcess({ ...good.process, rlimits: [{ type: "RLIMIT_NOFILE", hard: 10, soft: 20 }] }))
      assert.strictEqual(inverted.path, "process.rlimits[0]")
      assert.match(inverted.message, /soft limit 20 is above the hard limit 10/)
    }))

  it.scoped("process missing: a container needs a process to run, as runc requires one", () =>
    Effect.gen(function*() {
      const { process: _, ...noProcess } = good
      const e = yield* invalid(noProcess)
      assert.strictEqual(e.path, "process")
      assert.strictEqual(e.message, "invalid config.json: process: required field is missing")
    }))

  it.scoped("memory limits that are not a positive number of bytes (-1, 0)", () =>
    Effect.gen(function*() {
      for (const limit of [-1, 0, -4096]) {
        const e = yield* invalid({ ...good, linux: { resources: { memory: { limit } } } })
        assert.strictEqual(e.path, "linux.resources.memory.limit", String(limit))
        assert.strictEqual(e.reason, `expected a positive number of bytes, got ${limit}`)
      }
    }))

  it.scoped("user and group ids beyond 32 bits", () =>
    Effect.gen(function*() {
      const user = good.process.user
      const uid = yield* invalid(withProcess({ ...good.process, user: { ...user, uid: 2 ** 32 } }))
      assert.strictEqual(uid.path, "process.user.uid")
      assert.strictEqual(uid.reason, "expected a 32-bit id (0 to 4294967295), got 4294967296")
      const gid = yield* invalid(withProcess({ ...good.process, user: { ...user, gid: 2 ** 40 } }))
      assert.strictEqual(gid.path, "process.user.gid")
      const extra = yield* invalid(withProcess({ ...good.process, user: { ...user, additionalGids: [1, 2 ** 32] } }))
      assert.strictEqual(extra.path, "process.user.additionalGids[1]")
      // The largest id is still one.
      const dir = yield* writeBundle(withProcess({ ...good.process, user: { ...user, uid: 2 ** 32 - 1 } }))
      assert.strictEqual((yield* loadBundle(dir)).spec.process?.user?.uid, 2 ** 32 - 1)
    }))

  it.scoped("process.args empty", () =>
    Effect.gen(function*() {
      const e = yield* invalid(withProcess({ ...good.process, args: [] }))
      assert.strictEqual(e.path, "process.args")
    }))

  it.scoped("process.args[1] a number", () =>
    Effect.gen(function*() {
      const e = yield* invalid(withProcess({ ...good.process, args: ["a", 5] }))
      assert.strictEqual(e.path, "process.args[1]")
      assert.strictEqual(e.reason, "expected string, got 5")
      assert.strictEqual(e.message, "invalid config.json: process.args[1]: expected string, got 5")
    }))

  it.scoped("process.cwd relative", () =>
    Effect.gen(function*() {
      const e = yield* invalid(withProcess({ ...good.process, cwd: "home" }))
      assert.strictEqual(e.path, "process.cwd")
      assert.include(e.reason, "absolute")
    }))

  it.scoped("root.path not a string", () =>
    Effect.gen(function*() {
      const e = yield* invalid({ ...good, root: { path: 42 } })
      assert.strictEqual(e.path, "root.path")
      assert.strictEqual(e.reason, "expected string, got 42")
    }))

  it.scoped("mounts[0].destination relative", () =>
    Effect.gen(function*() {
      const e = yield* invalid({ ...good, mounts: [{ destination: "proc", type: "proc" }] })
      assert.strictEqual(e.path, "mounts[0].destination")
    }))

  it.scoped("only the first of several problems is reported", () =>
    Effect.gen(function*() {
      const e = yield* invalid({ ...good, ociVersion: 1, root: { path: 42 } })
      assert.strictEqual(e.path, "ociVersion")
    }))

  it.scoped("an unknown namespace type or a duplicate one", () =>
    Effect.gen(function*() {
      const unknown = yield* invalid({ ...good, linux: { namespaces: [{ type: "pid" }, { type: "net" }] } })
      assert.strictEqual(unknown.path, "linux.namespaces[1].type")
      const dup = yield* invalid({ ...good, linux: { namespaces: [{ type: "pid" }, { type: "pid" }] } })
      assert.strictEqual(dup.path, "linux.namespaces")
      assert.include(dup.reason, "duplicate")
    }))

  it.scoped("a whole document that is not an object", () =>
    Effect.gen(function*() {
      const e = yield* invalid("[1, 2]")
      assert.strictEqual(e.path, "")
      assert.strictEqual(e.message, "invalid config.json: expected a JSON object, got an array")
    }))

  it.scoped("malformed JSON", () =>
    Effect.gen(function*() {
      const e = yield* invalid("{ \"ociVersion\": \"1.0.2\", ")
      assert.strictEqual(e.path, "")
      assert.match(e.reason, /^malformed JSON: .+/)
    }))

  it.scoped("missing config.json", () =>
    Effect.gen(function*() {
      const dir = yield* writeBundle(good)
      yield* Effect.promise(() => fs.rm(path.join(dir, "config.json")))
      const e = yield* Effect.flip(loadBundle(dir))
      assert.instanceOf(e, BundleNotFound)
      assert.strictEqual((e as BundleNotFound).bundle, dir)
      assert.include(e.message, "config.json")
      const gone = yield* Effect.flip(loadBundle(path.join(dir, "no-such-dir")))
      assert.strictEqual(gone._tag, "BundleNotFound")
    }))

  it.scoped("a config.json that is not a regular file (a FIFO, a directory) is refused at once, never waited on", () =>
    Effect.gen(function*() {
      const dir = yield* writeBundle(good)
      const config = path.join(dir, "config.json")
      yield* Effect.promise(() => fs.rm(config))
      execFileSync("mkfifo", [config])
      const fifo = yield* Effect.flip(loadBundle(dir).pipe(Effect.timeout("10 seconds")))
      assert.strictEqual(fifo._tag, "InvalidSpec")
      assert.include(fifo.message, "not a regular file")
      yield* Effect.promise(async () => {
        await fs.rm(config)
        await fs.mkdir(config)
      })
      const directory = yield* Effect.flip(loadBundle(dir))
      assert.strictEqual(directory._tag, "InvalidSpec")
    }))
})

describe("decodeSpec", () => {
  it.effect("works on in-memory values", () =>
    Effect.gen(function*() {
      const spec = yield* decodeSpec({ ociVersion: "1.0.2" })
      assert.isUndefined(spec.process)
      const e = yield* Effect.flip(decodeSpec({ ociVersion: "1.0.2", process: { args: ["a"] } }))
      assert.strictEqual(e.path, "process.cwd")
    }))

  it.effect("quotes keys that are not identifiers", () =>
    Effect.gen(function*() {
      const e = yield* Effect.flip(decodeSpec({ ociVersion: "1", annotations: { "a.b": 1 } }))
      assert.strictEqual(e.path, "annotations[\"a.b\"]")
    }))
})
