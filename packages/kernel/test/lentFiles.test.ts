/**
 * Host files lent to the guest's worker (platform/lendFastPaths.ts, lentFiles.ts): on a
 * writable host tree, reads, writes, seeks and fstat of an fd that alone refers to its file are
 * served in the worker, and answer exactly what the sentry answers for the same calls (the
 * same guest under strace, where nothing is lent); the offset passes to the sentry when a dup
 * shares the file.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { Dentry, HostFdBudget, hostMount, Kernel } from "../src/index.js"
import { Exited, fixture, runGuest, tempDir } from "./helpers.js"

const expected = [
  "write 11 offset 11",
  "read 3 llo offset 5",
  "pwrite 2 offset 5",
  "pread 5 XYllo offset 5",
  "fstat size 11 same-file 1",
  "seek-end 11",
  "write-end 1 size 12 offset 12",
  "seek-negative -1 EINVAL offset 12",
  "seek-past-end 20",
  "write-past-end 1 size 21 offset 21",
  "writev 4 offset 4",
  "readv 5 ab cdo offset 5",
  "pread-bad-buffer -1 Bad address",
  "negative-offsets 1 1",
  "seek-past-largest 1 1 offset 5",
  "dup-offset 5 5",
  "twin-write 2 offset 7 7",
  "after-close write 1 offset 8",
  // Bytes 12..19 are the hole the write past the end left: NULs end the C string there.
  "contents 21 abcdoEFGrld!",
  "drop-write 1 1 1",
  "append 1 offset 22",
  "write-read-only -1 EBADF",
  "read-write-only -1 EBADF",
  ""
]

/** lent_files on a fresh writable host root; its stdout, the file it left and the calls the sentry served. */
const run = Effect.gen(function*() {
  const dir = yield* tempDir()
  const fds = yield* HostFdBudget.ofProcess
  const root = Dentry.root(yield* hostMount(dir, { writable: true, fds }))
  const r = yield* runGuest({ bytes: fixture("lent_files"), argv: ["lent_files"], root })
  assert.deepStrictEqual(r.status, Exited(0), r.stdout + r.stderr)
  return { stdout: r.stdout, file: Fs.readFileSync(Path.join(dir, "f")), served: r.tg.inKernel.syscalls }
}).pipe(Effect.scoped)

const straced = Kernel.layer({ warmWorkers: 1, strace: { logSize: 16, emit: () => {} } })

describe("files lent to the worker", () => {
  it.live("answer as the sentry does, offsets passing between them, and spare the round trips", () =>
    Effect.gen(function*() {
      const lent = yield* run.pipe(Effect.provide(Kernel.layer({ warmWorkers: 1 })))
      const sentry = yield* run.pipe(Effect.provide(Layer.fresh(straced)))
      assert.deepStrictEqual(lent.stdout.split("\n"), expected)
      assert.deepStrictEqual(sentry.stdout.split("\n"), expected, "the sentry's own answers")
      assert.deepStrictEqual(lent.file, sentry.file)
      assert.strictEqual(lent.file.toString("latin1"), "abcdoEFGrld!\0\0\0\0\0\0\0\0ZH")
      // The sentry served the opens, closes, dups, fcntl and path stats, not the file traffic.
      assert.isBelow(lent.served, sentry.served - 20, `sentry served ${lent.served} calls with loans, ${sentry.served} without`)
    }))
})
