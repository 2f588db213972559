/** devfs: the devices a guest program finds at /dev, exercised by a C guest (test/fixtures/c/devices.c). */
import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import type { SyntheticMount } from "../src/index.js"
import { Exited, fixture, kernelLayer, rootOf, runGuest, tempDir } from "./helpers.js"

const DEV: ReadonlyArray<SyntheticMount> = [{ path: "/dev", fs: "dev" }]

/** A root with a /dev directory (the mount point) holding a host file the mount must hide. */
const devRoot = Effect.gen(function*() {
  const dir = yield* tempDir("runsc-devfs-")
  Fs.mkdirSync(Path.join(dir, "dev"))
  Fs.writeFileSync(Path.join(dir, "dev", "hidden"), "the rootfs's own /dev is hidden by the mount")
  return yield* rootOf(dir)
})

layer(kernelLayer, { excludeTestServices: true })("devfs", (it) => {
  it.scoped("null, zero, full, random and urandom behave as on Linux; stdin and stdout reopen the caller's fds; no tty without a terminal", () =>
    Effect.gen(function*() {
      const r = yield* runGuest({ bytes: fixture("devices"), argv: ["devices"], root: yield* devRoot, stdin: "first line\nsecond\n", syntheticMounts: DEV })
      assert.deepStrictEqual(r.status, Exited(0), r.stdout + r.stderr)
      assert.deepStrictEqual(r.stdout.split("\n"), [
        "null 0 5",
        "zero 4096 yes",
        "full 16 ENOSPC",
        "urandom 32 yes",
        "stdin first line",
        "through /dev/stdout",
        // Closing the fd opened through /dev/stdout left fd 1 open.
        "tty ENXIO",
        ""
      ])
    }))

  it.scoped("ls /dev lists the devices, not the rootfs's own /dev; stat sees character devices", () =>
    Effect.gen(function*() {
      const root = yield* devRoot
      const ls = yield* runGuest({ bytes: fixture("ls"), argv: ["ls", "/dev"], root, syntheticMounts: DEV })
      assert.deepStrictEqual(ls.status, Exited(0), ls.stderr)
      assert.notInclude(ls.stdout, "hidden")
      const names = ls.stdout.trim().split("\n").map((line) => line.split(" ")[1]).sort()
      assert.deepStrictEqual(names, ["full", "null", "random", "stderr", "stdin", "stdout", "tty", "urandom", "zero"])
      const st = yield* runGuest({
        bytes: fixture("stat"),
        argv: ["stat", "/dev/null", "/dev", "/dev/nope", "/dev/../dev/hidden/..", "/dev/null/x"],
        root,
        syntheticMounts: DEV
      })
      assert.deepStrictEqual(st.stdout.trim().split("\n"), [
        "/dev/null other 0",
        "/dev dir 0",
        "/dev/nope error No such file or directory",
        // ".." leaves the mount for the root's tree, whose /dev is the mount again.
        "/dev/../dev/hidden/.. error No such file or directory",
        "/dev/null/x error Not a directory"
      ])
    }))

  it.scoped("without the mount, /dev is whatever the rootfs has", () =>
    Effect.gen(function*() {
      const r = yield* runGuest({ bytes: fixture("stat"), argv: ["stat", "/dev/null", "/dev/hidden"], root: yield* devRoot })
      assert.deepStrictEqual(r.stdout.trim().split("\n"), ["/dev/null error No such file or directory", "/dev/hidden file 44"])
    }))
})
