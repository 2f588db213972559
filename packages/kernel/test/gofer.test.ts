/**
 * The gofer under overlapping mounts of one host tree: whatever a guest renames, swaps or plants
 * through one mount, no call through any mount — with inodes looked up before or after — reads,
 * writes or creates a host file outside the mounted trees.
 *
 * The property runs random operations (lookups kept as held inodes, reads, writes, creates,
 * mkdirs, renames, symlinks with targets pointing out of the tree, links, unlinks, truncates,
 * times) across five mounts of one tree (two writable of the whole, one read-only of the whole,
 * one read-only and one writable of subdirectories), in a tree where host symlinks to the
 * outside are planted, and checks after every step that nothing seen came from outside and,
 * at the end, that the outside is exactly as it was.
 */
import { assert, describe, it } from "@effect/vitest"
import { Errno, FileType } from "@runsc/abi"
import { Effect, Either, FastCheck } from "effect"
import { spawnSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { goferCore } from "../src/fs/goferCore.js"
import { HostFdBudget, hostMount, type Inode, readAll, type SyscallError } from "../src/index.js"

const SECRET = "OUTSIDE-SECRET-5d1c"

/** A fresh host layout: `tree` (what is mounted) beside `outside` (what must stay unreachable). */
const layout = () => {
  const top = Fs.mkdtempSync(Path.join(Os.tmpdir(), "runsc-gofer-prop-"))
  const tree = Path.join(top, "tree")
  const outside = Path.join(top, "outside")
  Fs.mkdirSync(Path.join(outside, "inner"), { recursive: true })
  Fs.writeFileSync(Path.join(outside, "f"), `${SECRET} f\n`)
  Fs.writeFileSync(Path.join(outside, "inner", "f"), `${SECRET} inner\n`)
  Fs.mkdirSync(Path.join(tree, "a", "b"), { recursive: true })
  Fs.mkdirSync(Path.join(tree, "c"))
  Fs.writeFileSync(Path.join(tree, "f"), "tree f\n")
  Fs.writeFileSync(Path.join(tree, "a", "f"), "tree a/f\n")
  Fs.writeFileSync(Path.join(tree, "a", "b", "f"), "tree a/b/f\n")
  // Host symlinks out of the tree, which a guest can rename into the place of a directory.
  Fs.symlinkSync(outside, Path.join(tree, "up"))
  Fs.symlinkSync("../outside", Path.join(tree, "rel"))
  Fs.symlinkSync(Path.join(outside, "inner"), Path.join(tree, "a", "up"))
  return { top, tree, outside }
}

/** What the outside holds: every path with its type, content and modification time. */
const snapshot = (dir: string): Record<string, string> => {
  const out: Record<string, string> = {}
  const walk = (rel: string) => {
    const path = Path.join(dir, rel)
    const st = Fs.lstatSync(path)
    out[rel] = st.isDirectory() ? `dir ${st.mtimeMs}` : st.isSymbolicLink() ? `link ${Fs.readlinkSync(path)}` : `file ${st.mtimeMs} ${Fs.readFileSync(path, "utf8")}`
    if (st.isDirectory()) for (const name of Fs.readdirSync(path)) walk(Path.join(rel, name))
  }
  walk(".")
  return out
}

const inodesOf = (dir: string): Set<bigint> => {
  const inos = new Set<bigint>()
  const walk = (path: string) => {
    const st = Fs.lstatSync(path, { bigint: true })
    inos.add(st.ino)
    if (st.isDirectory()) for (const name of Fs.readdirSync(path)) walk(Path.join(path, name))
  }
  walk(dir)
  return inos
}

const NAMES = ["a", "b", "c", "f", "g", "up", "rel"] as const
const DIRS = ["a", "b"] as const
const LINKS = ["up", "rel"] as const
const TARGETS = ["/", "..", "../..", "up", "f", "a/b"] as const

type Op =
  | { readonly op: "lookup" | "readdir" | "read" | "write" | "create" | "mkdir" | "unlink" | "rmdir" | "stat" | "truncate" | "times"; readonly at: number; readonly name: string }
  | { readonly op: "rename" | "link"; readonly at: number; readonly name: string; readonly to: number; readonly toName: string }
  | { readonly op: "symlink"; readonly at: number; readonly name: string; readonly target: string }
  /** Lookups from a mount's root down `path`, every inode found held. */
  | { readonly op: "hold"; readonly at: number; readonly path: ReadonlyArray<string> }
  /** Through `at`: `dir` moves aside, and the host symlink `link` of the same directory takes its name. */
  | { readonly op: "swap"; readonly at: number; readonly dir: string; readonly link: string }

const name = FastCheck.constantFrom(...NAMES)
/** An inode the guest holds: a mount's root half of the time (negative), else any held one. */
const held = FastCheck.oneof(FastCheck.integer({ min: -5, max: -1 }), FastCheck.nat(40))
const op: FastCheck.Arbitrary<Op> = FastCheck.oneof(
  {
    weight: 6,
    arbitrary: FastCheck.record({
      op: FastCheck.constantFrom("lookup", "readdir", "readdir", "read", "read", "write", "write", "create", "mkdir", "unlink", "rmdir", "stat", "truncate", "times"),
      at: held,
      name
    })
  },
  { weight: 2, arbitrary: FastCheck.record({ op: FastCheck.constantFrom("rename", "rename", "link"), at: held, name, to: held, toName: name }) },
  { weight: 1, arbitrary: FastCheck.record({ op: FastCheck.constant("symlink"), at: held, name, target: FastCheck.constantFrom(...TARGETS) }) },
  { weight: 3, arbitrary: FastCheck.record({ op: FastCheck.constant("hold"), at: FastCheck.integer({ min: -5, max: -1 }), path: FastCheck.array(FastCheck.constantFrom(...DIRS, "f"), { minLength: 1, maxLength: 3 }) }) },
  { weight: 3, arbitrary: FastCheck.record({ op: FastCheck.constant("swap"), at: FastCheck.integer({ min: -5, max: -1 }), dir: FastCheck.constantFrom(...DIRS), link: FastCheck.constantFrom(...LINKS) }) }
) as FastCheck.Arbitrary<Op>

const attempt = <A>(effect: Effect.Effect<A, SyscallError>) => Effect.either(effect)

/** Runs with directories resolved by the one-component walk instead of openat2 (kernels without it). */
const withWalk = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.flatMap(goferCore, (core) =>
    Effect.acquireUseRelease(Effect.sync(() => core.useOpenat2(false)), () => effect, (was) => Effect.sync(() => core.useOpenat2(was))))

describe("the gofer core's positional reads and writes (what a guest's worker calls on a lent file)", () => {
  it.scoped("move exactly the bytes asked for, and refuse a range outside their array or a negative offset", () =>
    Effect.gen(function*() {
      const core = yield* goferCore
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "runsc-pio-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true })))
      const fd = Fs.openSync(Path.join(dir, "f"), "w+")
      yield* Effect.addFinalizer(() => Effect.sync(() => Fs.closeSync(fd)))
      const bytes = new Uint8Array(16)
      bytes.set([1, 2, 3, 4], 4)
      assert.strictEqual(core.pwrite(fd, bytes, 4, 4, 10), 4)
      const back = new Uint8Array(16)
      assert.strictEqual(core.pread(fd, back, 2, 8, 8), 6, "short at the end of the file")
      assert.deepStrictEqual([...back], [0, 0, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0])
      const EFAULT = -Os.constants.errno.EFAULT
      const EINVAL = -Os.constants.errno.EINVAL
      // Past the array's end, before its start, or a length that wraps: never outside it.
      assert.strictEqual(core.pread(fd, back, 10, 7, 0), EFAULT)
      assert.strictEqual(core.pwrite(fd, back, 17, 0, 0), EFAULT)
      assert.strictEqual(core.pread(fd, back, -1, 1, 0), EFAULT)
      assert.strictEqual(core.pread(fd, back, 1, -1, 0), EFAULT)
      assert.strictEqual(core.pwrite(fd, back, 8, 2 ** 53, 0), EFAULT)
      assert.strictEqual(core.pwrite(fd, back, 0, 1, -5), EINVAL)
      assert.strictEqual(Fs.fstatSync(fd).size, 14, "no refused call wrote")
    }))
})

describe("the gofer across overlapping mounts", () => {
  for (const resolution of ["openat2", "walk"] as const) {
    it.scoped.prop(
      `no sequence of operations through any mount reads, writes or creates a host file outside the mounted trees (${resolution})`,
      [FastCheck.array(op, { minLength: 1, maxLength: 60 })],
      ([ops]) =>
        Effect.gen(function*() {
          const { top, tree, outside } = layout()
          yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(top, { recursive: true, force: true })))
          const before = snapshot(outside)
          const outsideInodes = inodesOf(outside)
          const fds = yield* HostFdBudget.ofProcess
          const mounts: Array<Inode> = [
            yield* hostMount(tree, { writable: true, fds }),
            yield* hostMount(tree, { writable: true, fds }),
            yield* hostMount(tree, { fds }),
            yield* hostMount(Path.join(tree, "a"), { fds }),
            yield* hostMount(Path.join(tree, "a", "b"), { writable: true, fds })
          ]
          // Inodes the "guest" holds: mount roots, then whatever lookups found (as fds and cwds hold them).
          const inodes: Array<Inode> = [...mounts]
          const pick = (i: number) => (i < 0 ? mounts[-1 - i]! : inodes[i % inodes.length]!)
          const noSecret = (text: string, what: string) => assert.notInclude(text, SECRET, `${what} read a file outside the tree`)

          for (const step of ops) {
            const at = pick(step.at)
            const changes = at.changes
            switch (step.op) {
              case "hold": {
                let current: Inode = at
                for (const component of step.path) {
                  const found = yield* attempt(current.lookup(component))
                  if (Either.isLeft(found)) break
                  current = found.right
                  inodes.push(current)
                }
                break
              }
              case "swap":
                if (changes) {
                  yield* attempt(changes.rename(step.dir, changes, `${step.dir}.aside`))
                  yield* attempt(changes.rename(step.link, changes, step.dir))
                }
                break
              case "lookup": {
                const found = yield* attempt(at.lookup(step.name))
                if (Either.isRight(found)) {
                  inodes.push(found.right)
                  const st = yield* attempt(found.right.stat)
                  if (Either.isRight(st)) assert.isFalse(outsideInodes.has(st.right.ino), "a lookup reached the outside")
                }
                break
              }
              case "stat": {
                const st = yield* attempt(at.stat)
                if (Either.isRight(st)) assert.isFalse(outsideInodes.has(st.right.ino), "a stat reached the outside")
                break
              }
              case "readdir": {
                const entries = yield* attempt(at.readdir)
                if (Either.isRight(entries)) {
                  for (const entry of entries.right) assert.isFalse(outsideInodes.has(entry.ino), `readdir listed ${entry.name} of the outside`)
                }
                break
              }
              case "read": {
                if (at.filetype !== FileType.REGULAR_FILE) break
                const bytes = yield* attempt(readAll(at.open({ read: true, write: false })))
                if (Either.isRight(bytes)) noSecret(new TextDecoder().decode(bytes.right), "a read")
                break
              }
              case "write": {
                if (at.filetype !== FileType.REGULAR_FILE) break
                const file = yield* attempt(at.open({ read: true, write: true }))
                if (Either.isRight(file)) {
                  const content = yield* attempt(file.right.read(4096, 0n))
                  if (Either.isRight(content)) noSecret(new TextDecoder().decode(content.right), "a read-write open")
                  yield* attempt(file.right.write(new TextEncoder().encode("written by the guest\n"), 0n))
                  yield* file.right.close
                }
                break
              }
              case "truncate":
                if (at.truncate) yield* attempt(at.truncate(0n))
                break
              case "times":
                if (at.setTimes) yield* attempt(at.setTimes(1_000_000_000n, 2_000_000_000n))
                break
              case "create":
                if (changes) {
                  const made = yield* attempt(changes.create(step.name))
                  if (Either.isRight(made)) inodes.push(made.right)
                }
                break
              case "mkdir":
                if (changes) yield* attempt(changes.mkdir(step.name))
                break
              case "unlink":
                if (changes) yield* attempt(changes.unlink(step.name))
                break
              case "rmdir":
                if (changes) yield* attempt(changes.rmdir(step.name))
                break
              case "symlink":
                if (changes) yield* attempt(changes.symlink(step.name, step.target === "up" ? outside : step.target))
                break
              case "rename": {
                const to = pick(step.to).changes
                if (changes && to) yield* attempt(changes.rename(step.name, to, step.toName))
                break
              }
              case "link": {
                const target = pick(step.to)
                if (changes) yield* attempt(changes.link(step.toName, target))
                break
              }
            }
          }
          assert.deepStrictEqual(snapshot(outside), before, "the outside changed")
          assert.deepStrictEqual(Fs.readdirSync(top).sort(), ["outside", "tree"], "something was created beside the tree")
        }).pipe(resolution === "walk" ? withWalk : (effect) => effect),
      { fastCheck: { numRuns: Number(process.env["RUNSC_PROPERTY_RUNS"] ?? (resolution === "walk" ? 150 : 300)) } }
    )
  }

  it.scoped("an inode held under a read-only mount stays the directory it was, whatever takes its name through a writable mount of the same tree", () =>
    Effect.gen(function*() {
      const { top, tree, outside } = layout()
      yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(top, { recursive: true, force: true })))
      const fds = yield* HostFdBudget.ofProcess
      const rw = yield* hostMount(tree, { writable: true, fds })
      const ro = yield* hostMount(Path.join(tree, "a"), { fds })
      const held = yield* ro.lookup("b")
      // The read-only mount's root and a directory under it are replaced by host symlinks to the outside.
      yield* rw.changes!.rename("a", rw.changes!, "a.old")
      yield* rw.changes!.rename("up", rw.changes!, "a")
      const aOld = yield* rw.lookup("a.old")
      yield* aOld.changes!.rename("b", aOld.changes!, "b.old")
      yield* aOld.changes!.rename("up", aOld.changes!, "b")
      // The mount's root is still the directory it was mounted on (now a.old), never the outside.
      const names = (yield* ro.readdir).map((e) => e.name)
      assert.deepStrictEqual(names, ["b", "b.old", "f"])
      assert.strictEqual(new TextDecoder().decode(yield* readAll((yield* ro.lookup("f")).open({ read: true, write: false }))), "tree a/f\n")
      // Through the mount, the new "b" is a host symlink: an inode of type symlink, never followed.
      assert.strictEqual((yield* ro.lookup("b")).filetype, FileType.SYMBOLIC_LINK)
      // The held directory moved away from its name: below it, nothing (not the outside's "f").
      const below = yield* Effect.either(held.lookup("f"))
      assert.isTrue(Either.isLeft(below) && below.left.errno === Errno.NOENT)
      assert.deepStrictEqual(Fs.readdirSync(outside).sort(), ["f", "inner"])
    }))

  it.scoped("a tree's descriptor is closed with its scope: its inodes then fail EBADF, never reach another file", () =>
    Effect.gen(function*() {
      const { top, tree } = layout()
      yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(top, { recursive: true, force: true })))
      const root = yield* Effect.scoped(hostMount(tree, { writable: true, fds: yield* HostFdBudget.ofProcess }))
      for (const effect of [root.lookup("f"), root.readdir, root.changes!.create("new")] as const) {
        const result = yield* Effect.either(effect as Effect.Effect<unknown, SyscallError>)
        assert.isTrue(Either.isLeft(result) && result.left.errno === Errno.BADF)
      }
      assert.isFalse(Fs.existsSync(Path.join(tree, "new")))
    }))

  it.scoped("calls in a subdirectory give back the descriptor they open: a thousand lookups, reads of a directory and creates leave no host descriptor behind", () =>
    Effect.gen(function*() {
      const { top, tree } = layout()
      yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(top, { recursive: true, force: true })))
      const open = () => Fs.readdirSync("/proc/self/fd").length
      const held = yield* Effect.scoped(Effect.gen(function*() {
        const root = yield* hostMount(tree, { writable: true, fds: yield* HostFdBudget.ofProcess })
        const b = yield* Effect.flatMap(root.lookup("a"), (a) => a.lookup("b"))
        const before = open()
        for (let i = 0; i < 1000; i++) {
          yield* b.lookup("f")
          yield* b.readdir
          yield* Effect.either(b.lookup("missing"))
        }
        yield* b.changes!.mkdir("made", 0o755)
        assert.strictEqual(open(), before, "descriptors the calls left open")
        return open()
      }))
      assert.isBelow(open(), held, "the tree's own descriptor is closed with its scope")
    }))

  it.scoped("a FIFO or device swapped in for a file is refused without blocking the sentry", () =>
    Effect.gen(function*() {
      const { top, tree } = layout()
      yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(top, { recursive: true, force: true })))
      const root = yield* hostMount(tree, { writable: true, fds: yield* HostFdBudget.ofProcess })
      const file = yield* root.lookup("f")
      Fs.rmSync(Path.join(tree, "f"))
      // mkfifo: a FIFO opened for reading would wait for a writer forever.
      spawnSync("mkfifo", [Path.join(tree, "f")])
      const opened = yield* Effect.either(file.open({ read: true, write: false }))
      assert.isTrue(Either.isLeft(opened))
      const fresh = yield* root.lookup("f")
      const refused = yield* Effect.either(fresh.open({ read: true, write: false }))
      assert.isTrue(Either.isLeft(refused) && refused.left.errno === Errno.ACCES)
    }))

  it.scoped("host descriptors held for guests stop at the sandbox's budget (ENFILE); the sentry's own reads and closed files do not count", () =>
    Effect.gen(function*() {
      const { top, tree } = layout()
      yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(top, { recursive: true, force: true })))
      const fds = new HostFdBudget(4)
      const root = yield* hostMount(tree, { writable: true, fds })
      const file = yield* root.lookup("f")
      const open = () => file.open({ read: true, write: false })
      const held = [yield* open(), yield* open(), yield* open()]
      assert.strictEqual(fds.inUse, 4, "the tree's own descriptor and three files")
      const refused = yield* Effect.either(open())
      assert.isTrue(Either.isLeft(refused) && refused.left.errno === Errno.NFILE)
      // A new mount needs a descriptor too.
      const mount = yield* Effect.either(hostMount(tree, { fds }))
      assert.isTrue(Either.isLeft(mount) && mount.left._tag === "SyscallError" && mount.left.errno === Errno.NFILE)
      // The sentry's own read of a whole file is not held for a guest.
      assert.strictEqual(new TextDecoder().decode(yield* readAll(file.open({ read: true, write: false, transient: true }))), "tree f\n")
      yield* held[0]!.close
      const again = yield* open()
      yield* again.close
      for (const d of held.slice(1)) yield* d.close
      assert.strictEqual(fds.inUse, 1)
    }))
})
