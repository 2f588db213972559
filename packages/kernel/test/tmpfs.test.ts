/**
 * tmpfs's byte budget under random programs of creates, writes, truncates, links, unlinks,
 * renames and descriptions held open: what it counts is always the size of the files that have
 * a name or an open description (an unlinked file open somewhere keeps its data, as on Linux),
 * never above its limit, and a refused change (ENOSPC) leaves the file as it was.
 */
import { assert, it } from "@effect/vitest"
import { FileType } from "@runsc/abi"
import { Effect, Either, FastCheck } from "effect"
import { type FileDescription, type Inode, MemoryAccount, Tmpfs } from "../src/index.js"

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
    const account = new MemoryAccount(LIMIT * 2)
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
      for (const entry of yield* root.readdir) {
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
      assert.strictEqual(account.used, fs.bytesUsed, "the sandbox's account counts the same bytes")
    }
    // Once nothing holds them, the data of unlinked files is gone and counted no more.
    for (const file of held.splice(0)) yield* file.close
    for (const name of names) yield* Effect.either(changes.unlink(name))
    assert.strictEqual(fs.bytesUsed, 0)
    assert.strictEqual(account.used, 0)
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
