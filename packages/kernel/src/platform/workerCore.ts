/**
 * The gofer's native core as a guest worker thread loads it (its own copy of the addon: a worker
 * cannot share the sentry's), for the few host calls a worker makes itself (lentFiles.ts) and
 * its thread id. Loaded once per thread, at first use; undefined where it does not load, and
 * each caller then does without.
 */
export interface WorkerCore {
  fstat(fd: number, out: BigInt64Array): number
  pread(fd: number, bytes: Uint8Array, at: number, length: number, position: number): number
  pwrite(fd: number, bytes: Uint8Array, at: number, length: number, position: number): number
  /** This thread's Linux tid. */
  threadId(): number
  /** CPU time (ns) of the thread `tid` of this process; a negative errno on failure. */
  threadCpuTime(tid: number): bigint | number
}

let core: WorkerCore | null | undefined

export const workerCore = (): WorkerCore | undefined => {
  if (core === undefined) {
    const addon = { exports: {} as WorkerCore }
    try {
      // The kernel's dist/gofer.node, beside this bundle's directory (dist/platform/).
      process.dlopen(addon, decodeURIComponent(new URL("../gofer.node", import.meta.url).pathname))
      core = addon.exports
    } catch {
      core = null
    }
  }
  return core ?? undefined
}
