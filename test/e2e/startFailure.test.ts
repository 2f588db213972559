/**
 * Sub-containers whose start fails, through the real binary: each is stopped (as runc reports a
 * container whose start failed), `delete` needs no --force, and the pod's sandbox holds no host
 * descriptor of their root or bind mount once the start has failed.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { afterAll, beforeAll } from "vitest"
import { cliFailureLine, createContainer, describeResult, killSandboxesUnder, makeBundle, makeTempDir, removeDir, runsc, uniqueId } from "./helpers.js"

let work = ""

beforeAll(async () => {
  work = await makeTempDir("runsc-e2e-startfail-")
})

afterAll(async () => {
  killSandboxesUnder(work)
  await removeDir(work)
})

const stateOf = async (flags: ReadonlyArray<string>, id: string) => {
  const r = await runsc([...flags, "state", id])
  assert.strictEqual(r.code, 0, describeResult(r))
  return JSON.parse(r.stdout) as { status: string; pid: number }
}

/** The host descriptors the process `pid` holds on files at or below one of `dirs`. */
const heldUnder = (pid: number, dirs: ReadonlyArray<string>) =>
  Fs.readdirSync(`/proc/${pid}/fd`).flatMap((fd) => {
    try {
      const target = Fs.readlinkSync(`/proc/${pid}/fd/${fd}`)
      return dirs.some((dir) => target === dir || target.startsWith(`${dir}/`)) ? [target] : []
    } catch {
      return [] // closed meanwhile
    }
  })

describe("sub-containers whose start fails", () => {
  it("10 failed starts: each is stopped and deleted without --force; the pod's sandbox holds nothing of their trees", async () => {
    const root = await Fs.promises.mkdtemp(Path.join(work, "root-"))
    const flags = ["--root", root, "--unconfined"]
    const podBundle = await makeBundle(["/bin/sleep", "600"], ["sleep"])
    // Its program is missing from its rootfs: the start fails once the container's root (and
    // its bind mount) is open, when the program is looked for.
    const broken = await makeBundle(["/bin/not-there"], [])
    const bound = await makeTempDir("runsc-e2e-bound-")
    try {
      const pod = uniqueId("pod")
      assert.strictEqual((await createContainer(flags, podBundle.dir, pod, work)).code, 0)
      assert.strictEqual((await runsc([...flags, "start", pod])).code, 0)
      const configPath = Path.join(broken.dir, "config.json")
      const config = JSON.parse(Fs.readFileSync(configPath, "utf8"))
      config.annotations = { "io.kubernetes.cri.container-type": "container", "io.kubernetes.cri.sandbox-id": pod }
      config.mounts = [{ destination: "/data", type: "bind", source: bound, options: ["rbind", "ro"] }]
      Fs.writeFileSync(configPath, JSON.stringify(config))
      const sandbox = (await stateOf(flags, pod)).pid
      const theirs = [broken.dir, bound]
      for (let i = 0; i < 10; i++) {
        const app = `app-${i}`
        const created = await createContainer(flags, broken.dir, app, work)
        assert.strictEqual(created.code, 0, created.output())
        assert.match(cliFailureLine(await runsc([...flags, "start", app])), /not-there/)
        assert.strictEqual((await stateOf(flags, app)).status, "stopped")
        // Not deleted yet: what the failed start took is given back all the same.
        assert.deepStrictEqual(heldUnder(sandbox, theirs), [], `after start ${i}`)
      }
      for (let i = 0; i < 10; i++) {
        const deleted = await runsc([...flags, "delete", `app-${i}`])
        assert.strictEqual(deleted.code, 0, describeResult(deleted))
      }
      assert.deepStrictEqual(heldUnder(sandbox, theirs), [])
      assert.strictEqual((await stateOf(flags, pod)).status, "running")
      assert.strictEqual((await runsc([...flags, "delete", "--force", pod])).code, 0)
    } finally {
      await removeDir(podBundle.dir)
      await removeDir(broken.dir)
      await removeDir(bound)
    }
  }, 300_000)
})
