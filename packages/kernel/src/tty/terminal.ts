/**
 * Terminals: when a container's init or an exec runs with `terminal: true`, its stdio is a
 * terminal the process's new session controls. The bytes still flow to and from the host fds
 * runsc was given (a host tty, or the pty of a console socket); what the sentry adds is job
 * control: the terminal's foreground process group, which tty_getpgrp/tty_setpgrp read and
 * change, which ForegroundProcessGroup signals reach, and which gets the signals a host
 * terminal generates (^C → SIGINT, ^\ → SIGQUIT, ^Z → SIGTSTP, window size → SIGWINCH).
 *
 * Not built: a line discipline of our own (the host terminal's does echo and line editing) and
 * SIGTTIN/SIGTTOU for background reads and writes.
 */
import { FileType, SIGINT, SIGQUIT, SIGTSTP, SIGWINCH } from "@runsc/abi"
import { Effect } from "effect"
import type { FileDescription } from "../fs/inode.js"
import type { ControllingTerminal } from "../task/session.js"
import type { ThreadGroup } from "../task/threadGroup.js"

/** Signals a terminal sends to its foreground group rather than to one process. */
export const terminalSignals: ReadonlySet<number> = new Set([SIGINT, SIGQUIT, SIGTSTP, SIGWINCH])

export interface Terminal {
  readonly control: ControllingTerminal<ThreadGroup>
  /** The process's fds 0, 1 and 2, as descriptions of the terminal. */
  readonly stdio: ReadonlyArray<FileDescription>
}

/**
 * A terminal over the given descriptions (the host fds a process would have had as its stdio).
 * They read and write as before; they present as a terminal (a character device that cannot
 * seek, which is what isatty() looks for), and carry the terminal for job control.
 */
export const makeTerminal = (stdio: ReadonlyArray<FileDescription>): Terminal => {
  const control: ControllingTerminal<ThreadGroup> = { foreground: undefined }
  // One view per description: a description given at two slots stays one open file (fd
  // tables count references by identity), closed once.
  const views = new Map<FileDescription, FileDescription>()
  const viewOf = (description: FileDescription): FileDescription => {
    const made = views.get(description) ?? {
      ...description,
      filetype: FileType.CHARACTER_DEVICE,
      stat: Effect.map(description.stat, (stat) => ({ ...stat, filetype: FileType.CHARACTER_DEVICE })),
      isTerminal: true,
      terminal: control
    }
    views.set(description, made)
    return made
  }
  return { control, stdio: stdio.map(viewOf) }
}
