/**
 * The copy-on-write overlay over a host tree: reads come from the host, every change lands in
 * memory and the host never changes; and, under random programs, the overlay behaves exactly as
 * one writable tmpfs holding the same files would.
 */
import { assert, describe, it } from "@effect/vitest"
import { Errno, FileType } from "@runsc/abi"
import { Effect, Either, FastCheck } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { HostFdBudget, hostRoot, type Inode, MemoryAccount, overlay, Tmpfs } from "../src/index.js"

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes)
const bytes = (s: string) => new TextEncoder().encode(s)

/** The inode at `path` (components under `root`, no symlinks followed). */
const walk = (root: Inode, path: string): Effect.Effect<Inode, unknown> =>
  Effect.reduce(path.split("/").filter((c) => c.length > 0), root, (dir, name) => dir.lookup(name))

const parentOf = (root: Inode, path: string) => {
  const slash = path.lastIndexOf("/")
  return Effect.flatMap(walk(root, slash < 0 ? "" : path.slice(0, slash)), (dir) =>
    dir.changes === undefined ? Effect.fail({ errno: Errno.NOTDIR }) : Effect.succeed({ changes: dir.changes, name: path.slice(slash + 1) }))
}

const readAll = (inode: Inode) =>
  Effect.scoped(Effect.flatMap(Effect.acquireRelease(inode.open({ read: true, write: false }), (d) => d.close), (d) => Effect.map(d.read(1 << 16, 0n), text)))

const writeAt = (inode: Inode, data: string, at = 0n) =>
  Effect.scoped(Effect.flatMap(Effect.acquireRelease(inode.open({ read: true, write: true }), (d) => d.close), (d) => d.write(bytes(data), at)))

const errnoOf = <A>(effect: Effect.Effect<A, unknown>) =>
  Effect.map(Effect.either(effect), (r) => (Either.isLeft(r) ? (r.left as { errno: Errno }).errno : Errno.SUCCESS))

/** Every name under `dir` with what it holds: a tree both sides can be compared by. */
const snapshot = (dir: Inode, prefix = ""): Effect.Effect<Array<string>, unknown> =>
  Effect.gen(function*() {
    const out: Array<string> = []
    for (const entry of [...(yield* dir.readdir)].sort((a, b) => a.name.localeCompare(b.name))) {
      const child = yield* dir.lookup(entry.name)
      const st = yield* child.stat
      assert.strictEqual(st.ino, entry.ino, `${prefix}${entry.name}: readdir and stat agree on the inode number`)
      assert.strictEqual(st.filetype, entry.filetype)
      const path = `${prefix}${entry.name}`
      if (child.filetype === FileType.DIRECTORY) out.push(`${path}/`, ...(yield* snapshot(child, `${path}/`)))
      else if (child.filetype === FileType.SYMBOLIC_LINK) out.push(`${path} -> ${yield* child.readlink}`)
      else out.push(`${path} ${st.nlink} ${st.mode.toString(8)} ${JSON.stringify(yield* readAll(child))}`)
    }
    return out
  })

const hostTree = (): string => {
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "overlay-"))
  Fs.writeFileSync(Path.join(dir, "greeting"), "hello from the host\n")
  Fs.chmodSync(Path.join(dir, "greeting"), 0o640)
  Fs.mkdirSync(Path.join(dir, "etc/deep"), { recursive: true })
  Fs.writeFileSync(Path.join(dir, "etc/config"), "a=1\n")
  Fs.writeFileSync(Path.join(dir, "etc/deep/leaf"), "leaf\n")
  Fs.symlinkSync("greeting", Path.join(dir, "link"))
  Fs.mkdirSync(Path.join(dir, "empty"))
  return dir
}

/** Every host file under `dir` with its contents, to prove nothing changed. */
const hostSnapshot = (dir: string): Array<string> =>
  (Fs.readdirSync(dir, { recursive: true }) as Array<string>).sort().map((p) => {
    const full = Path.join(dir, p)
    const st = Fs.lstatSync(full)
    return st.isFile() ? `${p} ${Fs.readFileSync(full, "utf8")} ${st.mtimeMs}` : st.isSymbolicLink() ? `${p} -> ${Fs.readlinkSync(full)}` : `${p}/`
  })

const withHost = <A>(f: (root: Inode, dir: string) => Effect.Effect<A, unknown>, memory?: number) =>
  Effect.gen(function*() {
    const dir = hostTree()
    const before = hostSnapshot(dir)
    const lower = yield* hostRoot(dir, { fds: yield* HostFdBudget.ofProcess })
    const root = yield* overlay(lower, { instance: 1, ...(memory !== undefined ? { account: new MemoryAccount(memory) } : {}) })
    yield* f(root, dir)
    assert.deepStrictEqual(hostSnapshot(dir), before, "the host tree never changes")
    Fs.rmSync(dir, { recursive: true })
  })

describe("overlay over a host tree", () => {
  it.scoped("reads the host; a write copies the file up, keeps its mode, and every holder sees it", () =>
    withHost((root) =>
      Effect.gen(function*() {
        const file = yield* root.lookup("greeting")
        assert.strictEqual(yield* readAll(file), "hello from the host\n")
        const before = yield* file.stat
        yield* writeAt(file, "HELLO")
        assert.strictEqual(yield* readAll(file), "HELLO from the host\n")
        assert.strictEqual(yield* readAll(yield* root.lookup("greeting")), "HELLO from the host\n", "a new lookup sees the copy")
        const after = yield* file.stat
        assert.strictEqual(after.mode, 0o640)
        assert.strictEqual(after.dev, before.dev, "one device for the whole overlay")
        assert.notStrictEqual(after.ino, before.ino, "copy-up changes the inode number, as Linux's overlayfs does")
        const fd = yield* file.open({ read: true, write: false })
        assert.deepStrictEqual(yield* fd.stat, after, "fstat agrees with stat")
        yield* fd.close
      })))

  it.scoped("a copy-up of a deep file copies its directories, which keep their other entries", () =>
    withHost((root) =>
      Effect.gen(function*() {
        const leaf = yield* walk(root, "etc/deep/leaf")
        yield* leaf.truncate!(2n)
        assert.strictEqual(yield* readAll(yield* walk(root, "etc/deep/leaf")), "le")
        assert.deepStrictEqual((yield* (yield* root.lookup("etc")).readdir).map((e) => e.name).sort(), ["config", "deep"])
        assert.strictEqual(yield* readAll(yield* walk(root, "etc/config")), "a=1\n")
      })))

  it.scoped("unlink whites out a host file; a new one of that name starts empty", () =>
    withHost((root) =>
      Effect.gen(function*() {
        yield* root.changes!.unlink("greeting")
        assert.strictEqual(yield* errnoOf(root.lookup("greeting")), Errno.NOENT)
        assert.notInclude((yield* root.readdir).map((e) => e.name), "greeting")
        const fresh = yield* root.changes!.create("greeting")
        assert.strictEqual(yield* readAll(fresh), "")
        assert.include((yield* root.readdir).map((e) => e.name), "greeting")
      })))

  it.scoped("rmdir needs the merged directory empty; a directory made again shows nothing of the host's", () =>
    withHost((root) =>
      Effect.gen(function*() {
        assert.strictEqual(yield* errnoOf(root.changes!.rmdir("etc")), Errno.NOTEMPTY)
        const etc = yield* root.lookup("etc")
        yield* etc.changes!.unlink("config")
        assert.strictEqual(yield* errnoOf(root.changes!.rmdir("etc")), Errno.NOTEMPTY)
        yield* (yield* etc.lookup("deep")).changes!.unlink("leaf")
        yield* etc.changes!.rmdir("deep")
        yield* root.changes!.rmdir("etc")
        assert.strictEqual(yield* errnoOf(root.lookup("etc")), Errno.NOENT)
        assert.strictEqual(yield* errnoOf(etc.changes!.create("late")), Errno.NOENT, "a removed directory takes no new names")
        yield* root.changes!.mkdir("etc")
        assert.deepStrictEqual(yield* (yield* root.lookup("etc")).readdir, [], "opaque: the host's entries stay hidden")
      })))

  it.scoped("rename moves a host file (copied up) and whites out its old name; a host directory is EXDEV", () =>
    withHost((root) =>
      Effect.gen(function*() {
        const etc = yield* root.lookup("etc")
        yield* root.changes!.rename("greeting", etc.changes!, "moved")
        assert.strictEqual(yield* errnoOf(root.lookup("greeting")), Errno.NOENT)
        assert.strictEqual(yield* readAll(yield* etc.lookup("moved")), "hello from the host\n")
        yield* etc.changes!.rename("moved", etc.changes!, "config")
        assert.strictEqual(yield* readAll(yield* etc.lookup("config")), "hello from the host\n", "replaces a host file")
        assert.strictEqual(yield* errnoOf(root.changes!.rename("etc", root.changes!, "etc2")), Errno.XDEV)
        yield* root.changes!.mkdir("fresh")
        yield* root.changes!.rename("fresh", root.changes!, "empty")
        assert.deepStrictEqual(yield* (yield* root.lookup("empty")).readdir, [])
        assert.strictEqual(yield* errnoOf(root.changes!.rename("empty", etc.changes!, "x")), Errno.SUCCESS, "a directory made in memory moves")
      })))

  it.scoped("a hard link to a host file is one file under two names", () =>
    withHost((root) =>
      Effect.gen(function*() {
        yield* root.changes!.link("second", yield* root.lookup("greeting"))
        yield* writeAt(yield* root.lookup("second"), "J")
        assert.strictEqual(yield* readAll(yield* root.lookup("greeting")), "Jello from the host\n")
        const [a, b] = yield* Effect.all([Effect.flatMap(root.lookup("greeting"), (i) => i.stat), Effect.flatMap(root.lookup("second"), (i) => i.stat)])
        assert.strictEqual(a!.ino, b!.ino)
        assert.strictEqual(a!.nlink, 2n)
      })))

  it.scoped("times of a host symlink and directory change in memory", () =>
    withHost((root) =>
      Effect.gen(function*() {
        const link = yield* root.lookup("link")
        yield* link.setTimes!(5_000_000_000n, 7_000_000_000n)
        const st = yield* (yield* root.lookup("link")).stat
        assert.strictEqual(st.mtim, 7_000_000_000n)
        assert.strictEqual(yield* (yield* root.lookup("link")).readlink, "greeting")
        const fd = yield* (yield* root.lookup("empty")).open({ read: true, write: false })
        yield* fd.setTimes!(undefined, 9_000_000_000n)
        assert.strictEqual((yield* fd.stat).mtim, 9_000_000_000n)
      })))

  it.scoped("a copy-up past the memory limit fails ENOSPC and leaves no half file", () =>
    withHost((root) =>
      Effect.gen(function*() {
        assert.strictEqual(yield* errnoOf(writeAt(yield* root.lookup("greeting"), "x")), Errno.NOSPC)
        assert.strictEqual(yield* readAll(yield* root.lookup("greeting")), "hello from the host\n")
        assert.strictEqual(yield* errnoOf(writeAt(yield* root.lookup("link"), "x")), Errno.LOOP)
      }), 8))

  it.scoped("a write open of a host symlink fails ELOOP and copies nothing up", () =>
    withHost((root) =>
      Effect.gen(function*() {
        const link = yield* root.lookup("link")
        const before = yield* link.stat
        assert.strictEqual(yield* errnoOf(writeAt(link, "x")), Errno.LOOP)
        assert.strictEqual((yield* (yield* root.lookup("link")).stat).ino, before.ino, "still the lower's (a copy-up changes it)")
      })))

  it.scoped("concurrent writers of one host file copy it up once", () =>
    withHost((root) =>
      Effect.gen(function*() {
        const file = yield* root.lookup("greeting")
        yield* Effect.all([writeAt(file, "A", 0n), writeAt(yield* root.lookup("greeting"), "B", 1n), writeAt(file, "C", 2n)], { concurrency: "unbounded" })
        assert.strictEqual(yield* readAll(yield* root.lookup("greeting")), "ABClo from the host\n")
      })))
})

// ---- the overlay against a model ----------------------------------------------------------

const files = ["a", "b", "d/a", "d/b", "d/f/x", "e/a"] as const
const dirs = ["d", "e", "d/f", "g"] as const
const anyPath = FastCheck.constantFrom(...files, ...dirs)

const op = FastCheck.oneof(
  FastCheck.record({ kind: FastCheck.constant("write" as const), path: FastCheck.constantFrom(...files), at: FastCheck.nat(8), data: FastCheck.constantFrom("1", "22", "333") }),
  FastCheck.record({ kind: FastCheck.constant("truncate" as const), path: FastCheck.constantFrom(...files), size: FastCheck.nat(6) }),
  FastCheck.record({ kind: FastCheck.constant("create" as const), path: FastCheck.constantFrom(...files) }),
  FastCheck.record({ kind: FastCheck.constant("mkdir" as const), path: anyPath }),
  FastCheck.record({ kind: FastCheck.constant("symlink" as const), path: anyPath }),
  FastCheck.record({ kind: FastCheck.constant("unlink" as const), path: anyPath }),
  FastCheck.record({ kind: FastCheck.constant("rmdir" as const), path: anyPath }),
  FastCheck.record({ kind: FastCheck.constant("rename" as const), path: anyPath, to: anyPath }),
  FastCheck.record({ kind: FastCheck.constant("link" as const), path: FastCheck.constantFrom(...files), to: anyPath })
)
type Op = typeof op extends FastCheck.Arbitrary<infer T> ? T : never

/** The starting tree, written into a fresh tmpfs. */
const populate = Effect.gen(function*() {
  const root = yield* Tmpfs.make({ instance: 9 })
  yield* root.changes!.mkdir("d")
  yield* root.changes!.mkdir("e")
  const d = yield* root.lookup("d")
  yield* d.changes!.mkdir("f")
  yield* root.changes!.symlink("s", "a")
  for (const [path, content] of [["a", "A"], ["d/a", "DA"], ["d/f/x", "X"]] as const) {
    const { changes, name } = yield* parentOf(root, path)
    yield* writeAt(yield* changes.create(name), content)
  }
  return root
})

/** Applies `o` to the tree at `root`; its errno. */
const apply = (root: Inode, o: Op) =>
  errnoOf(Effect.gen(function*() {
    switch (o.kind) {
      case "write":
        return yield* writeAt(yield* walk(root, o.path), o.data, BigInt(o.at))
      case "truncate":
      {
        const inode = yield* walk(root, o.path)
        return yield* (inode.truncate ? inode.truncate(BigInt(o.size)) : Effect.fail({ errno: Errno.INVAL }))
      }
      case "create": {
        const { changes, name } = yield* parentOf(root, o.path)
        return yield* changes.create(name)
      }
      case "mkdir": {
        const { changes, name } = yield* parentOf(root, o.path)
        return yield* changes.mkdir(name)
      }
      case "symlink": {
        const { changes, name } = yield* parentOf(root, o.path)
        return yield* changes.symlink(name, "target")
      }
      case "unlink": {
        const { changes, name } = yield* parentOf(root, o.path)
        return yield* changes.unlink(name)
      }
      case "rmdir": {
        const { changes, name } = yield* parentOf(root, o.path)
        return yield* changes.rmdir(name)
      }
      case "rename": {
        const from = yield* parentOf(root, o.path)
        const to = yield* parentOf(root, o.to)
        return yield* from.changes.rename(from.name, to.changes, to.name)
      }
      case "link": {
        const to = yield* parentOf(root, o.to)
        return yield* to.changes.link(to.name, yield* walk(root, o.path))
      }
    }
  }))

it.effect.prop("the overlay behaves as one writable tree, and its lower tree never changes", [FastCheck.array(op, { maxLength: 30 })], ([ops]) =>
  Effect.gen(function*() {
    const lower = yield* populate
    const model = yield* populate
    const lowerBefore = yield* snapshot(lower)
    const root = yield* overlay(lower, { instance: 2 })
    for (const o of ops) {
      const got = yield* apply(root, o)
      // Moving a directory that has a lower layer is EXDEV by design: the model cannot follow.
      if (got === Errno.XDEV && o.kind === "rename") {
        assert.strictEqual((yield* walk(model, o.path)).filetype, FileType.DIRECTORY, `${JSON.stringify(o)}: only directories are EXDEV`)
        continue
      }
      assert.strictEqual(got, yield* apply(model, o), JSON.stringify(o))
      assert.deepStrictEqual(yield* snapshot(root), yield* snapshot(model), `after ${JSON.stringify(o)}`)
    }
    assert.deepStrictEqual(yield* snapshot(lower), lowerBefore)
  }), { fastCheck: { numRuns: 300 } })
