/**
 * How a process ended, and its encodings: the Linux wait status (as `wait4` reports it)
 * and the shell's exit code (the code, or 128 + signal).
 */
import { signalName } from "./signals.js"

export type ExitStatus =
  | { readonly _tag: "Exited"; readonly code: number }
  | { readonly _tag: "Signaled"; readonly signal: number }

export const exited = (code: number): ExitStatus => ({ _tag: "Exited", code: code & 0xff })
export const signaled = (signal: number): ExitStatus => ({ _tag: "Signaled", signal })

/** The `wait4` status word: code in bits 8..15, or the signal number in bits 0..6. */
export const toWaitStatus = (status: ExitStatus): number =>
  status._tag === "Exited" ? (status.code & 0xff) << 8 : status.signal & 0x7f

export const fromWaitStatus = (ws: number): ExitStatus =>
  (ws & 0x7f) === 0 ? exited((ws >> 8) & 0xff) : signaled(ws & 0x7f)

/** What a shell (and `runsc run`/`do`/`wait`) reports: the exit code, or 128 + signal. */
export const toShellCode = (status: ExitStatus): number =>
  status._tag === "Exited" ? status.code : 128 + status.signal

export const describe = (status: ExitStatus): string =>
  status._tag === "Exited" ? `exited with code ${status.code}` : `killed by ${signalName(status.signal)}`
