/**
 * A container's CPU quota (`linux.resources.cpu.quota` µs of CPU time per `period` µs, as a CFS
 * bandwidth limit): within each period its processes together may use `quota` of CPU time;
 * once that is spent, every one of them is held at its next syscall or preemption point
 * (Kernel.throttle) until the period ends. What it used past its quota before it was held (up
 * to one check interval of each running process) is taken from its next periods, so that over
 * many periods it gets its quota and no more.
 *
 * One fiber per limited container, in the container's scope; it reads the CPU clock of every
 * worker thread of the container (TaskSet.cpuTime) at each check, so checks are at least 5 ms
 * apart: a container of hundreds of processes must not make its own accounting a load on the
 * sentry. The debt carried over keeps a small quota exact all the same.
 */
import type { Kernel, TaskSet } from "@runsc/kernel"
import type { Spec } from "@runsc/spec"
import { Clock, Effect } from "effect"

export interface CpuQuota {
  /** CPU time per period, ns. */
  readonly quotaNs: bigint
  readonly periodMs: number
}

/** runc's default CFS period, µs. */
const DEFAULT_PERIOD_US = 100_000

/** The quota the spec sets, if any (a quota of -1, 0 or none is no limit). */
export const cpuQuotaOf = (spec: Spec): CpuQuota | undefined => {
  const cpu = spec.linux?.resources?.cpu
  if (cpu?.quota === undefined || cpu.quota <= 0) return undefined
  return { quotaNs: BigInt(cpu.quota) * 1000n, periodMs: (cpu.period ?? DEFAULT_PERIOD_US) / 1000 }
}

/** How often the container's CPU is read while it may run: a tenth of its quota, 5 to 10 ms. */
const checkMs = (quota: CpuQuota) => Math.min(10, Math.max(5, Number(quota.quotaNs) / 1e6 / 10))

/** Enforces `quota` on `set` until interrupted; lets the set run when it ends. */
export const enforceCpuQuota = (kernel: Kernel["Type"], set: TaskSet, quota: CpuQuota): Effect.Effect<never> => {
  const check = checkMs(quota)
  return Effect.gen(function*() {
    // CPU time used past the budget, paid from the next periods (a budget may be negative: the
    // period is then spent held).
    let debt = 0n
    for (;;) {
      const periodEnd = (yield* Clock.currentTimeMillis) + quota.periodMs
      const budget = quota.quotaNs - debt
      const base = set.cpuTime
      for (;;) {
        const now = yield* Clock.currentTimeMillis
        if (now >= periodEnd) break
        if (set.cpuTime - base >= budget) {
          yield* kernel.throttle(set, "quota", true)
          yield* Effect.sleep(periodEnd - now)
          break
        }
        // With no process running, nothing can spend the budget before the period ends (one
        // exec'd meanwhile runs unchecked until then, and pays its overrun from the next).
        yield* Effect.sleep(set.live.length === 0 ? periodEnd - now : Math.min(check, periodEnd - now))
      }
      // What it used past its budget, however it got there, is paid from the next periods.
      const used = set.cpuTime - base
      debt = used > budget ? used - budget : 0n
      yield* kernel.throttle(set, "quota", false)
    }
  }).pipe(Effect.ensuring(kernel.throttle(set, "quota", false)))
}
