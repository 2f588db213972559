/**
 * memory_grow: what the worker of an instrumented guest asks before its memory.grow (see
 * platform/instrument.ts). The sentry charges the pages to the sandbox's memory account; a grow
 * past the guest's declared maximum or the sandbox's memory fails ENOMEM, which the worker
 * turns into memory.grow's -1 (so malloc returns NULL).
 *
 * In a container whose limit kills (task/oomKiller.ts), a refusal OOM-kills its largest
 * process: the caller, which then never returns, or another, whose exit the caller waits for
 * before it tries again (as a Linux task waits for the OOM killer to free memory).
 */
import { Errno } from "@runsc/abi"
import { Deferred, Effect } from "effect"
import { fail, type SyscallError } from "../errors.js"
import { args } from "../platform/syscallAbi.js"
import type { Handler } from "./context.js"

// Each call's accessors, looked up once (see platform/syscallAbi.ts).
const MemoryGrowArgs = args.memory_grow

/** memory_grow(current pages, pages wanted). */
export const memory_grow: Handler = (c) => {
  const current = MemoryGrowArgs.current(c)
  const pages = MemoryGrowArgs.pages(c)
  const grow = (): Effect.Effect<void, SyscallError> => {
    if (c.services.growMemory(c.tg, current, pages)) return Effect.void
    const set = c.tg.tasks
    if (!set.oomKill || current + pages > c.tg.maximumMemoryPages) return fail(Errno.NOMEM)
    return Effect.zipRight(
      c.services.oomKill(set),
      Effect.suspend(() => {
        // Its own kill ends it: this call is interrupted with its task.
        if (c.tg.killedBy !== undefined) return Effect.never
        const victim = set.oomVictim
        if (victim === undefined || victim.state !== "exiting") return fail(Errno.NOMEM)
        return Effect.zipRight(Deferred.await(victim.exitStatus), Effect.suspend(grow))
      })
    )
  }
  return grow()
}
