/**
 * The process tree: who waits for whom, what becomes of a process's children when it exits,
 * and reaping (the release of an exited process's pids). Also the kill of a whole task set,
 * which ends in reaping its processes, and the death of a PID namespace's init, which ends
 * its namespace (Linux's rule, kept here next to the namespace and the tree).
 */
import { SIGCHLD } from "@runsc/abi"
import { Deferred, Effect, FiberSet, type Scope } from "effect"
import type { Kill } from "../signal/kill.js"
import type { Signal } from "../signal/deliver.js"
import { ProcessGroup, Session } from "./session.js"
import { TaskSet } from "./taskSet.js"
import type { ThreadGroup } from "./threadGroup.js"

export interface ProcessTree {
  /**
   * After a process has exited: its children go to the init of their namespace when that init
   * is alive in the same container (else nobody will wait for them: the sentry reaps them);
   * its parent learns of the exit (SIGCHLD, a wake-up of proc_join); an orphan is reaped now.
   */
  readonly leave: (tg: ThreadGroup) => Effect.Effect<void>
  /** Forgets an exited process: its pids, its place in its group, its task set and under its parent. */
  readonly reap: (tg: ThreadGroup) => Effect.Effect<void>
  /**
   * A set for the processes of one container. Closing the scope it is made in SIGKILLs every
   * process of the set, waits for each to exit (children they spawn included) and reaps them;
   * only then does that scope release what it acquired before the set.
   */
  readonly taskSet: (containerId: string) => Effect.Effect<TaskSet, never, Scope.Scope>
}

/** A new process group led by `leader`, in `session` or in a new session it leads. */
export const newGroup = (leader: ThreadGroup, session: Session<ThreadGroup> | "new"): ProcessGroup<ThreadGroup> =>
  new ProcessGroup<ThreadGroup>(leader, session === "new" ? new Session<ThreadGroup>(leader) : session)

export const makeProcessTree = (kill: Kill, signal: Signal): ProcessTree => {
  const reap = (tg: ThreadGroup) =>
    Effect.sync(() => {
      if (!tg.markReaped()) return
      tg.tasks.remove(tg)
      for (const [ns, pid] of tg.ids) if (ns.get(pid) === tg) ns.release(pid)
    })

  const leave = (tg: ThreadGroup): Effect.Effect<void> =>
    Effect.gen(function*() {
      // As on Linux, the death of a PID namespace's init (of a namespace below the root's)
      // ends the namespace: no process may join it any more, and every process in it is killed.
      const ns = tg.pidNamespace
      if (ns.parent !== undefined && ns.get(1) === tg) {
        ns.refuseNew()
        yield* kill.all(ns.processes.map(([, member]) => member))
      }
      for (const child of [...tg.children]) {
        const init = child.pidNamespace.get(1)
        if (init !== undefined && init !== tg && init.isAlive && init.tasks === child.tasks) {
          child.reparent(init)
        } else {
          child.reparent(undefined)
          if (child.state === "exited") yield* reap(child)
        }
      }
      const parent = tg.parent
      if (parent !== undefined) {
        yield* signal(parent, SIGCHLD)
        parent.childEvents.notify()
      } else if (tg.autoReap) {
        yield* reap(tg)
      }
    })

  /** SIGKILLs every process of `set` and waits for each to exit, until none is left; reaps them. */
  const killAndReap = (set: TaskSet): Effect.Effect<void> =>
    Effect.gen(function*() {
      set.close()
      for (let all = set.processes; all.length > 0; all = set.processes) {
        yield* kill.all(all)
        yield* Effect.forEach(all, (tg) => Deferred.await(tg.exitStatus), { discard: true })
        yield* Effect.forEach(all, reap, { discard: true })
      }
    })

  const taskSet = (containerId: string): Effect.Effect<TaskSet, never, Scope.Scope> =>
    Effect.gen(function*() {
      // Made first, so interrupted last: by then the finalizer below has ended every task.
      const set = new TaskSet(containerId, yield* FiberSet.make())
      yield* Effect.addFinalizer(() => killAndReap(set))
      return set
    })

  return { leave, reap, taskSet }
}
