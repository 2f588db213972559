/**
 * How a task's end becomes its process's exit status, as Linux would report it: a return or
 * proc_exit is an exit code, a kill is its signal, a wasm trap is the signal of the matching
 * hardware fault, and a crash of the instance is SIGSYS.
 */
import { type ExitStatus, exited, SIGFPE, SIGILL, SIGKILL, SIGSEGV, signaled, SIGSYS } from "@runsc/abi"
import type { RunOutcome } from "../platform/pool.js"

/** The fault behind a trap's (or a crash's) signal, in words; undefined for other ends. */
export const faultOf = (outcome: RunOutcome, killedBy: number | undefined): string | undefined => {
  if (killedBy !== undefined || outcome._tag !== "Guest") return undefined
  const end = outcome.end
  if (end._tag === "Crash") return `instance failed: ${end.message}`
  if (end._tag !== "Trap") return undefined
  // V8 says "Maximum call stack size exceeded" and "unreachable"; say what happened in wasm terms.
  const reason = end.kind === "stack" ? "call stack exhausted" : end.kind === "unreachable" ? "unreachable instruction executed" : end.message
  return `wasm trap: ${reason}`
}

export const exitStatusOf = (outcome: RunOutcome, killedBy: number | undefined): ExitStatus => {
  if (killedBy !== undefined) return signaled(killedBy)
  if (outcome._tag === "WorkerDied") return signaled(SIGKILL)
  const end = outcome.end
  switch (end._tag) {
    case "Returned":
      return exited(0)
    case "ProcExit":
      return exited(end.code)
    case "Trap":
      return signaled(end.kind === "unreachable" || end.kind === "other" ? SIGILL : end.kind === "divide" ? SIGFPE : SIGSEGV)
    case "Crash":
      return signaled(SIGSYS)
    case "Killed":
      // Only the sentry answers KILLED, and only after recording the signal.
      return signaled(SIGKILL)
  }
}
