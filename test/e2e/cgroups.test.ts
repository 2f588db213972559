/**
 * The sandbox process in the container's cgroup, as engines expect of a runc-shaped runtime:
 * `linux.cgroupsPath` (cgroupfs, and systemd's slice:prefix:name with --systemd-cgroup), its
 * limits from `linux.resources`, the directory removed by delete. Runs where this machine lets
 * a test manage cgroups (root, a writable cgroupfs); elsewhere it says which check failed.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { afterAll, beforeAll } from "vitest"
import { createContainer, describeResult, killSandboxesUnder, makeBundle, makeTempDir, removeDir, runsc, uniqueId } from "./helpers.js"

/** Why cgroups cannot be managed here, or undefined when they can. */
const unmanageable = (): string | undefined => {
  if (process.getuid?.() !== 0) return "not root"
  const mounts = Fs.readFileSync("/proc/self/mountinfo", "utf8").split("\n").filter((l) => / - cgroup2? /.test(l))
  if (mounts.length === 0) return "no cgroup hierarchy is mounted"
  const probe = Path.join(mounts[0]!.split(" ")[4]!, `runsc-probe-${process.pid}`)
  try {
    Fs.mkdirSync(probe)
    Fs.rmdirSync(probe)
  } catch (e) {
    return `cannot make a cgroup (${(e as Error).message})`
  }
  return undefined
}
const skipReason = unmanageable()
if (skipReason !== undefined) console.warn(`cgroups.test.ts: skipped, cgroups cannot be managed on this machine: ${skipReason}`)

/** Each hierarchy's mount point and kind, from /proc/self/mountinfo. */
const hierarchyMounts = () =>
  Fs.readFileSync("/proc/self/mountinfo", "utf8").split("\n").flatMap((line) => {
    const [before, after] = line.split(" - ")
    const fstype = after?.split(" ")[0]
    if (before === undefined || (fstype !== "cgroup" && fstype !== "cgroup2")) return []
    return [{ mount: before.split(" ")[4]!, v2: fstype === "cgroup2", options: after!.split(" ")[2] ?? "" }]
  })

/** The file of the hierarchy that has `controller`, for the cgroup at `path`. */
const controllerFile = (controller: string, path: string, v1File: string, v2File: string): string | undefined => {
  const v1 = hierarchyMounts().find((h) => !h.v2 && h.options.split(",").includes(controller))
  if (v1 !== undefined) return Path.join(v1.mount, path, v1File)
  const v2 = hierarchyMounts().find((h) => h.v2)
  return v2 === undefined ? undefined : Path.join(v2.mount, path, v2File)
}

/** Removes a cgroup tree a test made: directories only, deepest first (cgroupfs files cannot be unlinked). */
const removeCgroupTree = (dir: string) => {
  if (!Fs.existsSync(dir)) return
  for (const entry of Fs.readdirSync(dir, { withFileTypes: true })) if (entry.isDirectory()) removeCgroupTree(Path.join(dir, entry.name))
  Fs.rmdirSync(dir)
}

let work = ""
beforeAll(async () => {
  work = await makeTempDir("runsc-e2e-cgroups-")
})
afterAll(async () => {
  killSandboxesUnder(work)
  await removeDir(work)
})

const bundleWith = async (linux: Record<string, unknown>) => {
  const bundle = await makeBundle(["/bin/sleep", "600"], ["sleep"])
  const configPath = Path.join(bundle.dir, "config.json")
  const config = JSON.parse(Fs.readFileSync(configPath, "utf8"))
  Fs.writeFileSync(configPath, JSON.stringify({ ...config, linux }))
  return bundle
}

const sandboxPidOf = async (flags: ReadonlyArray<string>, id: string) => JSON.parse((await runsc([...flags, "state", id])).stdout).pid as number

/** The cgroup paths of a process, by hierarchy list (`cpu`, `memory`, ``, ...). */
const cgroupsOf = (pid: number) =>
  new Map(Fs.readFileSync(`/proc/${pid}/cgroup`, "utf8").trim().split("\n").map((l) => {
    const [, list, path] = l.split(/:(.*?):/)
    return [list!, path!] as const
  }))

describe.skipIf(skipReason !== undefined)("the sandbox in the container's cgroup", () => {
  it("cgroupfs path: the sandbox process (every thread) is in it in every hierarchy, with the spec's CPU and pids limits and its memory limit plus the sandbox's allowance; delete removes it", async () => {
    const flags = ["--root", await Fs.promises.mkdtemp(Path.join(work, "root-"))]
    const id = uniqueId("cg")
    const path = `/runsc-test/${id}`
    const bundle = await bundleWith({
      cgroupsPath: path,
      resources: { memory: { limit: 64 * 1024 * 1024 }, cpu: { quota: 50000, period: 100000, shares: 512 }, pids: { limit: 100 } }
    })
    try {
      const created = await createContainer(flags, bundle.dir, id, work)
      assert.strictEqual(created.code, 0, created.output())
      const pid = await sandboxPidOf(flags, id)
      const cgroups = cgroupsOf(pid)
      for (const [list, at] of cgroups) assert.strictEqual(at, path, `hierarchy ${list || "(v2)"}: ${at}`)
      // Threads started after the move (a guest's worker) are born in it too.
      assert.strictEqual((await runsc([...flags, "start", id])).code, 0)
      for (const task of Fs.readdirSync(`/proc/${pid}/task`)) {
        const memory = Fs.readFileSync(`/proc/${pid}/task/${task}/cgroup`, "utf8")
        assert.include(memory, `:${path}\n`, `thread ${task}`)
      }
      const read = (controller: string, v1: string, v2: string) => {
        const file = controllerFile(controller, path, v1, v2)
        return file === undefined || !Fs.existsSync(file) ? undefined : Fs.readFileSync(file, "utf8").trim()
      }
      const quota = read("cpu", "cpu.cfs_quota_us", "cpu.max")
      if (quota !== undefined) assert.match(quota, /^50000( 100000)?$/)
      const memory = read("memory", "memory.limit_in_bytes", "memory.max")
      if (memory !== undefined) assert.strictEqual(Number(memory), (64 + 256) * 1024 * 1024)
      // The sandbox was in it from its first instruction: the Node runtime's memory is charged there.
      const usage = read("memory", "memory.usage_in_bytes", "memory.current")
      if (usage !== undefined) assert.isAbove(Number(usage), 20 * 1024 * 1024, "the sandbox's memory is charged to its cgroup")
      const pids = read("pids", "pids.max", "pids.max")
      if (pids !== undefined) assert.strictEqual(pids, "164")
      assert.isTrue([quota, memory, pids].some((v) => v !== undefined), "at least one limit is visible on this host")
      const dirs = hierarchyMounts().map((h) => Path.join(h.mount, path))
      assert.isTrue(dirs.every((d) => Fs.existsSync(d)))
      // A record edited to name another directory: delete removes only cgroups.
      const bystander = await Fs.promises.mkdtemp(Path.join(work, "not-a-cgroup-"))
      const stateFile = Path.join(flags[1]!, `${id}.state.json`)
      const record = JSON.parse(Fs.readFileSync(stateFile, "utf8"))
      Fs.writeFileSync(stateFile, JSON.stringify({ ...record, cgroups: [...record.cgroups, bystander, `${dirs[0]}/../../${Path.relative("/", bystander)}`] }))
      const deleted = await runsc([...flags, "delete", "--force", id])
      assert.strictEqual(deleted.code, 0, describeResult(deleted))
      assert.deepStrictEqual(dirs.filter((d) => Fs.existsSync(d)), [], "delete removes the cgroup it made")
      assert.isTrue(Fs.existsSync(bystander), "and nothing else")
    } finally {
      await runsc([...flags, "delete", "--force", id])
      for (const h of hierarchyMounts()) removeCgroupTree(Path.join(h.mount, "runsc-test"))
      await removeDir(bundle.dir)
    }
  })

  it("--systemd-cgroup: slice:prefix:name names <slice path>/<prefix>-<name>.scope; a path of another shape, or one leaving the hierarchy, is refused before anything starts", async () => {
    const flags = ["--systemd-cgroup", "--root", await Fs.promises.mkdtemp(Path.join(work, "root-"))]
    const id = uniqueId("cs")
    const bundle = await bundleWith({ cgroupsPath: `runsctest-pod.slice:runsc:${id}` })
    const bad = await bundleWith({ cgroupsPath: "/not/systemd" })
    try {
      const created = await createContainer(flags, bundle.dir, id, work)
      assert.strictEqual(created.code, 0, created.output())
      const expected = `/runsctest.slice/runsctest-pod.slice/runsc-${id}.scope`
      for (const [list, at] of cgroupsOf(await sandboxPidOf(flags, id))) assert.strictEqual(at, expected, `hierarchy ${list || "(v2)"}`)
      assert.strictEqual((await runsc([...flags, "delete", "--force", id])).code, 0)
      const escaping = await bundleWith({ cgroupsPath: "/../../../tmp/runsc-escape" })
      const outside = await createContainer(flags.slice(1), escaping.dir, uniqueId("ce"), work)
      await removeDir(escaping.dir)
      assert.strictEqual(outside.code, 128)
      assert.match(outside.output(), /leaves the cgroup hierarchy/)
      assert.isFalse(Fs.existsSync("/tmp/runsc-escape"))
      const refused = await createContainer(flags, bad.dir, uniqueId("cs"), work)
      assert.strictEqual(refused.code, 128)
      assert.match(refused.output(), /slice:prefix:name/)
      assert.deepStrictEqual((await runsc([...flags, "list", "-q"])).stdout, "", "the refused create left nothing")
    } finally {
      await runsc([...flags, "delete", "--force", id])
      for (const h of hierarchyMounts()) removeCgroupTree(Path.join(h.mount, "runsctest.slice"))
      await removeDir(bundle.dir)
      await removeDir(bad.dir)
    }
  })
})
