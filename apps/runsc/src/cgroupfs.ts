/**
 * The host's cgroup filesystem, as runsc uses it for a sandbox process: the mounted hierarchies
 * (cgroup v2, each v1 hierarchy, or both), and a cgroup directory made in each with its limit
 * files, and removed (a process enters it by writing its pid to cgroup.procs: detached.ts). Writes of kernel files that complete at once: plain synchronous
 * calls that throw CgroupError (cgroups.ts makes effects of them; the fast path removes with
 * them too).
 */
import type { Spec } from "@runsc/spec"
import * as Fs from "node:fs"
import * as Path from "node:path"

/** What the sandbox process itself takes beyond its guests' memory (the Node runtime, the sentry). */
export const SANDBOX_MEMORY = 256 * 1024 * 1024
/** Threads of the sandbox process beside its guests' (Node's own pools, the sentry, the gofer). */
export const SANDBOX_TASKS = 64

/** What cgroupfs refused, at which path. */
export class CgroupError extends Error {
  constructor(readonly path: string, readonly reason: string) {
    super(`cgroup ${path}: ${reason}`)
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
const hierarchies = (): ReadonlyArray<Hierarchy> => {
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

const write = (dir: string, file: string, value: string) => {
  try {
    Fs.writeFileSync(Path.join(dir, file), value)
  } catch (e) {
    throw new CgroupError(Path.join(dir, file), `cannot write ${JSON.stringify(value)}: ${(e as Error).message}`)
  }
}

/** runc's mapping of cgroup v1 shares (2..262144) to a v2 weight (1..10000). */
const weightOf = (shares: number) => Math.round(1 + ((Math.min(Math.max(shares, 2), 262144) - 2) * 9999) / 262142)

/** `linux.resources`, the part of it cgroups carry. */
export type Resources = NonNullable<NonNullable<Spec["linux"]>["resources"]>

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
export const makeCgroupDirs = (path: string, resources: Resources): Cgroup => {
  const made: Array<string> = []
  const dirs: Array<string> = []
  try {
    const found = hierarchies()
    if (found.length === 0) throw new CgroupError(path, "no cgroup hierarchy is mounted")
    const wanted = controllersFor(resources)
    const applied = new Set<string>()
    for (const h of found) {
      const dir = Path.join(h.mount, path.startsWith("/") ? path : Path.join(h.own, path))
      if (dir !== h.mount && !dir.startsWith(`${h.mount}/`)) throw new CgroupError(path, "it leaves the cgroup hierarchy")
      if (h.version === 2) enableControllers(h, dir, wanted)
      if (!Fs.existsSync(dir)) {
        try {
          Fs.mkdirSync(dir, { recursive: true })
        } catch (e) {
          throw new CgroupError(dir, `cannot make it: ${(e as Error).message}`)
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
    if (missing.length > 0) throw new CgroupError(path, `no hierarchy offers the ${missing.join(", ")} controller(s) its limits need`)
    return { dirs, made }
  } catch (e) {
    removeCgroupDirs(made)
    throw e instanceof CgroupError ? e : new CgroupError(path, String(e))
  }
}

/**
 * Removes cgroup directories; returns those left (a cgroup still holding a process: EBUSY). A
 * path that is not a directory below a mounted hierarchy (a record edited by hand) is left too:
 * nothing else is ever removed from a state record's word.
 */
export const removeCgroupDirs = (dirs: ReadonlyArray<string>): ReadonlyArray<string> => {
  const mounts = dirs.length === 0 ? [] : hierarchies().map((h) => `${h.mount}/`)
  return dirs.filter((dir) => {
    if (Path.normalize(dir) !== dir || !mounts.some((mount) => dir.startsWith(mount))) return true
    try {
      Fs.rmdirSync(dir)
      return false
    } catch (e) {
      return (e as NodeJS.ErrnoException).code !== "ENOENT"
    }
  })
}
