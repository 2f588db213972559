/**
 * Admission of new processes into a set of processes (a container): what makes a kill of the
 * whole set atomic with respect to process creation. Whoever kills every process of the set
 * closes its admission first; the kernel consults it at the moment it registers a new process
 * (allocates its pids), so a process is either registered before the kill enumerates the set,
 * and killed with it, or refused. The kernel knows nothing of what the set is.
 */
export class Admission {
  private holds = 0
  private closedForGood = false

  /** Whether a new process may join now. */
  get isOpen(): boolean {
    return this.holds === 0 && !this.closedForGood
  }

  /** Refuses new processes until the returned function is called (idempotent): a kill in progress. */
  hold(): () => void {
    this.holds++
    let released = false
    return () => {
      if (released) return
      released = true
      this.holds--
    }
  }

  /** Refuses new processes from now on: the set is being destroyed. */
  close(): void {
    this.closedForGood = true
  }
}
