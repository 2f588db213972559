/**
 * The status the CLI process exits with once every command's scope has closed: the guest's
 * status for run/do (code, or 128 + signal), 0 for commands that succeed.
 */
import { Context, Effect, Ref } from "effect"

export class ExitCode extends Context.Tag("runsc/ExitCode")<ExitCode, Ref.Ref<number>>() {}

export const setExitCode = (code: number) => Effect.flatMap(ExitCode, (ref) => Ref.set(ref, code))
