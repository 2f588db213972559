/**
 * A writable root (`root.readonly: false`) is a copy-on-write overlay over the bundle's rootfs:
 * a C guest (test/fixtures/c/overlay.c) changes it as programs do; the container's execs see the
 * changes; another container of the same bundle and the host never do.
 */
import { assert, describe, it } from "@effect/vitest"
import { exited } from "@runsc/abi"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { makeBundle, makeOutput, makeSandbox } from "./helpers.js"

const populate = (rootfs: string) => {
  Fs.writeFileSync(Path.join(rootfs, "etc/config"), "a=1\n")
  Fs.writeFileSync(Path.join(rootfs, "etc/motd"), "welcome to the host\n")
  Fs.writeFileSync(Path.join(rootfs, "etc/gone"), "g\n")
  Fs.writeFileSync(Path.join(rootfs, "etc/hostname"), "box\n")
}

/** Every entry of the host tree with its contents and times: what must not change. */
const hostTree = (dir: string) =>
  (Fs.readdirSync(dir, { recursive: true }) as Array<string>).sort().map((p) => {
    const st = Fs.lstatSync(Path.join(dir, p))
    return `${p} ${st.mode} ${st.size} ${st.mtimeMs} ${st.isFile() ? Fs.readFileSync(Path.join(dir, p)).toString("base64") : ""}`
  })

describe("overlay root", () => {
  it.scopedLive("changes land in memory: the container's execs see them; another container and the host do not", () =>
    Effect.gen(function*() {
      const loader = yield* makeSandbox
      const bundle = yield* makeBundle({ args: ["sleep", "600"], populate, writableRoot: true })
      const before = hostTree(bundle.rootPath)
      yield* loader.createSubcontainer("ov")
      yield* loader.startSubcontainer({ containerId: "ov", bundle, stdio: {} })
      const run = (id: string, argv: ReadonlyArray<string>) =>
        Effect.gen(function*() {
          const out = yield* makeOutput
          const pid = yield* loader.execute({ containerId: id, argv, stdio: { stdout: out.fd, stderr: out.fd } })
          assert.deepStrictEqual(yield* loader.waitPid(id, pid), exited(0), out.read())
          return out.read().split("\n")
        })
      assert.deepStrictEqual(yield* run("ov", ["overlay"]), [
        "config \"a=1|\"",
        "append ok",
        "config \"a=1|b=2|\"",
        "trunc ok",
        "motd \"short|\"",
        "mkdir ok",
        "create ok",
        "excl EEXIST",
        "unlink ok",
        "gone ENOENT",
        "recreate ok",
        "gone \"back|\"",
        "unlink-again ok",
        "rename-file ok",
        "moved \"box|\"",
        "old-name ENOENT",
        "rename-rootfs-dir EXDEV",
        "mkdir-tmp ok",
        "rename-new-dir ok",
        "rmdir-rootfs-full ENOTEMPTY",
        "rmdir-rootfs-empty ok",
        "mkdir-over-removed ok",
        "data",
        "symlink-absolute EPERM",
        "symlink ok",
        "via-symlink \"a=1|b=2|\"",
        "link ok",
        "link-nlink 2 same-ino yes",
        "one-device yes",
        "utimens ok",
        "times 1000.5 2000.7",
        // dev and tmp are mount points the rootfs has no directory for.
        "root bin cfg data dev etc made passwd2 proc tmp",
        "etc config motd passwd",
        "mounts \"overlay / overlay rw,relatime 0 0|proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0|devtmpfs /dev devtmpfs rw,nosuid,relatime 0 0|tmpfs /tmp tmpfs rw,relatime 0 0|\"",
        ""
      ])
      assert.deepStrictEqual(yield* run("ov", ["overlay", "again"]), [
        "again-config \"a=1|b=2|\"",
        "again-made \"new|\"",
        "again-gone ENOENT",
        "again-etc config motd passwd",
        ""
      ])
      // Another container of the same bundle has its own overlay: none of the changes.
      yield* loader.createSubcontainer("fresh")
      yield* loader.startSubcontainer({ containerId: "fresh", bundle, stdio: {} })
      assert.deepStrictEqual(yield* run("fresh", ["overlay", "again"]), [
        "again-config \"a=1|\"",
        "again-made ENOENT",
        "again-gone \"g|\"",
        "again-etc config gone hostname motd passwd",
        ""
      ])
      assert.deepStrictEqual(hostTree(bundle.rootPath), before, "the host's rootfs never changes")
    }))

  it.scopedLive("a read-only root refuses changes with EROFS", () =>
    Effect.gen(function*() {
      const loader = yield* makeSandbox
      const bundle = yield* makeBundle({ args: ["overlay"], populate })
      const out = yield* makeOutput
      yield* loader.createSubcontainer("ro")
      yield* loader.startSubcontainer({ containerId: "ro", bundle, stdio: { stdout: out.fd, stderr: out.fd } })
      yield* loader.wait("ro")
      const lines = out.read().split("\n")
      assert.include(lines, "append EROFS")
      assert.include(lines, "mkdir EROFS")
      assert.include(lines, "unlink EROFS")
      assert.include(lines, "mounts \"none / 9p ro,relatime 0 0|proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0|devtmpfs /dev devtmpfs rw,nosuid,relatime 0 0|tmpfs /tmp tmpfs rw,relatime 0 0|\"")
    }))
})
