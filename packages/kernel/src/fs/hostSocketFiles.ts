/**
 * The Unix sockets bound to socket files in a sandbox's host trees (a guest's bind in an `rw`
 * bind mount), by the file's host device and inode: what a connect to such a file reaches,
 * through any mount of that host directory in any container of the sandbox (a pod's shared
 * volume), as a socket file in tmpfs names its socket. The file is a real socket inode on the
 * host, so it lists, stats, renames and unlinks as any; a host process connecting to it is
 * refused (nothing listens on the host).
 *
 * Held weakly: a socket gone leaves nothing reachable, and its entry goes with it; a socket file
 * the sandbox did not make (another sandbox's, the host's) reaches nothing.
 */
export class HostSocketFiles {
  private readonly bound = new Map<string, WeakRef<object>>()
  private readonly collected = new FinalizationRegistry<string>((key) => {
    if (this.bound.get(key)?.deref() === undefined) this.bound.delete(key)
  })

  /** `socket` is bound to the host file `dev`:`ino` (just made for it). */
  add(dev: bigint, ino: bigint, socket: object): void {
    const key = `${dev}:${ino}`
    this.bound.set(key, new WeakRef(socket))
    this.collected.register(socket, key)
  }

  /** The socket bound to the host file `dev`:`ino`, if the sandbox has one there. */
  find(dev: bigint, ino: bigint): object | undefined {
    return this.bound.get(`${dev}:${ino}`)?.deref()
  }
}
