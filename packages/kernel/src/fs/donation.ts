/**
 * Donations: a container's host trees (its root filesystem and bind-mount sources, as
 * `hostTreesOf` lists them) opened by the one who creates the container — the CLI, outside the
 * sandbox's confinement — and handed to its sandbox as descriptors (SCM_RIGHTS over a Unix
 * socket of the sandbox's), as gVisor's gofers hand the sentry theirs. The sandbox then serves
 * the container from those descriptors alone (host.ts resolves everything beneath them) and
 * never opens a path of that container: a sandbox serves containers created after it without
 * being allowed to read one more host path. The same way, `exec --preserve-fds` hands over the
 * open files its process is to start with.
 *
 * The protocol: the donor connects to the sandbox's donation socket and sends ONE message, a
 * token of its choosing with the descriptors, before it asks the sandbox over the control
 * socket to take the donation by that token. The message is queued by then, so the sandbox
 * takes it without waiting; messages queued for other tokens (concurrent creates) are kept for
 * their own requests, a bounded number of them.
 */
import { Effect, type Scope } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import { DonationFailed, type GoferUnavailable } from "../errors.js"
import { failed, goferCore } from "./goferCore.js"

/** Descriptors one donation may carry (Linux's limit on one SCM_RIGHTS message). */
export const MAX_DONATED_FDS = 253

/** Donations queued for tokens not claimed yet, at most: past it the oldest is closed. */
const MAX_UNCLAIMED = 16

/** Removes the file at `path` if one is there; what cannot be removed stays (a later listen replaces it). */
const removeFile = (path: string) => {
  try {
    Fs.rmSync(path, { force: true })
  } catch {
    // Left for the next sandbox of this id, whose listen fails on it only if it cannot remove it either.
  }
}

const errnoName = (result: number): string =>
  Object.entries(Os.constants.errno).find(([, n]) => n === -result)?.[0] ?? `errno ${-result}`

/**
 * Donated descriptors: a container's trees, in `hostTreesOf` order, or the open files a process
 * is to start with (--preserve-fds). Each is taken once (a tree by its mount), by whoever then
 * owns it; those never taken are closed by `close`.
 */
export class DonatedFds {
  constructor(private readonly fds: Array<number>, private readonly closeFd: (fd: number) => void) {}

  get count(): number {
    return this.fds.length
  }

  /** The descriptors not taken yet (still these ones'). */
  get held(): ReadonlyArray<number> {
    return this.fds.filter((fd) => fd >= 0)
  }

  /** The descriptor of tree `index`, now the caller's; undefined when there is none, or it was taken. */
  take(index: number): number | undefined {
    const fd = this.fds[index]
    if (fd === undefined || fd < 0) return undefined
    this.fds[index] = -1
    return fd
  }

  /** Every descriptor not taken, now the caller's. */
  takeAll(): ReadonlyArray<number> {
    const fds = this.held
    this.fds.fill(-1)
    return fds
  }

  close(): void {
    for (const fd of this.takeAll()) this.closeFd(fd)
  }
}

/**
 * The donor's side: the trees at `paths` opened as the sandbox would open them (the operator's
 * symlinks in a path followed, once; see host.ts), for the enclosing scope, which closes them.
 * Fails with the first path that cannot be opened, having closed those that were.
 */
export const openTrees = (
  paths: ReadonlyArray<string>
): Effect.Effect<DonatedFds, DonationFailed | GoferUnavailable, Scope.Scope> =>
  Effect.flatMap(goferCore, (core) =>
    Effect.acquireRelease(
      Effect.suspend(() => {
        if (paths.length > MAX_DONATED_FDS) {
          return Effect.fail(new DonationFailed({ reason: `${paths.length} host trees (root and bind mounts) are more than one donation carries (${MAX_DONATED_FDS})` }))
        }
        const fds: Array<number> = []
        for (const path of paths) {
          const fd = core.openRoot(path)
          if (failed(fd)) {
            for (const open of fds) core.close(open)
            return Effect.fail(new DonationFailed({ reason: `${path}: ${errnoName(fd)}` }))
          }
          fds.push(fd)
        }
        return Effect.succeed(new DonatedFds(fds, (fd) => core.close(fd)))
      }),
      (trees) => Effect.sync(() => trees.close())
    ))

/**
 * The donor's side: sends its descriptors `fds` with `token` to the donation socket at `socket`.
 * They stay the donor's (the message holds references of its own until it is taken).
 */
export const donate = (socket: string, token: string, fds: ReadonlyArray<number>): Effect.Effect<void, DonationFailed | GoferUnavailable> =>
  Effect.flatMap(goferCore, (core) =>
    Effect.suspend(() => {
      if (fds.length === 0 || fds.length > MAX_DONATED_FDS) {
        return Effect.fail(new DonationFailed({ reason: `${fds.length} descriptors: one donation carries 1 to ${MAX_DONATED_FDS}` }))
      }
      const result = core.donate(socket, token, fds)
      if (!failed(result)) return Effect.void
      // Only creates that never claimed theirs (or someone else with access to the state root) fill it.
      const why = -result === Os.constants.errno.EAGAIN ? "its queue of donations not yet taken is full (128)" : errnoName(result)
      return Effect.fail(new DonationFailed({ reason: `${socket}: ${why}` }))
    }))

/** The donor's side: `trees` sent as `donate` sends them, then closed here. */
export const donateTrees = (socket: string, token: string, trees: DonatedFds): Effect.Effect<void, DonationFailed | GoferUnavailable> =>
  Effect.ensuring(Effect.suspend(() => donate(socket, token, trees.held)), Effect.sync(() => trees.close()))

/** The sandbox's side: where donations arrive, and how one is claimed. */
export interface DonationPoint {
  /** The descriptors donated with `token`; DonationFailed when no such donation is queued. */
  readonly claim: (token: string) => Effect.Effect<DonatedFds, DonationFailed>
}

/**
 * Listens for donations at `path` (a stale file there is replaced: the caller holds the
 * sandbox's control socket, so no live sandbox owns it) for the enclosing scope, which closes
 * the socket, removes its file and closes what was donated and never claimed. A sandbox that
 * cannot listen (a full disk, no gofer core) still serves its root container: only claims fail,
 * saying why.
 */
export const listenForDonations = (path: string): Effect.Effect<DonationPoint, never, Scope.Scope> =>
  Effect.gen(function*() {
    const unclaimed = new Map<string, DonatedFds>()
    const keep = (token: string, trees: DonatedFds) => {
      unclaimed.get(token)?.close()
      unclaimed.delete(token)
      unclaimed.set(token, trees)
      if (unclaimed.size > MAX_UNCLAIMED) {
        const [oldest, old] = unclaimed.entries().next().value as [string, DonatedFds]
        old.close()
        unclaimed.delete(oldest)
      }
    }
    const listening = yield* Effect.either(Effect.flatMap(goferCore, (core) =>
      Effect.acquireRelease(
        Effect.suspend(() => {
          removeFile(path)
          const fd = core.listenDonations(path)
          return failed(fd) ? Effect.fail(new DonationFailed({ reason: `the sandbox could not listen at ${path}: ${errnoName(fd)}` })) : Effect.succeed({ core, fd })
        }),
        ({ fd }) =>
          Effect.sync(() => {
            core.close(fd)
            removeFile(path)
            for (const trees of unclaimed.values()) trees.close()
            unclaimed.clear()
          })
      )))
    if (listening._tag === "Left") {
      const why = listening.left
      // Not a warning: the sandbox's stderr is its container's. A create that needs it says why.
      yield* Effect.logDebug(`${why.reason}; containers cannot be created in this sandbox later`)
      return { claim: () => Effect.fail(new DonationFailed({ reason: why.reason })) }
    }
    const { core, fd } = listening.right
    return {
      claim: (token) =>
        Effect.suspend(() => {
          for (;;) {
            const kept = unclaimed.get(token)
            if (kept !== undefined) {
              unclaimed.delete(token)
              return Effect.succeed(kept)
            }
            const taken = core.takeDonation(fd)
            if (failed(taken)) return Effect.fail(new DonationFailed({ reason: `no host trees were donated with token ${token}` }))
            keep(taken[0], new DonatedFds(taken[1], (d) => core.close(d)))
          }
        })
    }
  })
