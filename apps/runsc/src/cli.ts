/** The command tree and its argument handling. */
import { Command } from "@effect/cli"
import { bootCommand } from "./commands/boot.js"
import {
  createCommand,
  deleteCommand,
  killCommand,
  listCommand,
  eventsCommand,
  pauseCommand,
  psCommand,
  resumeCommand,
  startCommand,
  stateCommand,
  waitCommand
} from "./commands/container.js"
import { doCommand, doFlags, doOptionsWithValue } from "./commands/do.js"
import { execCommand, execFlags, execOptionsWithValue } from "./commands/exec.js"
import { featuresCommand, RUNSC_VERSION } from "./commands/features.js"
import { portForwardCommand } from "./commands/portForward.js"
import { runCommand } from "./commands/run.js"
import { specCommand } from "./commands/spec.js"
import { containerWaiterCommand, execWaiterCommand } from "./commands/waiters.js"
import { relayCommand } from "./relay.js"
import { rootDirOf } from "./globals.js"
import { rootCommand } from "./root.js"
import { StateStore } from "./state.js"

export const command = rootCommand.pipe(
  Command.withSubcommands([
    specCommand,
    runCommand,
    doCommand,
    createCommand,
    startCommand,
    stateCommand,
    killCommand,
    waitCommand,
    deleteCommand,
    listCommand,
    psCommand,
    execCommand,
    execWaiterCommand,
    containerWaiterCommand,
    featuresCommand,
    pauseCommand,
    resumeCommand,
    eventsCommand,
    portForwardCommand,
    bootCommand,
    relayCommand
  ]),
  // The state root the global flags name, for every command.
  Command.provide((flags) => StateStore.layer(rootDirOf(flags)))
)

export const cli = Command.run(command, { name: "runsc", version: RUNSC_VERSION })

/** Commands whose trailing arguments belong to the guest, and what comes before those. */
const guestCommands: Record<string, { readonly withValue: ReadonlyArray<string>; readonly flags: ReadonlyArray<string>; readonly positionals: number }> = {
  do: { withValue: doOptionsWithValue, flags: doFlags, positionals: 0 },
  exec: { withValue: execOptionsWithValue, flags: execFlags, positionals: 1 }
}

/**
 * `runsc do PROGRAM ARGS...` and `runsc exec ID CMD ARGS...` pass the guest's arguments
 * verbatim, dashes included: a `--` is inserted before the guest's command so that the parser
 * does not read the guest's flags as ours.
 */
export const separateGuestArgs = (argv: ReadonlyArray<string>): ReadonlyArray<string> => {
  const at = argv.findIndex((token, i) => i >= 2 && token in guestCommands)
  if (at < 0) return argv
  const { flags, positionals, withValue } = guestCommands[argv[at]!]!
  let i = at + 1
  let seen = 0
  while (i < argv.length) {
    const token = argv[i]!
    if (withValue.includes(token)) i += 2
    else if (flags.includes(token) || withValue.some((o) => token.startsWith(`${o}=`))) i += 1
    else if (token === "-h" || token === "--help" || token === "--") return argv
    else if (seen < positionals) {
      seen++
      i += 1
    } else break
  }
  return i < argv.length ? [...argv.slice(0, i), "--", ...argv.slice(i)] : argv
}
