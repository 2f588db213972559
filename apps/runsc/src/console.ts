/**
 * `--console-socket`: the container's terminal is a new pseudo-terminal. Its slave end becomes
 * the process's stdio; its master end is sent, with the terminal's name, over the Unix socket
 * the caller listens on (SCM_RIGHTS, as runc does), and the caller does the terminal's I/O from
 * then on. Node can do neither part, so a small addon does (native/console.c).
 */
import { Effect, Schema } from "effect"
import * as Fs from "node:fs"
import { createRequire } from "node:module"

/** What native/console.c exports (the build puts it at dist/console.node). */
export interface ConsoleAddon {
  openPty(): { readonly master: number; readonly slave: number; readonly name: string }
  sendFd(socketPath: string, name: string, fd: number): void
  listenConsole(socketPath: string): number
  receiveFd(listenFd: number): { readonly name: string; readonly fd: number }
}

export class ConsoleUnavailable extends Schema.TaggedError<ConsoleUnavailable>()("ConsoleUnavailable", { reason: Schema.String }) {
  override get message(): string {
    return `--console-socket needs runsc's console addon, which is not built (a C compiler at install builds it): ${this.reason}`
  }
}

export class ConsoleSocketFailed extends Schema.TaggedError<ConsoleSocketFailed>()("ConsoleSocketFailed", {
  path: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `console socket ${this.path}: ${this.reason}`
  }
}

export const consoleAddon: Effect.Effect<ConsoleAddon, ConsoleUnavailable> = Effect.try({
  // Beside this module: dist/ holds both the compiled CLI (or its bundle) and the addon.
  try: () => createRequire(import.meta.url)("./console.node") as ConsoleAddon,
  catch: (e) => new ConsoleUnavailable({ reason: (e as Error).message })
})

/**
 * A new terminal for a container whose stdio is `slave` (open in this process until the scope
 * closes; a child given it keeps its own copy). `send` hands the master end to the console
 * socket at `socketPath`, once the container has its stdio.
 */
export const openConsole = (socketPath: string) =>
  Effect.gen(function*() {
    const addon = yield* consoleAddon
    const pty = yield* Effect.acquireRelease(
      Effect.try({
        try: () => addon.openPty(),
        catch: (e) => new ConsoleSocketFailed({ path: socketPath, reason: `cannot open a pseudo-terminal: ${(e as Error).message}` })
      }),
      ({ master, slave }) =>
        Effect.sync(() => {
          Fs.closeSync(master)
          Fs.closeSync(slave)
        })
    )
    const send: Effect.Effect<void, ConsoleSocketFailed> = Effect.try({
      try: () => addon.sendFd(socketPath, pty.name, pty.master),
      catch: (e) => new ConsoleSocketFailed({ path: socketPath, reason: (e as Error).message })
    })
    return { slave: pty.slave, send }
  })
