/**
 * Host processes as the CLI recognizes them later: by pid and start time, read from /proc. A pid
 * is reused; the pair never is. These are reads of the host's process table, not of the state
 * root, and stay synchronous: a status is computed from them in tight loops. Plain (no Effect):
 * the fast path (fastPath.ts) uses them too.
 */
import * as Fs from "node:fs"

/** A process as it can be recognized later: its pid and its start time (a pid is reused, the pair never). */
export interface ProcessIdentity {
  readonly pid: number
  readonly start: string
}

/** A process's state letter and start time (clock ticks since boot), from /proc; undefined when gone. */
const procStat = (pid: number): { readonly state: string; readonly start: string } | undefined => {
  if (!Number.isInteger(pid) || pid <= 0) return undefined
  try {
    const stat = Fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    // Fields after the command (which may contain spaces and parentheses) start after the last ")".
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return { state: fields[0]!, start: fields[19]! }
  } catch {
    return undefined
  }
}

/** Whether a process of that pid exists at all (a zombie included). */
export const pidExists = (pid: number): boolean => procStat(pid) !== undefined

/** The start time of a live process, to recognize it later (see ContainerRecord.sandboxStart). */
export const processStart = (pid: number): string => procStat(pid)?.start ?? ""

/** The identity of this process. */
export const thisProcess = (): ProcessIdentity => ({ pid: process.pid, start: processStart(process.pid) })

export const sameProcess = (a: ProcessIdentity | undefined, b: ProcessIdentity): boolean =>
  a !== undefined && a.pid === b.pid && a.start === b.start

/**
 * Whether the sandbox process of a record still runs: the pid exists, is that same process (its
 * start time matches), and is not a zombie waiting for a slow reaper.
 */
export const isAlive = (pid: number, start: string): boolean => {
  const stat = procStat(pid)
  return stat !== undefined && stat.start === start && stat.state !== "Z" && stat.state !== "X"
}
