/**
 * `--pid-file`, written as runc writes it: into a file aside in the same directory, renamed over
 * the path, so that a reader (containerd) never sees half a pid, and whatever is at the path — a
 * FIFO included — is replaced, never opened and waited on. The file aside is made before
 * anything is started, so that a path that cannot be written fails the command before it has
 * anything to undo; it is removed when the command fails.
 */
import { Effect, type Scope } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { CannotWrite } from "./errors.js"

export interface PidFileAside {
  /** Writes `text` aside and renames it over the pid file. */
  readonly write: (text: string) => Effect.Effect<void, CannotWrite>
}

export const preparePidFile = (path: string): Effect.Effect<PidFileAside, CannotWrite, Scope.Scope> => {
  const target = Path.resolve(path)
  const aside = Path.join(Path.dirname(target), `.${Path.basename(target)}.${process.pid}.tmp`)
  const fail = (e: unknown) => new CannotWrite({ path, reason: (e as Error).message })
  return Effect.acquireRelease(
    Effect.try({
      try: () => {
        // One left by an earlier process of this pid is ours to replace.
        Fs.rmSync(aside, { force: true })
        Fs.closeSync(Fs.openSync(aside, "wx", 0o644))
      },
      catch: fail
    }),
    // Renamed away when written; otherwise not wanted.
    () => Effect.sync(() => Fs.rmSync(aside, { force: true }))
  ).pipe(
    Effect.as({
      write: (text: string) =>
        Effect.try({
          try: () => {
            Fs.writeFileSync(aside, text)
            Fs.renameSync(aside, target)
          },
          catch: fail
        })
    })
  )
}
