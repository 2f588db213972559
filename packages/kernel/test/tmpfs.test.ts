/**
 * tmpfs's byte budget under random programs of creates, writes, truncates, links, unlinks,
 * renames and descriptions held open: what it counts is always the size of the files that have
 * a name or an open description (an unlinked file open somewhere keeps its data, as on Linux),
 * never above its limit, and a refused change (ENOSPC) leaves the file as it was. Its heap
 * charges are always one node's for each such file and one name's for each entry.
 */
import { assert, describe, it } from "@effect/vitest"
import { Errno, FileType } from "@runsc/abi"
import { Effect, Either, FastCheck } from "effect"
import { nameHeap, NODE_HEAP } from "../src/fs/tmpfs.js"
import { defaultHeapShare, type FileDescription, type Inode, MemoryAccount, SyscallError, Tmpfs } from "../src/index.js"
import * as V8 from "node:v8"

const LIMIT = 4096
const names = ["a", "b", "c"] as const

const op = FastCheck.oneof(
  FastCheck.record({ kind: FastCheck.constant("write" as const), name: FastCheck.constantFrom(...names), at: FastCheck.nat(3000), length: FastCheck.nat(3000) }),
  FastCheck.record({ kind: FastCheck.constant("truncate" as const), name: FastCheck.constantFrom(...names), size: FastCheck.nat(5000) }),
  FastCheck.record({ kind: FastCheck.constant("link" as const), name: FastCheck.constantFrom(...names), to: FastCheck.constantFrom(...names) }),
  FastCheck.record({ kind: FastCheck.constant("unlink" as const), name: FastCheck.constantFrom(...names) }),
  FastCheck.record({ kind: FastCheck.constant("rename" as const), name: FastCheck.constantFrom(...names), to: FastCheck.constantFrom(...names) }),
  FastCheck.record({ kind: FastCheck.constant("hold" as const), name: FastCheck.constantFrom(...names) }),
  FastCheck.record({ kind: FastCheck.constant("release" as const), which: FastCheck.nat(5) })
)

it.effect.prop("the budget is the sum of the sizes of files named or held open, within the limit", [FastCheck.array(op, { maxLength: 40 })], ([ops]) =>
  Effect.gen(function*() {
    // Room for the limit's data and every node and name the program can make (the limit binds).
    const account = new MemoryAccount(LIMIT + 8 * NODE_HEAP)
    const root = yield* Tmpfs.make({ instance: 1, limit: LIMIT, account })
    const changes = root.changes!
    const fs = changes.filesystem as Tmpfs
    const open = (name: string) =>
      Effect.flatMap(Effect.either(root.lookup(name)), (found): Effect.Effect<{ inode: Inode; file: FileDescription }, unknown> =>
        Either.isRight(found)
          ? Effect.map(found.right.open({ read: true, write: true }), (file) => ({ inode: found.right, file }))
          : Effect.flatMap(changes.create(name), (inode) => Effect.map(inode.open({ read: true, write: true }), (file) => ({ inode, file }))))
    // Descriptions the program keeps open (written through too, whether named or not).
    const held: Array<FileDescription> = []
    for (const o of ops) {
      if (o.kind === "write") {
        const target = held.length > 0 && o.at % 3 === 0 ? held[o.at % held.length]! : (yield* open(o.name)).file
        const before = (yield* target.stat).size
        const result = yield* Effect.either(target.write(new Uint8Array(o.length).fill(1), BigInt(o.at)))
        if (Either.isLeft(result)) assert.strictEqual((yield* target.stat).size, before, "a refused write changes nothing")
        if (!held.includes(target)) yield* target.close
      } else if (o.kind === "truncate") {
        const { inode, file } = yield* open(o.name)
        yield* file.close
        yield* Effect.either(inode.truncate!(BigInt(o.size)))
      } else if (o.kind === "hold") {
        held.push((yield* open(o.name)).file)
      } else if (o.kind === "release") {
        if (held.length > 0) yield* held.splice(o.which % held.length, 1)[0]!.close
      } else if (o.kind === "link") {
        const source = yield* Effect.either(root.lookup(o.name))
        if (Either.isRight(source)) yield* Effect.either(changes.link(o.to, source.right))
      } else if (o.kind === "unlink") {
        yield* Effect.either(changes.unlink(o.name))
      } else {
        yield* Effect.either(changes.rename(o.name, changes, o.to))
      }
      // The invariant, after every step: distinct files named or held (hard links count once).
      const seen = new Map<bigint, bigint>()
      const entries = yield* root.readdir
      for (const entry of entries) {
        if (entry.filetype !== FileType.REGULAR_FILE) continue
        seen.set(entry.ino, (yield* (yield* root.lookup(entry.name)).stat).size)
      }
      for (const file of held) {
        const st = yield* file.stat
        seen.set(st.ino, st.size)
      }
      const total = [...seen.values()].reduce((a, b) => a + b, 0n)
      assert.strictEqual(BigInt(fs.bytesUsed), total)
      assert.isAtMost(fs.bytesUsed, LIMIT)
      const heap = seen.size * NODE_HEAP + entries.reduce((sum, entry) => sum + nameHeap(entry.name), 0)
      assert.strictEqual(fs.heapUsed, heap, "a node's charge for each file named or held, a name's for each entry")
      assert.strictEqual(account.used, fs.bytesUsed + fs.heapUsed, "the sandbox's account counts the same bytes")
      assert.strictEqual(account.heapUsed, fs.heapUsed)
    }
    // Once nothing holds them, the data of unlinked files is gone and counted no more.
    for (const file of held.splice(0)) yield* file.close
    for (const name of names) yield* Effect.either(changes.unlink(name))
    assert.strictEqual(fs.bytesUsed, 0)
    assert.strictEqual(fs.heapUsed, 0)
    assert.strictEqual(account.used, 0)
    assert.strictEqual(account.heapUsed, 0)
  }), { fastCheck: { numRuns: 300 } })

// A file's bytes against a plain array: writes and truncates across its 64 KiB pages, holes
// read as zeros, a shrink forgets what lay beyond.
const KiB = 1024
const fileOp = FastCheck.oneof(
  FastCheck.record({ kind: FastCheck.constant("write" as const), at: FastCheck.nat(200 * KiB), length: FastCheck.nat(140 * KiB), byte: FastCheck.integer({ min: 1, max: 255 }) }),
  FastCheck.record({ kind: FastCheck.constant("truncate" as const), size: FastCheck.nat(260 * KiB) })
)

it.effect.prop("a file reads back what was written, across pages and holes", [FastCheck.array(fileOp, { maxLength: 12 })], ([ops]) =>
  Effect.gen(function*() {
    const root = yield* Tmpfs.make({ instance: 2 })
    const file = yield* (yield* root.changes!.create("f")).open({ read: true, write: true })
    let model = new Uint8Array(0)
    for (const o of ops) {
      if (o.kind === "write") {
        yield* file.write(new Uint8Array(o.length).fill(o.byte), BigInt(o.at))
        if (o.length > 0) {
          const grown = new Uint8Array(Math.max(model.length, o.at + o.length))
          grown.set(model)
          grown.fill(o.byte, o.at, o.at + o.length)
          model = grown
        }
      } else {
        yield* file.setSize!(BigInt(o.size))
        const resized = new Uint8Array(o.size)
        resized.set(model.subarray(0, o.size))
        model = resized
      }
      assert.strictEqual((yield* file.stat).size, BigInt(model.length))
    }
    const back = yield* file.read(model.length + 10, 0n)
    assert.strictEqual(back.length, model.length)
    assert.isTrue(Buffer.from(back).equals(Buffer.from(model)), "the bytes read back are the bytes written")
  }), { fastCheck: { numRuns: 100 } })

describe("nodes and names against the heap share", () => {
  const SHARE = 64 * KiB
  const fill = (make: (name: string) => Effect.Effect<unknown, unknown>) =>
    Effect.gen(function*() {
      const made: Array<string> = []
      for (;;) {
        const name = `n${made.length}`
        const result = yield* Effect.either(make(name))
        if (Either.isLeft(result)) return { made, error: result.left }
        made.push(name)
      }
    })

  it.effect("empty files, directories, links and socket files meet ENOSPC at the share; data, renames over a name and removals still work; all of it goes back", () =>
    Effect.gen(function*() {
      // Memory to spare: the heap share is what binds.
      const account = new MemoryAccount(64 * 1024 * KiB, undefined, SHARE)
      const root = yield* Tmpfs.make({ instance: 3, account })
      const changes = root.changes!
      const fs = changes.filesystem as Tmpfs
      const kinds = {
        files: (name: string) => changes.create(name),
        directories: (name: string) => changes.mkdir(name),
        links: (name: string) => changes.symlink(name, "x".repeat(1000)),
        sockets: (name: string) => changes.bindSocket!(name, FileType.SOCKET_STREAM, {})
      }
      const counts: Record<string, number> = {}
      for (const [kind, make] of Object.entries(kinds)) {
        const { made, error } = yield* fill(make)
        assert.deepStrictEqual(error, new SyscallError({ errno: Errno.NOSPC }), kind)
        counts[kind] = made.length
        assert.isAtMost(account.heapUsed, SHARE)
        assert.strictEqual(account.heapUsed, fs.heapUsed)
        assert.strictEqual(account.used, fs.heapUsed, "heap charges count against the memory too")
        if (kind === "files") {
          // A full share refuses names, not data: a named file still grows.
          const file = yield* (yield* root.lookup(made[0]!)).open({ read: true, write: true })
          assert.strictEqual(yield* file.write(new Uint8Array(4096), 0n), 4096)
          yield* file.setSize!(0n)
          yield* file.close
          // A rename over an existing name frees one.
          yield* changes.rename(made[0]!, changes, made[1]!)
          made.shift()
        }
        for (const name of made) yield* (kind === "directories" ? changes.rmdir(name) : changes.unlink(name))
        assert.strictEqual(fs.heapUsed, 0, `${kind}: every charge goes back`)
        assert.strictEqual(account.used, 0)
      }
      // Each kind costs about what it holds: a directory twice a file, a long link's target more.
      assert.isAbove(counts.files!, 30)
      assert.isBelow(counts.directories!, counts.files! * 0.6)
      assert.isBelow(counts.links!, counts.files!)
      assert.strictEqual(counts.sockets, counts.files)
    }))

  it.effect("a rename needs room only for what its new name adds", () =>
    Effect.gen(function*() {
      const account = new MemoryAccount(64 * 1024 * KiB, undefined, NODE_HEAP + nameHeap("a") + 10)
      const root = yield* Tmpfs.make({ instance: 6, account })
      const changes = root.changes!
      yield* changes.create("a")
      yield* changes.rename("a", changes, "b")
      assert.deepStrictEqual(yield* Effect.flip(changes.rename("b", changes, "bcdefgh")), new SyscallError({ errno: Errno.NOSPC }))
      yield* changes.rename("b", changes, "bcdef")
      assert.deepStrictEqual((yield* root.readdir).map((e) => e.name), ["bcdef"])
      assert.strictEqual(account.heapUsed, NODE_HEAP + nameHeap("bcdef"))
    }))

  it.effect("an unlinked file held open keeps its charge until its close; it takes no new name; a removed directory takes none either", () =>
    Effect.gen(function*() {
      const account = new MemoryAccount(64 * 1024 * KiB, undefined, SHARE)
      const root = yield* Tmpfs.make({ instance: 4, account })
      const changes = root.changes!
      const fs = changes.filesystem as Tmpfs
      const inode = yield* changes.create("f")
      const file = yield* inode.open({ read: true, write: true })
      yield* changes.unlink("f")
      assert.strictEqual(fs.heapUsed, NODE_HEAP)
      assert.deepStrictEqual(yield* Effect.flip(changes.link("g", inode)), new SyscallError({ errno: Errno.NOENT }))
      yield* file.close
      assert.strictEqual(fs.heapUsed, 0)
      // A view kept past both opens the file anew, charged again until that description closes.
      const again = yield* inode.open({ read: true, write: false })
      assert.strictEqual(fs.heapUsed, NODE_HEAP)
      yield* again.close
      assert.strictEqual(fs.heapUsed, 0)
      yield* changes.mkdir("d")
      const d = yield* root.lookup("d")
      yield* changes.create("e")
      yield* changes.rmdir("d")
      assert.deepStrictEqual(yield* Effect.flip(changes.rename("e", d.changes!, "e")), new SyscallError({ errno: Errno.NOENT }))
      yield* changes.unlink("e")
      assert.strictEqual(fs.heapUsed, 0)
      assert.strictEqual(account.used, 0)
    }))

  it.effect("a tmpfs detached from its account gives back its nodes' and names' charges with its data", () =>
    Effect.gen(function*() {
      const account = new MemoryAccount(64 * 1024 * KiB)
      const root = yield* Tmpfs.make({ instance: 5, account })
      const changes = root.changes!
      yield* changes.mkdir("d")
      const file = yield* (yield* changes.create("f")).open({ read: true, write: true })
      yield* file.write(new Uint8Array(100), 0n)
      assert.strictEqual(account.used, 100 + 3 * NODE_HEAP + nameHeap("d") + nameHeap("f"))
      ;(changes.filesystem as Tmpfs).detach()
      assert.strictEqual(account.used, 0)
      assert.strictEqual(account.heapUsed, 0)
    }))

  it("the default heap share is half of V8's heap limit", () => {
    assert.strictEqual(defaultHeapShare(), Math.floor(V8.getHeapStatistics().heap_size_limit / 2))
  })
})
