/**
 * Host signals end to end: a signal sent to the runsc process is forwarded to the guest, which
 * dies of it, and runsc exits normally with 128+signal. --panic-signal makes one signal crash
 * the sandbox with a state dump (exit 128).
 */
import { assert, describe, it } from "@effect/vitest"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { afterAll, beforeAll } from "vitest"
import { cFixture, describeResult, installFixtures, lines, makeBundle, makeTempDir, removeDir, startRunsc, uniqueId } from "./helpers.js"

describe.concurrent("host signals", () => {
  let root = ""
  let bundle: { readonly dir: string; readonly rootfs: string } | undefined

  beforeAll(async () => {
    root = await makeTempDir()
    await installFixtures(root, ["sleep", "spin"])
    bundle = await makeBundle(["/bin/sleep", "60"], ["sleep"])
  })

  afterAll(async () => {
    await removeDir(root)
    if (bundle !== undefined) await removeDir(bundle.dir)
  })

  /** Starts runsc, waits for the guest's first line, sends `signal`, and returns the result. */
  const signalled = async (args: ReadonlyArray<string>, ready: string, signal: NodeJS.Signals) => {
    const proc = await startRunsc(args, { cwd: root, timeoutMs: 25_000 })
    try {
      await proc.waitForStdout(ready)
    } catch (e) {
      proc.child.kill("SIGKILL")
      throw e
    }
    const sentAt = Date.now()
    assert.isTrue(proc.child.kill(signal), "the signal was sent")
    const result = await proc.result
    return { result, elapsed: Date.now() - sentAt }
  }

  const cases: ReadonlyArray<{ name: string; args: () => ReadonlyArray<string>; ready: string; signal: NodeJS.Signals; code: number }> = [
    { name: "do sleep 60 + SIGTERM", args: () => ["do", "--root-dir", root, cFixture("sleep"), "60"], ready: "sleeping\n", signal: "SIGTERM", code: 143 },
    { name: "do spin + SIGTERM", args: () => ["do", "--root-dir", root, cFixture("spin")], ready: "spinning\n", signal: "SIGTERM", code: 143 },
    { name: "run (bundle: /bin/sleep 60) + SIGTERM", args: () => ["run", "--bundle", bundle!.dir, uniqueId("e2e-sig")], ready: "sleeping\n", signal: "SIGTERM", code: 143 },
    { name: "do sleep 60 + SIGINT", args: () => ["do", "--root-dir", root, cFixture("sleep"), "60"], ready: "sleeping\n", signal: "SIGINT", code: 130 },
    { name: "do spin + SIGINT", args: () => ["do", "--root-dir", root, "/bin/spin"], ready: "spinning\n", signal: "SIGINT", code: 130 }
  ]

  for (const c of cases) {
    it(`${c.name} → exit ${c.code}`, async () => {
      const { elapsed, result } = await signalled(c.args(), c.ready, c.signal)
      assert.isFalse(result.timedOut, describeResult(result))
      assert.strictEqual(result.signal, null, `runsc itself must not die of the signal\n${describeResult(result)}`)
      assert.strictEqual(result.code, c.code, describeResult(result))
      assert.strictEqual(result.stdout, c.ready, "the guest never got to print more")
      assert.strictEqual(result.stderr, "")
      assert.isBelow(elapsed, 10_000, "runsc should exit promptly after the signal")
    })
  }

  it("with process.terminal, a host SIGINT (^C) reaches the terminal's foreground job, not the shell", async () => {
    const shell = await makeBundle(["/bin/tsh"], ["tsh", "sleep"])
    try {
      const configPath = Path.join(shell.dir, "config.json")
      const config = JSON.parse(await Fs.promises.readFile(configPath, "utf8"))
      config.process.terminal = true
      await Fs.promises.writeFile(configPath, JSON.stringify(config))
      const proc = await startRunsc(["run", "--bundle", shell.dir, uniqueId("e2e-tty")], {
        cwd: root,
        timeoutMs: 25_000,
        input: "sleep 600\nsleep 601\n"
      })
      await proc.waitForStdout("sleeping\n")
      assert.isTrue(proc.child.kill("SIGINT"))
      // The job died of it; the shell lived on to start the next one.
      await proc.waitForStdout("sleeping\n[1] Killed by signal 2 sleep 600\nsleeping\n")
      assert.isTrue(proc.child.kill("SIGTERM"))
      const result = await proc.result
      assert.strictEqual(result.code, 143, describeResult(result))
    } finally {
      await removeDir(shell.dir)
    }
  })

  it("--panic-signal USR2 + SIGUSR2 → exit 128 with a line about the panic", async () => {
    const { result } = await signalled(["--panic-signal", "USR2", "do", "--root-dir", root, cFixture("sleep"), "60"], "sleeping\n", "SIGUSR2")
    assert.isFalse(result.timedOut, describeResult(result))
    assert.strictEqual(result.signal, null, describeResult(result))
    assert.strictEqual(result.code, 128, describeResult(result))
    const errLines = lines(result.stderr)
    assert.isTrue(errLines.some((l) => /panic/i.test(l)), describeResult(result))
    assert.isTrue(errLines.some((l) => l.startsWith("runsc: ") && /panic/i.test(l)), describeResult(result))
  })

  it("--panic-signal USR2: SIGTERM still goes to the guest (143)", async () => {
    const { result } = await signalled(["--panic-signal", "USR2", "do", "--root-dir", root, cFixture("sleep"), "60"], "sleeping\n", "SIGTERM")
    assert.strictEqual(result.signal, null, describeResult(result))
    assert.strictEqual(result.code, 143, describeResult(result))
    assert.notMatch(result.stderr, /panic/i)
  })
})
