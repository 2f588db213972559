/**
 * What the fast path (src/fastPath.ts) must agree on with the rest of runsc without sharing its
 * code (it loads no Effect): the container id rule. Its behaviour against the full CLI is
 * test/e2e/fastPath.test.ts's.
 */
import { assert, describe, it } from "@effect/vitest"
import { isValidContainerId } from "@runsc/spec"
import { FastCheck } from "effect"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { fastPath, isPlainContainerId } from "../src/fastPath.js"
import { processStart } from "../src/hostProcess.js"

describe("fast path", () => {
  it.prop(
    "its container id rule is @runsc/spec's",
    [FastCheck.string({ unit: FastCheck.constantFrom("a", "Z", "0", "_", "-", "+", ".", "/", " ", "é", ":"), maxLength: 300 })],
    ([id]) => {
      assert.strictEqual(isPlainContainerId(id), isValidContainerId(id))
    }
  )

  it("also at the length limit", () => {
    for (const n of [254, 255, 256]) assert.strictEqual(isPlainContainerId("a".repeat(n)), isValidContainerId("a".repeat(n)))
  })

  it("declines, holding nothing, when the sandbox answers with an endless line", async () => {
    const root = Fs.mkdtempSync(Path.join(Os.tmpdir(), "runsc-fast-"))
    const socket = Path.join(root, "c.sock")
    // A "sandbox" (this live process stands for its pid) that answers every call with junk and no newline.
    const server = Net.createServer((conn) => {
      const junk = Buffer.alloc(64 * 1024, 120)
      const pour = () => {
        while (conn.write(junk)) {
          if (conn.destroyed) return
        }
        conn.once("drain", pour)
      }
      conn.on("error", () => {})
      conn.once("data", pour)
    })
    await new Promise<void>((resolve) => server.listen(socket, resolve))
    try {
      Fs.writeFileSync(Path.join(root, "c.state.json"), JSON.stringify({
        id: "c",
        bundle: root,
        sandboxPid: process.pid,
        sandboxStart: processStart(process.pid),
        socket,
        phase: "created",
        annotations: {}
      }))
      const before = process.memoryUsage().rss
      const result = await fastPath(["node", "runsc", "--root", root, "state", "c"])
      assert.strictEqual(result._tag, "Declined")
      assert.isBelow(process.memoryUsage().rss - before, 64 * 1024 * 1024)
    } finally {
      server.close()
      Fs.rmSync(root, { recursive: true, force: true })
    }
  })
})
