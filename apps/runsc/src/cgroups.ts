/**
 * The sandbox process in the container's cgroup (`linux.cgroupsPath`), as runc places a
 * container's init and gVisor's runsc its sandbox: so that what an engine reads there (podman
 * stats, ctr task metrics) and the limits it sets are the sandbox's.
 *
 * Every hierarchy mounted on the host gets the cgroup: cgroup v2 (unified), each v1 hierarchy
 * (one per controller or group of controllers, and named ones such as name=systemd), or both
 * (hybrid). The path is cgroupfs's (absolute: from each hierarchy's root; relative: below
 * this process's own cgroup there) or, with `--systemd-cgroup`, systemd's `slice:prefix:name`,
 * which names `<slice path>/<prefix>-<name>.scope`. That directory is made directly in
 * cgroupfs: no systemd unit is registered for it (runsc does not speak D-Bus).
 *
 * Limits, from `linux.resources`: CPU as the spec says (quota/period, shares); memory and pids
 * with an allowance for the sandbox process's own use added (SANDBOX_MEMORY, SANDBOX_TASKS):
 * the Node runtime hosting the sentry is charged to the cgroup, and every guest process is one
 * of its threads. Within that, the sentry holds guests to the spec's memory limit itself (its
 * memory account), so a guest meets a failing allocation, not the host's OOM killer; the cgroup
 * is the host's bound on the whole sandbox.
 *
 * These are writes of kernel files that complete at once: plain synchronous calls, wrapped as
 * effects at the edges.
 */
import type { Spec } from "@runsc/spec"
import { Data, Effect } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"

/** What the sandbox process itself takes beyond its guests' memory (the Node runtime, the sentry). */
export const SANDBOX_MEMORY = 256 * 1024 * 1024
/** Threads of the sandbox process beside its guests' (Node's own pools, the sentry, the gofer). */
export const SANDBOX_TASKS = 64

export class CgroupFailed extends Data.TaggedError("CgroupFailed")<{ readonly path: string; readonly reason: string }> {
  override get message(): string {
    return `cgroup ${this.path}: ${this.reason}`
  }
}

/** One mounted hierarchy: v2, or v1 with its controllers (`name=systemd` for a named one). */
interface Hierarchy {
  readonly mount: string
  readonly version: 1 | 2
  readonly controllers: ReadonlyArray<string>
  /** This process's cgroup in it (from /proc/self/cgroup), for relative paths. */
  readonly own: string
}

/** The host's cgroup hierarchies, from /proc/self/mountinfo and /proc/self/cgroup. */
export const hierarchies = (): ReadonlyArray<Hierarchy> => {
  const own = new Map<string, string>()
  for (const line of Fs.readFileSync("/proc/self/cgroup", "utf8").split("\n")) {
    const [, list, path] = line.split(/:(.*?):/)
    if (path !== undefined) own.set(list ?? "", path)
  }
  const found: Array<Hierarchy> = []
  for (const line of Fs.readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    // `id parent major:minor root mountpoint options [optional...] - fstype source superoptions`
    const [before, after] = line.split(" - ")
    if (before === undefined || after === undefined) continue
    const [fstype, , superOptions = ""] = after.split(" ")
    const fields = before.split(" ")
    const root = fields[3]!
    const mount = fields[4]!.replace(/\\040/g, " ")
    // This process's cgroup as a path in the mounted tree (which may show a sub-tree only).
    const below = (path: string) => (path.startsWith(root) ? path.slice(root.length) || "/" : "/")
    if (fstype === "cgroup2") found.push({ mount, version: 2, controllers: [], own: below(own.get("") ?? "/") })
    if (fstype === "cgroup") {
      const controllers = superOptions.split(",").filter((o) =>
        !["rw", "ro", "relatime", "noexec", "nosuid", "nodev", "clone_children", "noprefix"].includes(o) && !o.startsWith("release_agent=")
      )
      const key = [...own.keys()].find((k) => k !== "" && k.split(",").every((c) => controllers.includes(c)))
      found.push({ mount, version: 1, controllers, own: below(key === undefined ? "/" : own.get(key)!) })
    }
  }
  return found
}

/** `machine-app.slice` → `machine.slice/machine-app.slice`; `-.slice` → the root. */
const expandSlice = (slice: string): string => {
  if (slice === "-.slice") return ""
  const name = slice.slice(0, -".slice".length)
  const parts = name.split("-")
  return parts.map((_, i) => `${parts.slice(0, i + 1).join("-")}.slice`).join("/")
}

/**
 * The cgroup a container's spec names, relative to a hierarchy's root when it starts with "/"
 * (else to this process's cgroup); undefined when the spec names none and runsc picks none.
 */
export const cgroupPathOf = (spec: Spec, id: string, systemd: boolean): Effect.Effect<string | undefined, CgroupFailed> => {
  const given = spec.linux?.cgroupsPath
  if (!systemd) return Effect.succeed(given === undefined || given === "" ? undefined : given)
  // runc's default for the systemd driver: system.slice, runc-<id>.scope.
  const parts = given === undefined || given === "" ? ["system.slice", "runc", id] : given.split(":")
  const [slice, prefix, name] = parts
  if (parts.length !== 3 || !slice!.endsWith(".slice") || slice!.includes("/") || name === "" || name!.includes("/") || prefix!.includes("/")) {
    return Effect.fail(new CgroupFailed({ path: given ?? "", reason: "with --systemd-cgroup, linux.cgroupsPath must be slice:prefix:name (a *.slice, no /)" }))
  }
  return Effect.succeed(`/${expandSlice(slice!)}/${prefix === "" ? name : `${prefix}-${name}`}.scope`.replace(/\/+/g, "/"))
}

const write = (dir: string, file: string, value: string) => {
  try {
    Fs.writeFileSync(Path.join(dir, file), value)
  } catch (e) {
    throw new CgroupFailed({ path: Path.join(dir, file), reason: `cannot write ${JSON.stringify(value)}: ${(e as Error).message}` })
  }
}

/** runc's mapping of cgroup v1 shares (2..262144) to a v2 weight (1..10000). */
const weightOf = (shares: number) => Math.round(1 + ((Math.min(Math.max(shares, 2), 262144) - 2) * 9999) / 262142)

type Resources = NonNullable<NonNullable<Spec["linux"]>["resources"]>

/** The controllers the spec's limits need. */
const controllersFor = ({ cpu, memory, pids }: Resources): ReadonlyArray<string> => [
  ...(cpu !== undefined && ((cpu.quota ?? 0) > 0 || cpu.period !== undefined || (cpu.shares ?? 0) > 0) ? ["cpu"] : []),
  ...(memory?.limit !== undefined ? ["memory"] : []),
  ...(pids?.limit !== undefined && pids.limit > 0 ? ["pids"] : [])
]

/** The limits of `resources` that `controller` carries, as files of a hierarchy of `version`. */
const limitFiles = (version: 1 | 2, controller: string, { cpu, memory, pids }: Resources): ReadonlyArray<readonly [string, string]> => {
  const quota = cpu?.quota !== undefined && cpu.quota > 0 ? cpu.quota : undefined
  const shares = cpu?.shares !== undefined && cpu.shares > 0 ? cpu.shares : undefined
  switch (controller) {
    case "cpu":
      return version === 2
        ? [
          ...(quota !== undefined || cpu?.period !== undefined ? [["cpu.max", `${quota ?? "max"} ${cpu?.period ?? 100000}`] as const] : []),
          ...(shares !== undefined ? [["cpu.weight", `${weightOf(shares)}`] as const] : [])
        ]
        : [
          ...(cpu?.period !== undefined ? [["cpu.cfs_period_us", `${cpu.period}`] as const] : []),
          ...(quota !== undefined ? [["cpu.cfs_quota_us", `${quota}`] as const] : []),
          ...(shares !== undefined ? [["cpu.shares", `${shares}`] as const] : [])
        ]
    case "memory":
      return [[version === 2 ? "memory.max" : "memory.limit_in_bytes", `${memory!.limit! + SANDBOX_MEMORY}`]]
    case "pids":
      return [["pids.max", `${pids!.limit! + SANDBOX_TASKS}`]]
    default:
      return []
  }
}

/** Enables v2 controllers from the hierarchy's root down to the cgroup's parent, as far as each level allows. */
const enableControllers = (h: Hierarchy, dir: string, wanted: ReadonlyArray<string>) => {
  const levels: Array<string> = []
  for (let at = Path.dirname(dir); at.startsWith(h.mount) && at !== dir; at = Path.dirname(at)) {
    levels.unshift(at)
    if (at === h.mount) break
  }
  for (const level of levels) {
    let available: ReadonlyArray<string>
    try {
      available = Fs.readFileSync(Path.join(level, "cgroup.controllers"), "utf8").trim().split(/\s+/)
    } catch {
      return
    }
    for (const c of wanted.filter((c) => available.includes(c))) {
      try {
        Fs.writeFileSync(Path.join(level, "cgroup.subtree_control"), `+${c}`)
      } catch {
        // Not allowed here (a level with processes of its own); a limit that needs it fails below.
      }
    }
  }
}

/**
 * A new v1 cpuset cgroup takes no task until it has CPUs and memory nodes: each level from the
 * hierarchy's root down gets its parent's where it has none.
 */
const inheritCpuset = (h: Hierarchy, dir: string) => {
  const levels = Path.relative(h.mount, dir).split("/").filter((p) => p !== "")
  for (let i = 1; i <= levels.length; i++) {
    const level = Path.join(h.mount, ...levels.slice(0, i))
    for (const file of ["cpuset.cpus", "cpuset.mems"]) {
      const mine = Path.join(level, file)
      if (Fs.existsSync(mine) && Fs.readFileSync(mine, "utf8").trim() === "") {
        write(level, file, Fs.readFileSync(Path.join(Path.dirname(level), file), "utf8"))
      }
    }
  }
}

/** A container's cgroup: its directory in every hierarchy, and those of them this create made. */
export interface Cgroup {
  readonly dirs: ReadonlyArray<string>
  readonly made: ReadonlyArray<string>
}

/**
 * Makes the cgroup in every hierarchy and sets its limits, before any process is in it; on
 * failure, removes what it made.
 */
export const makeCgroup = (path: string, spec: Spec): Effect.Effect<Cgroup, CgroupFailed> =>
  Effect.suspend(() => {
    const made: Array<string> = []
    const dirs: Array<string> = []
    try {
      const found = hierarchies()
      if (found.length === 0) throw new CgroupFailed({ path, reason: "no cgroup hierarchy is mounted" })
      const resources = spec.linux?.resources ?? {}
      const wanted = controllersFor(resources)
      const applied = new Set<string>()
      for (const h of found) {
        const dir = Path.join(h.mount, path.startsWith("/") ? path : Path.join(h.own, path))
        if (dir !== h.mount && !dir.startsWith(`${h.mount}/`)) throw new CgroupFailed({ path, reason: "it leaves the cgroup hierarchy" })
        if (h.version === 2) enableControllers(h, dir, wanted)
        if (!Fs.existsSync(dir)) {
          try {
            Fs.mkdirSync(dir, { recursive: true })
          } catch (e) {
            throw new CgroupFailed({ path: dir, reason: `cannot make it: ${(e as Error).message}` })
          }
          made.push(dir)
        }
        if (h.controllers.includes("cpuset")) inheritCpuset(h, dir)
        // v2: what its parent enabled for it (in a hybrid host, the controllers v1 has are not).
        const controllers = h.version === 2 ? Fs.readFileSync(Path.join(dir, "cgroup.controllers"), "utf8").trim().split(/\s+/) : h.controllers
        for (const controller of wanted.filter((c) => controllers.includes(c))) {
          for (const [file, value] of limitFiles(h.version, controller, resources)) write(dir, file, value)
          applied.add(controller)
        }
        dirs.push(dir)
      }
      const missing = wanted.filter((c) => !applied.has(c))
      if (missing.length > 0) throw new CgroupFailed({ path, reason: `no hierarchy offers the ${missing.join(", ")} controller(s) its limits need` })
      return Effect.succeed({ dirs, made })
    } catch (e) {
      removeNow(made)
      return Effect.fail(e instanceof CgroupFailed ? e : new CgroupFailed({ path, reason: String(e) }))
    }
  })

/** Moves a process, all its threads, into the cgroup (in every hierarchy); later threads are born there. */
export const enterCgroup = (cgroup: Cgroup, pid: number): Effect.Effect<void, CgroupFailed> =>
  Effect.try({
    try: () => {
      for (const dir of cgroup.dirs) write(dir, "cgroup.procs", `${pid}`)
    },
    catch: (e) => (e instanceof CgroupFailed ? e : new CgroupFailed({ path: cgroup.dirs[0] ?? "", reason: String(e) }))
  })

/** Removes what is left; a cgroup still holding a process (EBUSY) is left. */
const removeNow = (dirs: ReadonlyArray<string>): ReadonlyArray<string> =>
  dirs.filter((dir) => {
    try {
      Fs.rmdirSync(dir)
      return false
    } catch (e) {
      return (e as NodeJS.ErrnoException).code !== "ENOENT"
    }
  })

/**
 * Removes the cgroups a create made, once the sandbox has exited: a process that has just been
 * killed leaves its cgroup a moment after, so a busy one is tried again for up to a second.
 */
export const removeCgroups = (dirs: ReadonlyArray<string>): Effect.Effect<void> =>
  Effect.gen(function*() {
    let left = removeNow(dirs)
    for (let i = 0; i < 100 && left.length > 0; i++) {
      yield* Effect.sleep("10 millis")
      left = removeNow(left)
    }
    if (left.length > 0) yield* Effect.logWarning(`cannot remove cgroup(s) ${left.join(", ")}`)
  })
