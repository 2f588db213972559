/**
 * CPU shares (`linux.resources.cpu.shares`): a relative weight between the containers of one
 * sandbox while they contend for its cores. The host schedules worker threads, one per process,
 * with no notion of containers; this arbiter makes the containers' CPU time follow their weights
 * by holding, for a tick at a time, a container that is ahead of its share (Kernel.throttle
 * with reason "shares", at the next syscall or preemption point).
 *
 * The rule is CFS's: each container's virtual runtime grows by its CPU time scaled by
 * DEFAULT_WEIGHT / weight, and a container whose virtual runtime is more than a slack ahead of
 * the least one among the containers that want CPU is held until the others catch up. It
 * applies only under contention (more runnable processes than the machine has cores): with a
 * core free, holding a container would only waste it, as the kernel's CFS never does. Virtual
 * runtimes start again from level when contention ends, and an idle container's is kept level
 * with the least active one, so that no container banks CPU time while it sleeps.
 *
 * It is an approximation of group scheduling: the host still shares the cores among the
 * threads that run, so containers of unequal process counts under equal weights can leave a
 * core unused while one of them is held.
 *
 * The arbiter runs only while some container of the sandbox has shares in its spec; a sandbox
 * that sets none pays nothing. Containers without shares take part with the default weight.
 */
import type { Kernel, TaskSet } from "@runsc/kernel"
import type { Spec } from "@runsc/spec"
import { Effect, FiberSet, Scope } from "effect"
import * as Os from "node:os"

/** The weight of a container that sets no shares (a cgroup's default `cpu.shares`). */
const DEFAULT_WEIGHT = 1024
/** The bounds of `cpu.shares` in cgroup v1 (what runc accepts). */
const MIN_SHARES = 2
const MAX_SHARES = 262_144
/** How often the containers' CPU is read and the holds decided. */
const TICK_MS = 10
/** How far (virtual ns) a container may run ahead of the least one before it is held. */
const SLACK_NS = 2 * TICK_MS * 1e6

/** The shares the spec sets, as a weight; undefined when it sets none. */
export const cpuSharesOf = (spec: Spec): number | undefined => {
  const shares = spec.linux?.resources?.cpu?.shares
  if (shares === undefined || shares <= 0) return undefined
  return Math.min(MAX_SHARES, Math.max(MIN_SHARES, shares))
}

interface Member {
  readonly set: TaskSet
  readonly weight: number
  /** Whether its spec set the weight (the arbiter runs while one member did). */
  readonly explicit: boolean
  /** Its CPU time at the last tick. */
  cpu: bigint
  /** Its processes that could run at the last tick it was not held (so, while held, what it wants). */
  runnable: number
  vruntime: number
  held: boolean
}

/** A process that would run now if given a core: not stopped, not waiting in a blocking call. */
const wantsCpu = (tg: TaskSet["processes"][number]) =>
  tg.state === "running" && tg.worker !== undefined && !(tg.inKernel.current >= 0 && tg.inKernel.blocked)

export interface CpuShares {
  /** Makes `set` take part with `weight` (its spec's shares; undefined: the default) until the scope closes. */
  readonly join: (set: TaskSet, weight: number | undefined) => Effect.Effect<void, never, Scope.Scope>
}

/** The sandbox's arbiter; its fiber lives in the scope, and only while some member set shares. */
export const makeCpuShares = (kernel: Kernel["Type"], cores = Os.availableParallelism()) =>
  Effect.gen(function*() {
    const members = new Map<TaskSet, Member>()
    const fibers = yield* FiberSet.make()
    let running = false

    /** Holds or lets go a member; a member that has left (its container is going) is never held. */
    const hold = (m: Member, held: boolean) =>
      Effect.suspend(() => {
        if (m.held === held || (held && members.get(m.set) !== m)) return Effect.void
        m.held = held
        return kernel.throttle(m.set, "shares", held)
      })

    /** One tick: reads every member's CPU and decides who is held until the next. */
    const decide = (): Array<readonly [Member, boolean]> => {
      let runnable = 0
      for (const m of members.values()) {
        const cpu = m.set.cpuTime
        m.vruntime += Number(cpu - m.cpu) * DEFAULT_WEIGHT / m.weight
        m.cpu = cpu
        if (!m.held) m.runnable = m.set.live.filter(wantsCpu).length
        runnable += m.runnable
      }
      const all = [...members.values()]
      if (runnable <= cores) {
        for (const m of all) m.vruntime = 0
        return all.map((m) => [m, false] as const)
      }
      const active = all.filter((m) => m.runnable > 0)
      const least = Math.min(...active.map((m) => m.vruntime))
      for (const m of all) if (m.runnable === 0) m.vruntime = least
      return all.map((m) => [m, m.vruntime - least > SLACK_NS] as const)
    }

    /** Arbitrates while a member set shares; then lets every member go and ends. */
    const arbitrate = Effect.gen(function*() {
      for (;;) {
        yield* Effect.sleep(TICK_MS)
        const stop = yield* Effect.sync(() => {
          if ([...members.values()].some((m) => m.explicit)) return false
          running = false
          return true
        })
        if (stop) break
        yield* Effect.forEach(decide(), ([m, held]) => hold(m, held), { discard: true })
      }
      yield* Effect.forEach(members.values(), (m) => hold(m, false), { discard: true })
    })

    const join: CpuShares["join"] = (set, weight) =>
      Effect.acquireRelease(
        Effect.gen(function*() {
          const member: Member = {
            set,
            weight: weight ?? DEFAULT_WEIGHT,
            explicit: weight !== undefined,
            cpu: set.cpuTime,
            runnable: 0,
            // Level with the least member: a newcomer has no credit to spend.
            vruntime: members.size === 0 ? 0 : Math.min(...[...members.values()].map((m) => m.vruntime)),
            held: false
          }
          members.set(set, member)
          if (member.explicit && !running) {
            running = true
            // Forked from acquire's uninterruptible region, it would inherit that: the
            // sandbox's teardown must be able to interrupt it.
            yield* FiberSet.run(fibers, Effect.interruptible(arbitrate))
          }
          return member
        }),
        (member) => Effect.zipRight(Effect.sync(() => members.delete(set)), hold(member, false))
      ).pipe(Effect.asVoid)

    return { join } satisfies CpuShares
  })
