/** The `runsc` parent command: it carries the global flags that subcommands read. */
import { Command } from "@effect/cli"
import { globalOptions } from "./globals.js"

export const rootCommand = Command.make("runsc", globalOptions)
