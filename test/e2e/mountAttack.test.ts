/**
 * Attacks on host files through overlapping mounts of one host tree, end to end through the
 * CLI with the default confined sandbox: a guest that renames directories through a writable
 * mount so that a path under another mount (or the container's root) is now a host symlink, and
 * a guest that swaps a directory for a symlink through one mount while it opens files through
 * another. Neither may read, write or create a host file outside the mounts.
 */
import { assert, describe, it } from "@effect/vitest"
import { randomBytes } from "node:crypto"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { afterAll, beforeAll } from "vitest"
import { describeResult, installFixtures, lines, makeTempDir, removeDir, runsc, uniqueId } from "./helpers.js"

const token = randomBytes(8).toString("hex")
const SECRET = `HOST-SECRET-${token}`

interface Layout {
  readonly rootfs: string
  readonly mounts: ReadonlyArray<{ readonly destination: string; readonly source: string; readonly ro: boolean }>
  readonly args: ReadonlyArray<string>
  readonly writableRoot?: boolean
}

describe.concurrent("attacks through overlapping mounts of one host tree", () => {
  const cleanup: Array<string> = []
  let secretDir = ""
  let secretRel = "" // the secret's host path relative to the host's /
  let stateRoot = ""

  const tempDir = async (prefix: string) => {
    const dir = await makeTempDir(prefix)
    cleanup.push(dir)
    return dir
  }

  beforeAll(async () => {
    secretDir = await tempDir("runsc-e2e-attack-secret-")
    Fs.writeFileSync(Path.join(secretDir, "secret.txt"), `${SECRET}\n`)
    secretRel = Path.join(secretDir, "secret.txt").replace(/^\/+/, "")
    stateRoot = await tempDir("runsc-e2e-attack-state-")
  })
  afterAll(async () => {
    for (const dir of cleanup) await removeDir(dir)
  })

  /** `runsc run` of a bundle whose spec binds `mounts`; the result and what the guest printed. */
  const run = async (layout: Layout) => {
    const bundle = await tempDir("runsc-e2e-attack-bundle-")
    Fs.writeFileSync(Path.join(bundle, "config.json"), JSON.stringify({
      ociVersion: "1.0.2",
      process: { terminal: false, user: { uid: 0, gid: 0 }, args: layout.args, env: ["PATH=/bin"], cwd: "/" },
      root: { path: layout.rootfs, readonly: layout.writableRoot !== true },
      mounts: layout.mounts.map((m) => ({ destination: m.destination, type: "bind", source: m.source, options: ["rbind", m.ro ? "ro" : "rw"] }))
    }))
    return runsc(["--root", stateRoot, "run", "--bundle", bundle, uniqueId("attack")], { timeoutMs: 120_000 })
  }

  /** A host tree with a host symlink to "/" in it: what a guest can rename into place. */
  const treeWithRootLink = async () => {
    const tree = await tempDir("runsc-e2e-attack-tree-")
    Fs.mkdirSync(Path.join(tree, "sub"))
    Fs.writeFileSync(Path.join(tree, "sub", "own.txt"), "the sub-tree's own file\n")
    Fs.symlinkSync("/", Path.join(tree, "rootlink"))
    return tree
  }

  const rootfsWithFixture = async (dir: string) => {
    const rootfs = Path.join(dir, "rootfs")
    await installFixtures(rootfs, ["mount_attack"])
    return rootfs
  }

  it("a read-only mount of a subdirectory of a writable mount's tree: the subdirectory swapped for a symlink to / shows nothing of the host", async () => {
    const tree = await treeWithRootLink()
    const rootfs = await rootfsWithFixture(await tempDir("runsc-e2e-attack-rootfs-"))
    const result = await run({
      rootfs,
      mounts: [{ destination: "/rw", source: tree, ro: false }, { destination: "/ro", source: Path.join(tree, "sub"), ro: true }],
      args: ["mount_attack", "swap", "/rw", "sub", "rootlink", `/ro/${secretRel}`, "/ro/own.txt", `/rw/sub/${secretRel}`]
    })
    assert.strictEqual(result.code, 0, describeResult(result))
    assert.notInclude(result.stdout, SECRET, describeResult(result))
    assert.deepStrictEqual(lines(result.stdout), [
      "move-aside ok",
      "plant ok",
      // The read-only mount is the directory it was mounted on, wherever that moved.
      `read /ro/${secretRel} ENOENT`,
      "read /ro/own.txt \"the sub-tree's own file\"",
      // Through the writable mount, the host symlink is a symlink inside the container.
      `read /rw/sub/${secretRel} ENOENT`
    ])
  })

  for (const writableRoot of [false, true]) {
    it(`a writable mount whose tree holds the container's ${writableRoot ? "overlay's lower" : "read-only"} root: the root swapped for a symlink to / shows nothing of the host`, async () => {
      const tree = await treeWithRootLink()
      const rootfs = await rootfsWithFixture(tree)
      const result = await run({
        rootfs,
        writableRoot,
        mounts: [{ destination: "/rw", source: tree, ro: false }],
        args: ["mount_attack", "swap", "/rw", "rootfs", "rootlink", `/${secretRel}`, "/bin/mount_attack"]
      })
      assert.strictEqual(result.code, 0, describeResult(result))
      assert.notInclude(result.stdout, SECRET, describeResult(result))
      const [aside, plant, secret, own] = lines(result.stdout)
      assert.deepStrictEqual([aside, plant, secret], ["move-aside ok", "plant ok", `read /${secretRel} ENOENT`])
      // The root is still the directory it was mounted on: its own files are there.
      assert.match(own!, /^read \/bin\/mount_attack "/)
    })
  }

  it("two writable mounts of one tree: a directory swapped for a symlink to the host through one, while files are opened for writing through the other, never lets a write out", async () => {
    const tree = await tempDir("runsc-e2e-attack-race-")
    const outside = await tempDir("runsc-e2e-attack-outside-")
    Fs.mkdirSync(Path.join(tree, "d"))
    // The host file the attack aims at: the same name as the guest's file, outside the mounts.
    Fs.writeFileSync(Path.join(outside, "f"), "the host's own file\n")
    Fs.symlinkSync(outside, Path.join(tree, "planted"))
    const rootfs = await rootfsWithFixture(await tempDir("runsc-e2e-attack-rootfs-"))
    const rounds = 10_000
    const result = await run({
      rootfs,
      mounts: [{ destination: "/a", source: tree, ro: false }, { destination: "/b", source: tree, ro: false }],
      args: ["mount_attack", "race", "/a/d/f", "/b", "d", "planted", String(rounds)]
    })
    assert.strictEqual(result.code, 0, describeResult(result))
    const opened = /^opened (\d+) of (\d+)$/.exec(lines(result.stdout).at(-1) ?? "")
    assert.isNotNull(opened, describeResult(result))
    // The race was run (10,000 rounds found the old name-based gofer's write out every time).
    assert.isAbove(Number(opened![1]), 0, describeResult(result))
    assert.deepStrictEqual(Fs.readdirSync(outside), ["f"], "a file was created on the host outside the mounts")
    assert.strictEqual(Fs.readFileSync(Path.join(outside, "f"), "utf8"), "the host's own file\n", "a write reached the host outside the mounts")
  }, 180_000)
})
