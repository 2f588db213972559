/**
 * procfs: what a guest reads at /proc comes from the sentry's process table — its own pid
 * through /proc/self, the processes of its own PID namespace only, never the host's.
 */
import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { Kernel, PidNamespace, type SyntheticMount, type ThreadGroup } from "../src/index.js"
import { procfs } from "../src/fs/procfs.js"
import { Exited, fixture, kernelLayer, rootOf, runGuest, startGuest, tempDir } from "./helpers.js"

const decoder = new TextDecoder()

const PROC: ReadonlyArray<SyntheticMount> = [{ path: "/proc", fs: "proc" }]

/** A root with a /proc directory (the mount point) and the guests under /bin. */
const procRoot = Effect.gen(function*() {
  const dir = yield* tempDir("runsc-procfs-")
  Fs.mkdirSync(Path.join(dir, "proc"))
  Fs.writeFileSync(Path.join(dir, "proc", "hidden"), "the host's /proc contents are hidden by the mount")
  return yield* rootOf(dir)
})

layer(kernelLayer, { excludeTestServices: true })("procfs", (it) => {
  it.scoped("/proc/self names the caller, and its files describe it", () =>
    Effect.gen(function*() {
      const root = yield* procRoot
      const r = yield* runGuest({
        bytes: fixture("cat"),
        argv: ["cat", "/proc/self/cmdline", "/proc/self/status"],
        root,
        syntheticMounts: PROC
      })
      assert.deepStrictEqual(r.status, Exited(0), r.stderr)
      const pid = r.tg.pid
      assert.include(r.stdout, "cat\0/proc/self/cmdline\0/proc/self/status\0")
      assert.include(r.stdout, `Name:\tcat\n`)
      assert.include(r.stdout, `Pid:\t${pid}\n`)
    }))

  it.scoped("ls /proc lists self and the namespace's live processes; the host's /proc/hidden is not there", () =>
    Effect.gen(function*() {
      const root = yield* procRoot
      const sleeper = yield* startGuest({ bytes: fixture("sleep"), argv: ["sleep", "60"], root, syntheticMounts: PROC })
      const r = yield* runGuest({ bytes: fixture("ls"), argv: ["ls", "/proc"], root, syntheticMounts: PROC })
      assert.deepStrictEqual(r.status, Exited(0), r.stderr)
      const lines = r.stdout.trim().split("\n")
      assert.include(lines, `d ${sleeper.tg.pid}`)
      assert.include(lines, `d ${r.tg.pid}`)
      assert.include(lines, "l self")
      assert.notInclude(r.stdout, "hidden")
    }))

  it.scoped("a process in a child PID namespace sees itself as pid 1 and no process outside", () =>
    Effect.gen(function*() {
      const kernel = yield* Kernel
      const root = yield* procRoot
      const outside = yield* startGuest({ bytes: fixture("sleep"), argv: ["sleep", "60"], root, syntheticMounts: PROC })
      const child = new PidNamespace<ThreadGroup>(kernel.rootPidNamespace)
      const r = yield* runGuest({ bytes: fixture("ls"), argv: ["ls", "/proc"], root, syntheticMounts: PROC, pidNamespace: child })
      assert.deepStrictEqual(r.status, Exited(0), r.stderr)
      assert.deepStrictEqual(r.stdout.trim().split("\n").filter((l) => !l.startsWith("f ")).sort(), ["d 1", "l mounts", "l self"])
      assert.notStrictEqual(outside.tg.pid, 1)
      yield* kernel.reap(r.tg)
    }))

  it.scoped("stat reports procfs directories, symlinks and files, and ENOENT for unknown names", () =>
    Effect.gen(function*() {
      const root = yield* procRoot
      const r = yield* runGuest({
        bytes: fixture("stat"),
        argv: ["stat", "/proc", "/proc/self", "/proc/self/stat", "/proc/nope"],
        root,
        syntheticMounts: PROC
      })
      assert.deepStrictEqual(r.status, Exited(0), r.stderr)
      assert.deepStrictEqual(r.stdout.trim().split("\n"), [
        "/proc dir 0",
        `/proc/self symlink ${String(r.tg.pid).length}`,
        "/proc/self/stat file 0",
        "/proc/nope error No such file or directory"
      ])
    }))

  it.scoped("every open of a process's environ and cmdline shares one copy of its bytes", () =>
    Effect.gen(function*() {
      const kernel = yield* Kernel
      const root = yield* procRoot
      const env = ["BIG=" + "x".repeat(100_000)]
      const sleeper = yield* startGuest({ bytes: fixture("sleep"), argv: ["sleep", "60"], env, root })
      const dir = yield* procfs(sleeper.tg, { bootTime: 0n, memory: kernel.memory }).lookup(String(sleeper.tg.pid))
      for (const name of ["environ", "cmdline"]) {
        const file = yield* dir.lookup(name)
        const reads = yield* Effect.forEach([1, 2, 3], () => Effect.flatMap(file.open({ read: true, write: false }), (d) => d.read(1 << 20)))
        assert.strictEqual(decoder.decode(reads[0]), name === "environ" ? `${env[0]}\0` : "sleep\u000060\u0000")
        assert.isTrue(reads.every((r) => r.buffer === reads[0]!.buffer), `${name}: one copy`)
      }
    }))

  it.scoped("without a proc mount, /proc is the root's own directory", () =>
    Effect.gen(function*() {
      const root = yield* procRoot
      const r = yield* runGuest({ bytes: fixture("ls"), argv: ["ls", "/proc"], root })
      assert.deepStrictEqual(r.status, Exited(0), r.stderr)
      assert.strictEqual(r.stdout, "f hidden\n")
    }))

  it.scoped("meminfo reports the sandbox's total, cpuinfo its CPUs, uptime the time since the kernel started, mounts the caller's table", () =>
    Effect.gen(function*() {
      const root = yield* procRoot
      const mounts: ReadonlyArray<SyntheticMount> = [...PROC, { path: "/dev", fs: "dev" }]
      const r = yield* runGuest({ bytes: fixture("cat"), argv: ["cat", "/proc/meminfo", "/proc/uptime", "/proc/mounts", "/proc/cpuinfo"], root, syntheticMounts: mounts })
      assert.deepStrictEqual(r.status, Exited(0), r.stderr)
      // Without a memory limit the sandbox has half the host's memory.
      const total = Math.floor(Math.floor(Os.totalmem() / 2) / 1024)
      assert.match(r.stdout, new RegExp(`^MemTotal:\\s+${total} kB$`, "m"))
      assert.match(r.stdout, /^MemAvailable:\s+\d+ kB$/m)
      const uptime = /^(\d+\.\d\d) 0\.00$/m.exec(r.stdout)
      assert.isNotNull(uptime)
      assert.isAtLeast(Number(uptime![1]), 0)
      assert.include(r.stdout, "none / 9p ro,relatime 0 0\nproc /proc proc rw,nosuid,nodev,noexec,relatime 0 0\ndevtmpfs /dev devtmpfs rw,nosuid,relatime 0 0\n")
      assert.strictEqual(r.stdout.match(/^processor\t: \d+$/gm)?.length, Os.cpus().length)
    }))
})
