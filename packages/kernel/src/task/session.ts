/**
 * Sessions and process groups, as POSIX job control defines them: every process belongs to one
 * process group, every group to one session; each is named by the pid of the process that
 * created it (its leader), in every PID namespace that process had a pid in.
 *
 * Invariant: while a group or session has members, its leader's pids stay held in their
 * namespaces, so no new process can get a pid that still names a live group or session (the
 * leader itself may have exited and been reaped long before).
 */
import type { PidNamespace } from "./pidNamespace.js"

/** The part of a process a group or session needs: its pids, innermost namespace first. */
export interface Leader {
  readonly ids: ReadonlyMap<PidNamespace<any>, number>
}

const hold = (leader: Leader) => {
  for (const [ns, pid] of leader.ids) ns.hold(pid)
}
const unhold = (leader: Leader) => {
  for (const [ns, pid] of leader.ids) ns.unhold(pid)
}

/** The terminal a session controls, as far as job control needs it. */
export interface ControllingTerminal<P = unknown> {
  /** The group that reads the terminal and gets its ^C; undefined once that group is gone. */
  foreground: ProcessGroup<P> | undefined
}

export class Session<P = unknown> {
  private readonly groups = new Set<ProcessGroup<P>>()
  /** Set when the session leader is started with a terminal. */
  terminal: ControllingTerminal<P> | undefined

  constructor(readonly leader: Leader) {
    hold(leader)
  }

  /** The session id as seen from `ns` (0 when the leader has no pid there). */
  idIn(ns: PidNamespace<any>): number {
    return this.leader.ids.get(ns) ?? 0
  }

  add(group: ProcessGroup<P>): void {
    this.groups.add(group)
  }

  remove(group: ProcessGroup<P>): void {
    if (!this.groups.delete(group)) return
    if (this.terminal?.foreground === group) this.terminal.foreground = undefined
    if (this.groups.size === 0) unhold(this.leader)
  }
}

export class ProcessGroup<P = unknown> {
  readonly members = new Set<P>()

  constructor(readonly leader: Leader, readonly session: Session<P>) {
    hold(leader)
    session.add(this)
  }

  /** The process group id as seen from `ns` (0 when the leader has no pid there). */
  idIn(ns: PidNamespace<any>): number {
    return this.leader.ids.get(ns) ?? 0
  }

  add(process: P): void {
    this.members.add(process)
  }

  /** Removes a member; the group ends (and its pid is released) with its last one. */
  remove(process: P): void {
    if (!this.members.delete(process) || this.members.size > 0) return
    unhold(this.leader)
    this.session.remove(this)
  }
}
