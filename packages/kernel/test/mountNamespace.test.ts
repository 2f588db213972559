/**
 * A container's mount namespace as the kernel builds it from a spec: the root (an overlay over
 * the bundle's rootfs, or the rootfs itself when read-only) and the spec's mounts; what its
 * in-memory trees hold goes back to the sandbox's memory when its scope closes; a root or a
 * mount the sandbox cannot serve is a typed error naming it.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { type Inode, Kernel, resolve, scriptedPlatform } from "../src/index.js"

const bundleDir = (): string => {
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "mountns-"))
  Fs.mkdirSync(Path.join(dir, "rootfs/etc"), { recursive: true })
  Fs.writeFileSync(Path.join(dir, "rootfs/etc/hostname"), "box\n")
  Fs.mkdirSync(Path.join(dir, "shared"))
  Fs.writeFileSync(Path.join(dir, "shared/note"), "from the host\n")
  return dir
}

const kernel = Kernel.layer({ warmWorkers: 0, prestartWorkers: 0, platform: scriptedPlatform, totalMemory: 64 * 1024 * 1024 })

/** Writes `bytes` zero bytes to a new file `name` in the directory `dir`. */
const write = (dir: Inode, name: string, bytes: number) =>
  Effect.gen(function*() {
    const file = yield* dir.changes!.create(name, 0o644)
    const description = yield* file.open({ read: false, write: true })
    yield* description.write(new Uint8Array(bytes), 0n)
    yield* description.close
  })

describe("kernel.mountNamespace", () => {
  it.live("builds the root and the spec's mounts; closing its scope gives their memory back", () =>
    Effect.gen(function*() {
      const k = yield* Kernel
      const dir = bundleDir()
      const before = k.memory.used
      const scope = yield* Scope.make()
      const ns = yield* k.mountNamespace({
        spec: {
          ociVersion: "1.0.2",
          root: { path: "rootfs" },
          mounts: [
            { destination: "/proc", type: "proc" },
            { destination: "/tmp/", type: "tmpfs", options: ["size=1m"] },
            { destination: "/shared", type: "bind", source: "shared", options: ["rbind", "ro"] },
            { destination: "/sys", type: "sysfs" }
          ]
        },
        bundleDir: dir,
        rootPath: Path.join(dir, "rootfs")
      }).pipe(Scope.extend(scope))
      assert.deepStrictEqual(ns.mounts.map((m) => [m.path, m.fs]), [["/proc", "proc"], ["/tmp", "tmpfs"], ["/shared", "bind"]])
      yield* resolve(ns.root, ns.root, "/etc/hostname", { followFinal: true })
      const tmp = ns.mounts.find((m) => m.fs === "tmpfs")
      if (tmp?.fs !== "tmpfs") return assert.fail("no tmpfs")
      yield* write(tmp.root, "a", 100_000)
      const etc = yield* resolve(ns.root, ns.root, "/etc", { followFinal: true })
      yield* write(etc.inode, "added", 200_000)
      assert.isAtLeast(k.memory.used, before + 300_000, "the tmpfs's and the overlay's files count against the sandbox's memory")
      yield* Scope.close(scope, Exit.void)
      assert.strictEqual(k.memory.used, before, "every byte goes back with the namespace")
    }).pipe(Effect.provide(kernel)))

  it.live("a root or a mount it cannot serve is a typed error naming it", () =>
    Effect.gen(function*() {
      const k = yield* Kernel
      const dir = bundleDir()
      const missing = yield* Effect.flip(Effect.scoped(k.mountNamespace({ spec: { ociVersion: "1.0.2" }, bundleDir: dir, rootPath: Path.join(dir, "nowhere") })))
      assert.strictEqual(missing._tag, "InvalidRoot")
      assert.match(missing.message, /^root filesystem .*nowhere: /)
      const nfs = yield* Effect.flip(Effect.scoped(k.mountNamespace({
        spec: { ociVersion: "1.0.2", mounts: [{ destination: "/data", type: "nfs", source: "server:/x" }] },
        bundleDir: dir,
        rootPath: Path.join(dir, "rootfs")
      })))
      assert.strictEqual(nfs._tag, "InvalidMount")
      assert.strictEqual(nfs.message, "mount at /data: type nfs cannot be served by the sandbox")
    }).pipe(Effect.provide(kernel)))
})
