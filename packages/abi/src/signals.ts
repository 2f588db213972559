/**
 * Linux signals as data: numbers (x86-64 / generic numbering), names and default actions.
 * WASI guests cannot install handlers, so a signal's default action is what happens to the guest.
 */

export type SignalAction = "terminate" | "core" | "ignore" | "stop" | "continue"

interface SignalInfo {
  readonly number: number
  readonly name: string
  readonly action: SignalAction
}

const table: ReadonlyArray<SignalInfo> = [
  { number: 1, name: "SIGHUP", action: "terminate" },
  { number: 2, name: "SIGINT", action: "terminate" },
  { number: 3, name: "SIGQUIT", action: "core" },
  { number: 4, name: "SIGILL", action: "core" },
  { number: 5, name: "SIGTRAP", action: "core" },
  { number: 6, name: "SIGABRT", action: "core" },
  { number: 7, name: "SIGBUS", action: "core" },
  { number: 8, name: "SIGFPE", action: "core" },
  { number: 9, name: "SIGKILL", action: "terminate" },
  { number: 10, name: "SIGUSR1", action: "terminate" },
  { number: 11, name: "SIGSEGV", action: "core" },
  { number: 12, name: "SIGUSR2", action: "terminate" },
  { number: 13, name: "SIGPIPE", action: "terminate" },
  { number: 14, name: "SIGALRM", action: "terminate" },
  { number: 15, name: "SIGTERM", action: "terminate" },
  { number: 16, name: "SIGSTKFLT", action: "terminate" },
  { number: 17, name: "SIGCHLD", action: "ignore" },
  { number: 18, name: "SIGCONT", action: "continue" },
  { number: 19, name: "SIGSTOP", action: "stop" },
  { number: 20, name: "SIGTSTP", action: "stop" },
  { number: 21, name: "SIGTTIN", action: "stop" },
  { number: 22, name: "SIGTTOU", action: "stop" },
  { number: 23, name: "SIGURG", action: "ignore" },
  { number: 24, name: "SIGXCPU", action: "core" },
  { number: 25, name: "SIGXFSZ", action: "core" },
  { number: 26, name: "SIGVTALRM", action: "terminate" },
  { number: 27, name: "SIGPROF", action: "terminate" },
  { number: 28, name: "SIGWINCH", action: "ignore" },
  { number: 29, name: "SIGIO", action: "terminate" },
  { number: 30, name: "SIGPWR", action: "terminate" },
  { number: 31, name: "SIGSYS", action: "core" }
]

const byNumber = new Map(table.map((s) => [s.number, s]))
const byName = new Map(table.map((s) => [s.name, s]))

export const SIGHUP = 1
export const SIGINT = 2
export const SIGQUIT = 3
export const SIGILL = 4
export const SIGABRT = 6
export const SIGBUS = 7
export const SIGFPE = 8
export const SIGKILL = 9
export const SIGUSR1 = 10
export const SIGSEGV = 11
export const SIGUSR2 = 12
export const SIGPIPE = 13
export const SIGTERM = 15
export const SIGTSTP = 20
export const SIGTTIN = 21
export const SIGTTOU = 22
export const SIGCHLD = 17
export const SIGCONT = 18
export const SIGSTOP = 19
export const SIGURG = 23
export const SIGWINCH = 28
export const SIGSYS = 31

/**
 * WASI's `signal` enum (proc_raise, and WASIX's proc_signal / join_status) numbers signals as
 * Linux does up to SIGTERM, then leaves out SIGSTKFLT: WASI 16 is SIGCHLD (Linux 17), and so on
 * up to WASI 30, SIGSYS. Returns undefined for numbers outside the enum (0 is "none").
 */
export const signalFromWasi = (wasi: number): number | undefined =>
  wasi >= 0 && wasi < 16 ? wasi : wasi >= 16 && wasi <= 30 ? wasi + 1 : undefined

/** The WASI `signal` number of a Linux signal (SIGSTKFLT has none: 0). */
export const signalToWasi = (signo: number): number => signo < 16 ? signo : signo === 16 ? 0 : signo - 1

/** Highest standard (non-realtime) signal number. */
export const MAX_STANDARD_SIGNAL = 31

export const isValidSignal = (signo: number): boolean => byNumber.has(signo)

/** `SIGTERM`, or `signal 40` for numbers outside the standard table. */
export const signalName = (signo: number): string => byNumber.get(signo)?.name ?? `signal ${signo}`

export const defaultAction = (signo: number): SignalAction => byNumber.get(signo)?.action ?? "terminate"

/**
 * Parses a signal the way `kill` and runsc accept it: `TERM`, `SIGTERM`, `sigterm` or `15`.
 * Returns `undefined` for anything that is not a known standard signal (0 is accepted: it probes liveness).
 */
export const parseSignal = (text: string): number | undefined => {
  const trimmed = text.trim()
  if (/^\d+$/.test(trimmed)) {
    const n = Number(trimmed)
    return n === 0 || byNumber.has(n) ? n : undefined
  }
  const upper = trimmed.toUpperCase()
  return byName.get(upper.startsWith("SIG") ? upper : `SIG${upper}`)?.number
}

/**
 * Host signals a sandbox forwards to its root process. SIGCHLD, SIGPIPE and SIGURG concern the
 * sandbox itself; fault signals (SEGV, BUS, FPE, ILL, TRAP) are Node's own; SIGPROF drives the V8
 * profiler of the sandbox process; SIGKILL and SIGSTOP cannot be caught.
 */
export const forwardableHostSignals: ReadonlyArray<string> = table
  .filter((s) => !["SIGKILL", "SIGSTOP", "SIGCHLD", "SIGPIPE", "SIGURG", "SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGTRAP", "SIGSTKFLT", "SIGPWR", "SIGPROF"].includes(s.name))
  .map((s) => s.name)
