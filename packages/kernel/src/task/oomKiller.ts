/**
 * The OOM killer of a container whose memory limit kills (Linux's behaviour at a cgroup's
 * limit) rather than refuses (the default here: memory.grow returns -1, so malloc returns NULL
 * and the program may react). When such a container's guest memory cannot grow, its largest
 * live process (guest memory and worker share) is SIGKILLed, as the kernel's memcg OOM killer
 * chooses, and counted in `oomKills`.
 *
 * Only guest memory kills: it is what a Linux program cannot see fail (its pages are charged
 * when touched). A charge that has an answer of its own still gets it (a process start
 * SandboxOutOfMemory or EAGAIN, a pipe ENFILE, a tmpfs write ENOSPC), in both modes.
 *
 * One victim at a time: while the last one is still exiting (its memory not yet given back),
 * nobody else is killed. The process whose grow was refused waits for the victim's exit and
 * tries again (syscalls/memory.ts), so it either fits then or is the next victim; the kills
 * end, at worst, with the container's last process.
 */
import { SIGKILL } from "@runsc/abi"
import { Effect } from "effect"
import { WASM_PAGE } from "../memoryAccount.js"
import type { Kill } from "../signal/kill.js"
import type { Membership, ThreadGroup } from "./threadGroup.js"

const footprint = (tg: ThreadGroup) => tg.memoryPages * WASM_PAGE + tg.memoryShare

/** `set`'s guest memory could not grow: kills its largest process, unless one is dying already. */
export const oomKill = (kill: Kill) => (set: Membership): Effect.Effect<void> =>
  Effect.suspend(() => {
    if (set.oomVictim?.state === "exiting") return Effect.void
    const live = [...set.live]
    if (live.length === 0) return Effect.void
    const victim = live.reduce((a, b) => (footprint(b) > footprint(a) ? b : a))
    set.oomVictim = victim
    set.oomKills++
    return kill(victim, SIGKILL)
  })
