/**
 * A container's lock under the state root (`<id>.lock`), through @effect/platform's FileSystem.
 *
 * A lock is a symbolic link whose target names its holder (pid and start time): made in one
 * atomic, exclusive step, it is never seen without its holder, and takes no data block on a full
 * disk. A lock whose holder is gone is stale; so is a link that names no holder (no runsc makes
 * one), and anything else found at that path (an empty file left by an earlier version) once it
 * is older than a holder ever keeps one. Stale locks are broken under a second lock,
 * `<id>.lock.break`, so that two CLIs never both break one and then take the lock together.
 *
 * Waiting for a lock does not poll: the waiter watches the state directory and tries again when
 * the lock's name changes there (its holder removed it). A holder that dies holding it removes
 * nothing, and a process's death is no event in a directory, so the waiter also looks again on
 * a slow schedule (10 ms doubling to 250 ms): that finds a dead holder, an old file, and a release
 * that fell before the watch began. Where the platform cannot watch (no inotify instance left
 * for this user), that schedule alone finds the lock free.
 */
import { FileSystem } from "@effect/platform"
import type { PlatformError } from "@effect/platform/Error"
import { Clock, Duration, Effect, Option, Queue, Schedule, Schema, type Scope, Stream } from "effect"
import * as Path from "node:path"
import { isAlive, pidExists, type ProcessIdentity, thisProcess } from "./hostProcess.js"

/**
 * A container's lock could not be taken: another CLI `held` it for too long, or the lock
 * itself could not be made (a full disk).
 */
export class LockUnavailable extends Schema.TaggedError<LockUnavailable>()("LockUnavailable", {
  path: Schema.String,
  reason: Schema.String,
  held: Schema.Boolean
}) {
  override get message(): string {
    return `${this.path}: ${this.reason}`
  }
}

/** How long a CLI waits for a container's lock (each holder keeps it for milliseconds). */
const LOCK_WAIT = Duration.seconds(10)
/** A lock whose holder cannot be told (not one this CLI makes) is stale once this old. */
const UNKNOWN_LOCK_AGE_MS = 2_000
/** When a waiter looks again without being woken (see the header). */
const RECHECKS = Schedule.exponential("10 millis").pipe(Schedule.union(Schedule.spaced("250 millis")))

/** Why a file operation failed, as the system said it (e.g. "ENOSPC: no space left on device, ..."). */
export const reasonOf = (e: PlatformError): string => e.description ?? e.message

const lockTarget = (holder: ProcessIdentity) => `runsc-lock:${holder.pid}:${holder.start}`

const holderOf = (target: string): ProcessIdentity | undefined => {
  const match = /^runsc-lock:(\d+):(\d*)$/.exec(target)
  return match === null ? undefined : { pid: Number(match[1]), start: match[2]! }
}

/** What is at a lock's path. */
type Found =
  | { readonly _tag: "Nothing" }
  | { readonly _tag: "Lock"; readonly holder: ProcessIdentity }
  | { readonly _tag: "ForeignLink" }
  | { readonly _tag: "Other"; readonly mtimeMs: number }

const inspect = (fs: FileSystem.FileSystem, path: string): Effect.Effect<Found> =>
  fs.readLink(path).pipe(
    Effect.map((target): Found => {
      const holder = holderOf(target)
      return holder === undefined ? { _tag: "ForeignLink" } : { _tag: "Lock", holder }
    }),
    Effect.catchAll((e) =>
      e._tag === "SystemError" && e.reason === "NotFound"
        ? Effect.succeed<Found>({ _tag: "Nothing" })
        // Not a link (readlink says EINVAL): its age decides.
        : fs.stat(path).pipe(
          Effect.map((info): Found => ({ _tag: "Other", mtimeMs: Option.match(info.mtime, { onNone: () => 0, onSome: (d) => d.getTime() }) })),
          Effect.orElseSucceed((): Found => ({ _tag: "Nothing" }))
        ))
  )

const isStale = (found: Found, now: number): boolean => {
  switch (found._tag) {
    case "Nothing":
      return false
    case "Lock":
      return found.holder.start === "" ? !pidExists(found.holder.pid) : !isAlive(found.holder.pid, found.holder.start)
    case "ForeignLink":
      return true
    case "Other":
      return now - found.mtimeMs > UNKNOWN_LOCK_AGE_MS
  }
}

/** Whether what is at `lock` is a lock nobody holds any more (false when nothing is there). */
const isStaleLock = (fs: FileSystem.FileSystem, lock: string, now: number) => Effect.map(inspect(fs, lock), (found) => isStale(found, now))

/** Takes `lock` for `holder`: "taken", "held" (by someone), or why it cannot be taken. */
const tryLock = (fs: FileSystem.FileSystem, lock: string, holder: ProcessIdentity): Effect.Effect<"taken" | "held", PlatformError> =>
  fs.symlink(lockTarget(holder), lock).pipe(
    Effect.as("taken" as const),
    Effect.catchIf((e) => e._tag === "SystemError" && e.reason === "AlreadyExists", () => Effect.succeed("held" as const))
  )

/** Releases `lock` if `holder` holds it. */
const unlock = (fs: FileSystem.FileSystem, lock: string, holder: ProcessIdentity): Effect.Effect<void> =>
  fs.readLink(lock).pipe(
    Effect.flatMap((target) => (target === lockTarget(holder) ? fs.remove(lock, { force: true }) : Effect.void)),
    // Gone already.
    Effect.ignore
  )

/**
 * Removes the stale `lock` under its breaker's lock (the second check is made holding it):
 * "broken" when it is gone, "busy" when another CLI is breaking it, or why the breaker cannot
 * be made.
 */
const breakStaleLock = (fs: FileSystem.FileSystem, lock: string, me: ProcessIdentity, now: number) =>
  Effect.gen(function*() {
    const breaker = `${lock}.break`
    if ((yield* tryLock(fs, breaker, me)) === "held") {
      // Held for a few system calls at most: one still there was left by a breaker that died.
      if (yield* isStaleLock(fs, breaker, now)) yield* Effect.ignore(fs.remove(breaker, { force: true }))
      return "busy" as const
    }
    return yield* Effect.gen(function*() {
      if (yield* isStaleLock(fs, lock, now)) yield* fs.remove(lock, { force: true })
      return "broken" as const
    }).pipe(Effect.ensuring(unlock(fs, breaker, me)))
  })

/** Removes `lock` if nobody holds it any more (what a removal that could not take it leaves). */
export const removeIfStale = (fs: FileSystem.FileSystem, lock: string): Effect.Effect<void> =>
  Effect.gen(function*() {
    if (yield* isStaleLock(fs, lock, yield* Clock.currentTimeMillis)) yield* Effect.ignore(fs.remove(lock, { force: true }))
  })

/** The next change of `lock`'s name in its directory, each time it is awaited (for the enclosing scope). */
const changesOf = (fs: FileSystem.FileSystem, lock: string): Effect.Effect<Effect.Effect<void>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const changed = yield* Queue.sliding<void>(1)
    const name = Path.basename(lock)
    yield* fs.watch(Path.dirname(lock)).pipe(
      Stream.filter((event) => Path.basename(event.path) === name),
      Stream.runForEach(() => Queue.offer(changed, undefined)),
      // A directory that cannot be watched (Node's watcher throws, which the platform turns into
      // a defect, when this user has no inotify instance left): the re-checks stand in.
      Effect.catchAllCause(() => Effect.void),
      // Forked from a take's uninterruptible region: the watcher itself must stop when its scope closes.
      Effect.interruptible,
      Effect.forkScoped
    )
    return Queue.take(changed)
  })

/**
 * Runs `f` holding `lock`. Each attempt (a few system calls) is uninterruptible, so that an
 * interrupted take never leaves a lock made and not released; the waits between attempts are
 * interruptible.
 */
export const withLock = <A, E, R>(
  fs: FileSystem.FileSystem,
  lock: string,
  f: Effect.Effect<A, E, R>
): Effect.Effect<A, E | LockUnavailable, R> =>
  Effect.uninterruptibleMask((restore) => {
    const me = thisProcess()
    const unavailable = (reason: string) => new LockUnavailable({ path: lock, reason, held: false })
    /** Takes the lock if it is free or stale: whether it did. */
    const attempt: Effect.Effect<boolean, LockUnavailable> = Effect.gen(function*() {
      for (;;) {
        const taken = yield* Effect.mapError(tryLock(fs, lock, me), (e) => unavailable(reasonOf(e)))
        if (taken === "taken") return true
        const now = yield* Clock.currentTimeMillis
        if (!(yield* isStaleLock(fs, lock, now))) return false
        const broken = yield* Effect.mapError(breakStaleLock(fs, lock, me, now), (e) => unavailable(`stale, and cannot be broken: ${reasonOf(e)}`))
        if (broken === "busy") return false
      }
    })
    const take = Effect.gen(function*() {
      const deadline = (yield* Clock.currentTimeMillis) + Duration.toMillis(LOCK_WAIT)
      if (yield* attempt) return
      yield* Effect.scoped(Effect.gen(function*() {
        const changed = yield* changesOf(fs, lock)
        const recheck = yield* Schedule.driver(RECHECKS)
        while (!(yield* attempt)) {
          if ((yield* Clock.currentTimeMillis) > deadline) {
            const found = yield* inspect(fs, lock)
            const by = found._tag === "Lock" ? ` by pid ${found.holder.pid}` : ""
            return yield* new LockUnavailable({ path: lock, reason: `held for too long${by}`, held: true })
          }
          yield* restore(Effect.raceFirst(changed, Effect.ignore(recheck.next(undefined))))
        }
      }))
    })
    return Effect.zipRight(take, restore(f).pipe(Effect.ensuring(unlock(fs, lock, me))))
  })
