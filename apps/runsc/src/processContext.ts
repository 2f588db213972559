/**
 * What the runsc process hands to its commands: the status it exits with once every command's
 * scope has closed (the guest's status for run/do — code, or 128 + signal — and 0 for commands
 * that succeed), and the guest worker threads its executable started before the CLI loaded.
 */
import type { StartingThread } from "@runsc/kernel"
import { Context, Effect, Ref } from "effect"

export class ExitCode extends Context.Tag("runsc/ExitCode")<ExitCode, Ref.Ref<number>>() {}

export const setExitCode = (code: number) => Effect.flatMap(ExitCode, (ref) => Ref.set(ref, code))

export class StartedThreads extends Context.Tag("runsc/StartedThreads")<StartedThreads, ReadonlyArray<StartingThread>>() {}
