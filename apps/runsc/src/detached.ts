/**
 * Starting a runsc process that outlives this CLI (the sandbox, a relay helper): detached, in its
 * own process group, with a sync channel on its fd 3 (a Unix socket pair, as Node makes the
 * pipes of a child's extra fds). The handshake on it:
 *
 * 1. the started process writes one line when it is ready (its control socket serves, its relay
 *    sockets listen);
 * 2. the starter does what makes the process known (e.g. writes the container's state file)
 *    and, when all of that succeeded, answers `ok` on the channel and closes it. Whatever
 *    failed, or was interrupted, kills the process instead.
 *
 * A process that must not outlive a starter who failed to register it (the sandbox) waits for
 * the answer (`awaitConfirmation`): the channel's end of file without `ok` means its starter
 * is gone, killed at any point of the handshake, and it exits by itself.
 */
import { Data, Duration, Effect, Exit, type Scope } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
/** A process's stdio as fds of this process: its fds 0, 1 and 2, unless a console's terminal. */
export type Stdio = readonly [number, number, number]

export class DetachedFailed extends Data.TaggedError("DetachedFailed")<{ readonly reason: string }> {}

const CONFIRMATION = "ok"

/** What a process says on the sync fd instead of its ready line when it cannot serve, before the reason. */
export const NOT_READY = "not ready: "

/**
 * The started process's side of step 1: its one line on the sync fd (no newline in `line`). A
 * starter that is gone waits for nothing, so failures are ignored. With `close`, the fd is
 * closed too (a process that does not wait for the confirmation).
 */
export const reportReady = (fd: number, line: string, options: { readonly close: boolean } = { close: true }): Effect.Effect<void> =>
  Effect.sync(() => {
    try {
      Fs.writeSync(fd, `${line}\n`)
    } catch {
      // Nobody reads the line.
    }
    if (options.close) {
      try {
        Fs.closeSync(fd)
      } catch {
        // Closed already.
      }
    }
  })

/**
 * The started process's side of step 2: whether its starter confirmed it (true) or went away
 * without doing so (false). The sync fd is closed once the answer is known.
 */
export const awaitConfirmation = (fd: number): Effect.Effect<boolean> =>
  Effect.async<boolean>((resume) => {
    let channel: Net.Socket
    try {
      channel = new Net.Socket({ fd, readable: true, writable: false })
    } catch {
      // Not a socket (a starter of another kind): there is nobody to wait for.
      resume(Effect.succeed(true))
      return
    }
    let seen = ""
    const done = (confirmed: boolean) => {
      channel.removeAllListeners()
      channel.on("error", () => {})
      channel.destroy()
      resume(Effect.succeed(confirmed))
    }
    channel.setEncoding("utf8")
    channel.on("data", (chunk: string) => {
      seen += chunk
      if (seen.includes("\n")) done(seen.split("\n")[0] === CONFIRMATION)
    })
    channel.once("end", () => done(false))
    channel.once("error", () => done(false))
    return Effect.sync(() => channel.destroy())
  })

/** A started process, ready: its pid and the line it wrote. */
export interface Detached {
  readonly pid: number
  readonly line: string
}

/**
 * Writes its own pid into each file given before `--` (cgroup.procs files), then execs the rest:
 * the process is in its cgroups from its first instruction, so every page it touches is charged
 * there (a process moved later leaves what it allocated before charged where it was).
 */
const ENTER_CGROUPS = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 126; shift; done; shift; exec "$@"'

/**
 * Runs this executable with `args` (after Node's `nodeArgs`); `stdio`: its fds 0-2, else ours;
 * its fd 3 is the channel it reports on; `extraFds` follow; `cgroups`: cgroup.procs files it
 * enters before it starts. Returns once the process is ready.
 * When the scope closes it is confirmed if the scope succeeded, and killed (SIGKILL) if it
 * failed or was interrupted — as it is when it is interrupted before it is ready.
 */
export const spawnDetached = (options: {
  readonly nodeArgs?: ReadonlyArray<string>
  readonly args: ReadonlyArray<string>
  readonly stdio?: Stdio
  readonly cgroups?: ReadonlyArray<string>
  /** More of this process's fds, given to it after the sync channel (its fd 3): as its fds 4, 5, …. */
  readonly extraFds?: ReadonlyArray<number>
}): Effect.Effect<Detached, DetachedFailed, Scope.Scope> =>
  Effect.acquireRelease(
    // Interruptible until ready (a time limit, a signal): the process is killed then.
    Effect.interruptible(Effect.async<Started, DetachedFailed>((resume) => {
      // The executable's real path: a confined Node may not look through the symlinks that led here.
      const node = [process.execPath, ...(options.nodeArgs ?? []), Fs.realpathSync(process.argv[1]!), ...options.args]
      const [file, ...argv] = options.cgroups === undefined || options.cgroups.length === 0
        ? node
        : ["/bin/sh", "-c", ENTER_CGROUPS, "runsc-enter-cgroups", ...options.cgroups, "--", ...node]
      const child = spawn(file!, argv, {
        detached: true,
        stdio: [...(options.stdio ?? (["inherit", "inherit", "inherit"] as const)), "pipe" as const, ...(options.extraFds ?? [])]
      })
      const channel = child.stdio[3] as Net.Socket
      // The process may close its end before the answer is written: that is its business.
      channel.on("error", () => {})
      let seen = ""
      const done = (result: Effect.Effect<Started, DetachedFailed>) => {
        child.removeAllListeners("exit")
        channel.removeAllListeners("data")
        channel.pause()
        child.unref()
        resume(result)
      }
      channel.on("data", (chunk) => {
        seen += chunk.toString()
        const end = seen.indexOf("\n")
        if (end >= 0) done(Effect.succeed({ detached: { pid: child.pid!, line: seen.slice(0, end) }, child, channel }))
      })
      child.once("error", (e) => {
        channel.destroy()
        done(Effect.fail(new DetachedFailed({ reason: e.message })))
      })
      child.once("exit", (code, signal) => {
        channel.destroy()
        done(Effect.fail(new DetachedFailed({ reason: `it exited (${signal ?? `code ${code}`}) before it was ready` })))
      })
      return Effect.sync(() => {
        channel.destroy()
        killProcess(child.pid)
        child.unref()
      })
    })),
    (started, exit) => Exit.isSuccess(exit) ? confirm(started) : abandon(started)
  ).pipe(Effect.map(({ detached }) => detached))

interface Started {
  readonly detached: Detached
  readonly child: ChildProcess
  readonly channel: Net.Socket
}

/** How long the starter waits for its answer to be written, or for a process it killed to end. */
const SETTLE_LIMIT = Duration.seconds(5)

/** Step 2 done: `ok` written (before this process may exit), and the channel closed. */
const confirm = ({ channel }: Started): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    channel.end(`${CONFIRMATION}\n`, () => resume(Effect.void))
  }).pipe(Effect.timeout(SETTLE_LIMIT), Effect.ignore, Effect.ensuring(Effect.sync(() => channel.destroy())))

/** The process killed, and awaited (bounded): when the starter reports a failure, it is gone. */
const abandon = ({ channel, child }: Started): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    channel.destroy()
    if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
    child.once("exit", () => resume(Effect.void))
    killProcess(child.pid)
  }).pipe(Effect.timeout(SETTLE_LIMIT), Effect.ignore)

const killProcess = (pid: number | undefined) => {
  if (pid === undefined || pid <= 0) return
  try {
    process.kill(pid, "SIGKILL")
  } catch {
    // Gone already.
  }
}
