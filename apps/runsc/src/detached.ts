/**
 * Starting a runsc process that outlives this CLI (the sandbox, a relay helper): detached, in its
 * own process group, and awaited until it writes its first line on fd 3 (a pipe), which says it
 * is ready. Interrupted (a time limit), the half-started process is killed.
 */
import { Data, Effect } from "effect"
import { spawn } from "node:child_process"
import * as Fs from "node:fs"
/** A process's stdio as fds of this process: its fds 0, 1 and 2, unless a console's terminal. */
export type Stdio = readonly [number, number, number]

export class DetachedFailed extends Data.TaggedError("DetachedFailed")<{ readonly reason: string }> {}

/**
 * The started process's side of the handshake: its one line on the sync fd (no newline in
 * `line`), and the fd closed. A starter that is gone waits for nothing, so failures are ignored.
 */
export const reportReady = (fd: number, line: string): Effect.Effect<void> =>
  Effect.sync(() => {
    try {
      Fs.writeSync(fd, `${line}\n`)
      Fs.closeSync(fd)
    } catch {
      // Nobody reads the line.
    }
  })

/** Runs this executable with `args` (after Node's `nodeArgs`); `stdio`: its fds 0-2, else ours. */
export const spawnDetached = (options: {
  readonly nodeArgs?: ReadonlyArray<string>
  readonly args: ReadonlyArray<string>
  readonly stdio?: Stdio
}): Effect.Effect<{ readonly pid: number; readonly line: string }, DetachedFailed> =>
  Effect.async((resume) => {
    // The executable's real path: a confined Node may not look through the symlinks that led here.
    const argv = [...(options.nodeArgs ?? []), Fs.realpathSync(process.argv[1]!), ...options.args]
    const child = spawn(process.execPath, argv, {
      detached: true,
      stdio: options.stdio === undefined ? ["inherit", "inherit", "inherit", "pipe"] : [...options.stdio, "pipe"]
    })
    const sync = child.stdio[3] as NodeJS.ReadableStream
    let seen = ""
    const done = (result: Effect.Effect<{ readonly pid: number; readonly line: string }, DetachedFailed>) => {
      child.removeAllListeners("exit")
      sync.removeAllListeners("data")
      ;(sync as unknown as { destroy(): void }).destroy()
      child.unref()
      resume(result)
    }
    sync.on("data", (chunk) => {
      seen += chunk.toString()
      const end = seen.indexOf("\n")
      if (end >= 0) done(Effect.succeed({ pid: child.pid!, line: seen.slice(0, end) }))
    })
    child.once("error", (e) => done(Effect.fail(new DetachedFailed({ reason: e.message }))))
    child.once("exit", (code, signal) =>
      done(Effect.fail(new DetachedFailed({ reason: `it exited (${signal ?? `code ${code}`}) before it was ready` }))))
    return Effect.sync(() => {
      child.kill("SIGKILL")
      child.unref()
    })
  })
