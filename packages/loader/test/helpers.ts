/**
 * Helpers of the Loader's scenario tests: bundles whose rootfs holds the C fixtures, output
 * files, a sandbox whose root container outlives the test, sub-containers, polling.
 */
import { assert } from "@effect/vitest"
import { type Bundle, defaultSpec, type Spec } from "@runsc/spec"
import { Context, Effect, Layer } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { Loader, type LoaderShape } from "../src/index.js"

export const repo = fileURLToPath(new URL("../../../", import.meta.url))
export const fixture = (name: string) => Path.join(repo, "test/fixtures/c", `${name}.wasm`)

/** A temp dir removed with the scope. */
export const tempDir = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "runsc-containers-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

export interface BundleOptions {
  readonly args: ReadonlyArray<string>
  readonly env?: ReadonlyArray<string>
  readonly pidNamespace?: { readonly path?: string }
  readonly passwd?: string
  /** The init's stdio is a terminal (the spec's process.terminal). */
  readonly terminal?: boolean
  /** Adds files to the rootfs. */
  readonly populate?: (rootfs: string) => void
  /** More mounts after the template's (/proc, /dev, /tmp). */
  readonly mounts?: Spec["mounts"]
  /** The process's soft and hard RLIMIT_NOFILE (the template's is 1024). */
  readonly nofile?: number
  /** `root.readonly: false`: the root is the copy-on-write overlay. */
  readonly writableRoot?: boolean
  /** The spec's `linux.resources`. */
  readonly resources?: NonNullable<Spec["linux"]>["resources"]
  readonly annotations?: Record<string, string>
}

/**
 * A bundle whose rootfs has every fixture under /bin, /etc/passwd and a /proc mount point; its
 * spec mounts procfs at /proc and a tmpfs at /dev (devfs), as the `runsc spec` template does.
 */
export const makeBundle = (options: BundleOptions) =>
  Effect.gen(function*() {
    const dir = yield* tempDir
    const rootfs = Path.join(dir, "rootfs")
    for (const sub of ["bin", "etc", "proc", "data"]) Fs.mkdirSync(Path.join(rootfs, sub), { recursive: true })
    for (const name of [
      "exit",
      "sleep",
      "spin",
      "cat",
      "ls",
      "print_env",
      "echo_args",
      "write_many",
      "task_tree",
      "fork_bomb",
      "reaper",
      "tsh",
      "devices",
      "fsops",
      "fd_limit",
      "overlay",
      "bindrw",
      "fsbench",
      "conformance",
      "poll_stdin",
      "append_many",
      "memhog",
      "net_echo",
      "preopened_server",
      "http",
      "unix",
      "inodes",
      "deep_dirs"
    ]) {
      Fs.copyFileSync(fixture(name), Path.join(rootfs, "bin", name))
      Fs.chmodSync(Path.join(rootfs, "bin", name), 0o755)
    }
    Fs.writeFileSync(Path.join(rootfs, "etc/passwd"), options.passwd ?? "root:x:0:0:root:/root:/bin/sh\n")
    options.populate?.(rootfs)
    const template = defaultSpec()
    const spec: Spec = {
      ...template,
      mounts: [...(template.mounts ?? []), ...(options.mounts ?? [])],
      ...(options.writableRoot ? { root: { path: "rootfs", readonly: false } } : {}),
      ...(options.annotations !== undefined ? { annotations: options.annotations } : {}),
      process: {
        ...template.process!,
        args: [options.args[0]!, ...options.args.slice(1)],
        env: options.env ?? ["PATH=/bin"],
        terminal: options.terminal ?? false,
        ...(options.nofile !== undefined ? { rlimits: [{ type: "RLIMIT_NOFILE", soft: options.nofile, hard: options.nofile }] } : {})
      },
      linux: {
        ...template.linux,
        namespaces: options.pidNamespace ? [{ type: "pid", ...options.pidNamespace }] : [],
        ...(options.resources !== undefined ? { resources: options.resources } : {})
      }
    }
    const bundle: Bundle = { dir, spec, rootPath: rootfs }
    return bundle
  })

/** The guest's stdout, in a temp file. */
export const makeOutput = Effect.gen(function*() {
  const dir = yield* tempDir
  const path = Path.join(dir, "out")
  const fd = yield* Effect.acquireRelease(Effect.sync(() => Fs.openSync(path, "w+")), (fd) => Effect.sync(() => Fs.closeSync(fd)))
  return { fd, read: () => Fs.readFileSync(path, "utf8") }
})

/** A sandbox whose root container sleeps (it must outlive the test's sub-containers). */
export const makeSandbox = Effect.gen(function*() {
  const bundle = yield* makeBundle({ args: ["sleep", "600"] })
  const out = yield* makeOutput
  const loader = yield* Effect.map(
    Layer.build(Loader.layer({ containerId: "root", bundle, stdio: { stdout: out.fd, stderr: out.fd } })),
    Context.get(Loader)
  )
  yield* loader.startRoot
  return loader
})

export const startSub = (loader: LoaderShape, id: string, options: BundleOptions) =>
  Effect.gen(function*() {
    const bundle = yield* makeBundle(options)
    const out = yield* makeOutput
    yield* loader.createSubcontainer(id)
    const pid = yield* loader.startSubcontainer({ containerId: id, bundle, stdio: { stdout: out.fd, stderr: out.fd } })
    return { pid, out }
  })

export const waitUntil = (condition: Effect.Effect<boolean, unknown>, what: string) =>
  Effect.gen(function*() {
    for (let i = 0; i < 200; i++) {
      if (yield* Effect.orElseSucceed(condition, () => false)) return
      yield* Effect.sleep("10 millis")
    }
    assert.fail(`timed out waiting until ${what}`)
  })
