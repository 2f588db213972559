/** The command tree and its argument handling. */
import { Command } from "@effect/cli"
import { bootCommand } from "./commands/boot.js"
import {
  createCommand,
  deleteCommand,
  killCommand,
  listCommand,
  psCommand,
  startCommand,
  stateCommand,
  waitCommand
} from "./commands/container.js"
import { doCommand, doFlags, doOptionsWithValue } from "./commands/do.js"
import { runCommand } from "./commands/run.js"
import { specCommand } from "./commands/spec.js"
import { rootCommand } from "./root.js"

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
    bootCommand
  ])
)

export const cli = Command.run(command, { name: "runsc", version: "0.1.0" })

/**
 * `runsc do PROGRAM ARGS...` passes ARGS to the guest verbatim, dashes included: a `--` is
 * inserted before PROGRAM so that the parser does not read the guest's flags as ours.
 */
export const separateGuestArgs = (argv: ReadonlyArray<string>): ReadonlyArray<string> => {
  const at = argv.indexOf("do", 2)
  if (at < 0) return argv
  let i = at + 1
  while (i < argv.length) {
    const token = argv[i]!
    if (doOptionsWithValue.includes(token)) i += 2
    else if (doFlags.includes(token) || doOptionsWithValue.some((o) => token.startsWith(`${o}=`))) i += 1
    else if (token === "-h" || token === "--help" || token === "--") return argv
    else break
  }
  return i < argv.length ? [...argv.slice(0, i), "--", ...argv.slice(i)] : argv
}
