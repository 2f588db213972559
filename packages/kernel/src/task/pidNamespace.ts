/**
 * PID namespaces: each allocates its own pids, and a process has one pid in its namespace and
 * in every ancestor (what `ps` in the root namespace shows is the root-namespace pid).
 */

/** Linux's default pid_max: pids wrap around below it, skipping ones still in use. */
export const PID_MAX = 4194304

export class PidNamespace<P = unknown> {
  private last = 0
  private readonly members = new Map<number, P>()
  /** Pids no process has any more that still name a process group or session: not reallocated. */
  private readonly held = new Map<number, number>()

  private closed = false

  constructor(readonly parent: PidNamespace<P> | undefined) {}

  /**
   * No new process may join the namespace any more: its init has died and its processes are
   * being killed (Linux disables pid allocation then; fork fails).
   */
  refuseNew(): void {
    this.closed = true
  }

  /** Whether a new process may join this namespace (and so every namespace it is nested in). */
  get acceptsNew(): boolean {
    for (let ns: PidNamespace<P> | undefined = this; ns; ns = ns.parent) if (ns.closed) return false
    return true
  }

  /** Allocates the lowest free pid above the last one allocated, wrapping at PID_MAX. */
  allocate(process: P): number | undefined {
    for (let i = 0; i < PID_MAX - 1; i++) {
      const pid = (this.last % (PID_MAX - 1)) + 1
      this.last = pid
      if (!this.members.has(pid) && !this.held.has(pid)) {
        this.members.set(pid, process)
        return pid
      }
    }
    return undefined
  }

  release(pid: number): void {
    this.members.delete(pid)
  }

  /** Keeps `pid` from being allocated again until as many `unhold`s (it names a group or session). */
  hold(pid: number): void {
    this.held.set(pid, (this.held.get(pid) ?? 0) + 1)
  }

  unhold(pid: number): void {
    const n = (this.held.get(pid) ?? 1) - 1
    if (n > 0) this.held.set(pid, n)
    else this.held.delete(pid)
  }

  get(pid: number): P | undefined {
    return this.members.get(pid)
  }

  get processes(): ReadonlyArray<[number, P]> {
    return [...this.members.entries()]
  }

  /** This namespace, then each ancestor up to the root. */
  get lineage(): ReadonlyArray<PidNamespace<P>> {
    const chain: Array<PidNamespace<P>> = []
    for (let ns: PidNamespace<P> | undefined = this; ns; ns = ns.parent) chain.push(ns)
    return chain
  }
}
