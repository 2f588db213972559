/**
 * Sync-first filesystems: what a file syscall asks of a file on an rw bind mount (the gofer) or
 * in the overlay root is done when asked and answered settled, so the sentry answers the guest
 * with no fiber step; and the overlay's change lock still lets one change run at a time when a
 * change must wait.
 */
import { assert, describe, it } from "@effect/vitest"
import { Whence } from "@runsc/abi"
import { Deferred, Effect, Exit, Fiber } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { ChangeLock } from "../src/fs/changeLock.js"
import { type FileDescription, type Inode, statOf } from "../src/fs/inode.js"
import { HostFdBudget, hostMount, hostRoot, overlay } from "../src/index.js"
import { isSettled } from "../src/settled.js"
import { tempDir } from "./helpers.js"

/** `effect`'s value, which must be settled (an Exit) when it is returned. */
const now = <A, E>(what: string, effect: Effect.Effect<A, E>): A => {
  assert.isTrue(isSettled(effect), `${what} answered with an effect to run, not settled`)
  const exit = effect as Exit.Exit<A, E>
  if (!Exit.isSuccess(exit)) throw new Error(`${what} failed: ${String(exit.cause)}`)
  return exit.value
}

/** The database-like traffic of bench row 17 on `dir`: create, write, pread, pwrite, seek, fstat, close, unlink. */
const pageTraffic = (dir: Inode) => {
  const changes = dir.changes!
  const file = now("create", changes.create("db"))
  const d: FileDescription = now("open", file.open({ read: true, write: true }))
  const page = new Uint8Array(4096).fill(7)
  assert.strictEqual(now("write", d.write(page)), 4096)
  assert.strictEqual(now("pwrite", d.write(page, 4096n)), 4096)
  const into = new Uint8Array(4096)
  assert.strictEqual(now("pread", d.readInto!(into, 4096n)), 4096)
  assert.strictEqual(into[4095], 7)
  assert.strictEqual(now("seek", d.seek(0n, Whence.END)), 8192n)
  assert.strictEqual(now("fstat", statOf(d)).size, 8192n)
  assert.strictEqual(now("stat", statOf(now("lookup", dir.lookup("db")))).size, 8192n)
  now("close", d.closeNow?.() ?? d.close)
  now("unlink", changes.unlink("db"))
}

describe("sync-first filesystems", () => {
  it.scoped("a file on an rw bind mount is created, written, read, sought, stated and removed with settled answers", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      const root = yield* hostMount(dir, { writable: true, fds: new HostFdBudget(64) })
      pageTraffic(root)
      assert.isFalse(Fs.existsSync(Path.join(dir, "db")))
    }))

  it.scoped("so is a file in the overlay root", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      Fs.writeFileSync(Path.join(dir, "lower"), "from the host")
      const root = yield* overlay(yield* hostRoot(dir, { fds: new HostFdBudget(64) }), { instance: 7 })
      pageTraffic(root)
      // A lower file opened for writing is copied up under the lock, and still answers settled.
      const lower = now("lookup", root.lookup("lower"))
      const d = now("open for write", lower.open({ read: true, write: true }))
      const into = new Uint8Array(64)
      assert.strictEqual(new TextDecoder().decode(into.subarray(0, now("read", d.readInto!(into, 0n)))), "from the host")
      yield* d.close
      assert.strictEqual(Fs.readFileSync(Path.join(dir, "lower"), "utf8"), "from the host")
    }))

  it.live("the change lock lets one change run at a time when a change must wait", () =>
    Effect.gen(function*() {
      const lock = new ChangeLock()
      const log: Array<string> = []
      const release = yield* Deferred.make<void>()
      // A change that starts at once and then waits holds the lock until it ends.
      const first = yield* Effect.fork(lock.run(() => {
        log.push("first starts")
        return Effect.zipRight(Deferred.await(release), Effect.sync(() => log.push("first ends")))
      }))
      yield* Effect.yieldNow()
      const second = yield* Effect.fork(lock.run(() => {
        log.push("second")
        return Effect.void
      }))
      yield* Effect.sleep("20 millis")
      assert.deepStrictEqual(log, ["first starts"])
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(first)
      yield* Fiber.join(second)
      assert.deepStrictEqual(log, ["first starts", "first ends", "second"])
      // Free again: a change that does not wait answers settled.
      assert.isTrue(isSettled(lock.run(() => Effect.succeed(1))))
    }))

  it.live("a change waiting for the lock can be interrupted, and the lock stays usable", () =>
    Effect.gen(function*() {
      const lock = new ChangeLock()
      const release = yield* Deferred.make<void>()
      const first = yield* Effect.fork(lock.run(() => Deferred.await(release)))
      yield* Effect.yieldNow()
      const waiting = yield* Effect.fork(lock.run(() => Effect.succeed("never")))
      yield* Effect.sleep("10 millis")
      yield* Fiber.interrupt(waiting)
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(first)
      assert.strictEqual(Exit.isSuccess(lock.run(() => Effect.succeed("free")) as Exit.Exit<string>), true)
    }))
})
