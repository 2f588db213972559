/**
 * readRegularFile: the text of a regular file; anything else in its place (a FIFO, a device, a
 * directory, a symlink where links are not followed) refused at once, never waited on.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { readRegularFile } from "../src/index.js"

const tempDir = Effect.acquireRelease(
  Effect.promise(() => fs.mkdtemp(path.join(os.tmpdir(), "runsc-regular-"))),
  (dir) => Effect.promise(() => fs.rm(dir, { recursive: true, force: true }))
)

describe("readRegularFile", () => {
  it.scoped("reads a regular file, and through a symlink only when asked to follow it", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const file = path.join(dir, "file")
      const link = path.join(dir, "link")
      yield* Effect.promise(async () => {
        await fs.writeFile(file, "text ✓\n")
        await fs.symlink(file, link)
      })
      for (const followSymlinks of [true, false]) {
        assert.strictEqual(yield* readRegularFile(file, { followSymlinks }), "text ✓\n")
      }
      assert.strictEqual(yield* readRegularFile(link, { followSymlinks: true }), "text ✓\n")
      const unfollowed = yield* Effect.flip(readRegularFile(link, { followSymlinks: false }))
      assert.strictEqual(unfollowed.code, "ELOOP")
      const missing = yield* Effect.flip(readRegularFile(path.join(dir, "missing"), { followSymlinks: true }))
      assert.strictEqual(missing.code, "ENOENT")
    }))

  it.scoped("refuses a FIFO, a device and a directory at once (a FIFO with no writer is never waited on)", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const fifo = path.join(dir, "fifo")
      execFileSync("mkfifo", [fifo])
      for (const [what, target] of [["fifo", fifo], ["device", "/dev/zero"], ["directory", dir]] as const) {
        // The time bound only says "did not hang".
        const refused = yield* Effect.flip(readRegularFile(target, { followSymlinks: true }).pipe(Effect.timeout("10 seconds")))
        assert.strictEqual(refused._tag, "RegularFileUnreadable", what)
        if (refused._tag === "RegularFileUnreadable") {
          assert.strictEqual(refused.code, undefined, what)
          assert.include(refused.message, "not a regular file", what)
        }
      }
    }))
})
