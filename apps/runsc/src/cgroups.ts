/**
 * The sandbox process in the container's cgroup (`linux.cgroupsPath`), as runc places a
 * container's init and gVisor's runsc its sandbox: so that what an engine reads there (podman
 * stats, ctr task metrics) and the limits it sets are the sandbox's.
 *
 * Every hierarchy mounted on the host gets the cgroup (cgroupfs.ts). The path is cgroupfs's
 * (absolute: from each hierarchy's root; relative: below this process's own cgroup there) or,
 * with `--systemd-cgroup`, systemd's `slice:prefix:name`, which names
 * `<slice path>/<prefix>-<name>.scope`. That directory is made directly in cgroupfs: no systemd
 * unit is registered for it (runsc does not speak D-Bus).
 *
 * Limits, from `linux.resources`: CPU as the spec says (quota/period, shares); memory and pids
 * with an allowance for the sandbox process's own use added (SANDBOX_MEMORY, SANDBOX_TASKS):
 * the Node runtime hosting the sentry is charged to the cgroup, and every guest process is one
 * of its threads. Within that, the sentry holds guests to the spec's memory limit itself (its
 * memory account), so a guest meets a failing allocation, not the host's OOM killer; the cgroup
 * is the host's bound on the whole sandbox.
 */
import type { Spec } from "@runsc/spec"
import { Data, Effect } from "effect"
import * as Path from "node:path"
import { type Cgroup, CgroupError, makeCgroupDirs, removeCgroupDirs } from "./cgroupfs.js"

export type { Cgroup } from "./cgroupfs.js"

export class CgroupFailed extends Data.TaggedError("CgroupFailed")<{ readonly path: string; readonly reason: string }> {
  override get message(): string {
    return `cgroup ${this.path}: ${this.reason}`
  }
}

const failed = (path: string) => (e: unknown) =>
  e instanceof CgroupError ? new CgroupFailed({ path: e.path, reason: e.reason }) : new CgroupFailed({ path, reason: String(e) })

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

/**
 * Makes the cgroup in every hierarchy and sets its limits, before any process is in it; on
 * failure, removes what it made.
 */
export const makeCgroup = (path: string, spec: Spec): Effect.Effect<Cgroup, CgroupFailed> =>
  Effect.try({ try: () => makeCgroupDirs(path, spec.linux?.resources ?? {}), catch: failed(path) })

/** The files a process writes its pid to to enter the cgroup (in every hierarchy); its threads are born there. */
export const cgroupProcsFiles = (cgroup: Cgroup): ReadonlyArray<string> => cgroup.dirs.map((dir) => Path.join(dir, "cgroup.procs"))

/**
 * Removes the cgroups a create made, once the sandbox has exited: a process that has just been
 * killed leaves its cgroup a moment after, so a busy one is tried again for up to a second.
 */
export const removeCgroups = (dirs: ReadonlyArray<string>): Effect.Effect<void> =>
  Effect.gen(function*() {
    let left = removeCgroupDirs(dirs)
    for (let i = 0; i < 100 && left.length > 0; i++) {
      yield* Effect.sleep("10 millis")
      left = removeCgroupDirs(left)
    }
    if (left.length > 0) yield* Effect.logWarning(`cannot remove cgroup(s) ${left.join(", ")}`)
  })
