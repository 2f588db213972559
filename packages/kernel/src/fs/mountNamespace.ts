/**
 * A container's mount namespace, built from its OCI spec: the root filesystem and the mounts
 * the sentry serves at the spec's mount points. Each container gets its own, so no two see
 * each other's changes.
 *
 * Invariant: whatever the namespace holds is released by the scope it is made in, host
 * descriptors and the sandbox's memory alike (what its in-memory trees hold goes back to the
 * memory account when that scope closes). Whoever makes it closes that scope only once no
 * process uses the namespace any more (a container's scope does: its task set, made after the
 * namespace, kills and reaps every process first).
 */
import { isBindMount, isReadOnlyMount, type Spec } from "@runsc/spec"
import { Effect, type Scope } from "effect"
import * as Path from "node:path"
import { InvalidMount, InvalidRoot } from "../errors.js"
import type { MemoryAccount } from "../memoryAccount.js"
import type { DonatedFds } from "./donation.js"
import { hostMount, hostRoot } from "./host.js"
import type { HostFdBudget } from "./hostFds.js"
import type { HostSocketFiles } from "./hostSocketFiles.js"
import { overlay } from "./overlay.js"
import { Dentry } from "./resolve.js"
import type { SyntheticMount } from "./synthetic.js"
import { releaseMemory, Tmpfs } from "./tmpfs.js"

export interface MountNamespaceArgs {
  readonly spec: Spec
  /** The bundle's directory: relative bind-mount sources are relative to it. */
  readonly bundleDir: string
  /** The host directory of the container's root filesystem. */
  readonly rootPath: string
  /**
   * Its host trees, donated by its creator (donation.ts), in `hostTreesOf` order: with them, no
   * host path of the container is ever opened here — a tree missing from them fails its mount.
   */
  readonly trees?: DonatedFds
  /** The container's memory account (MemoryAccount.child), which its in-memory files charge; default: the sandbox's. */
  readonly account?: MemoryAccount
}

export interface MountNamespace {
  /** The container's root directory. */
  readonly root: Dentry
  /** What the sentry serves where the spec mounts it (procfs, devfs, tmpfs, bind mounts). */
  readonly mounts: ReadonlyArray<SyntheticMount>
}

export type MakeMountNamespace = (args: MountNamespaceArgs) => Effect.Effect<MountNamespace, InvalidRoot | InvalidMount, Scope.Scope>

/** Mount types of Linux's own that no WASI guest can use: left out of the container. */
const notDonated = "its creator handed the sandbox no descriptor of it"

const linuxOnlyFilesystems: ReadonlySet<string> = new Set(["sysfs", "devpts", "mqueue", "cgroup", "cgroup2"])

/**
 * "65536k" → 67108864; null when not a size; "too large" past what a number counts exactly
 * (2^53 bytes), where the limit would silently be some other number.
 */
const parseSize = (text: string): number | null | "too large" => {
  const match = /^(\d+)([kmg]?)$/i.exec(text)
  if (match === null) return null
  const unit = { "": 1n, k: 1024n, m: 1024n ** 2n, g: 1024n ** 3n }[match[2]!.toLowerCase() as "" | "k" | "m" | "g"]
  const bytes = BigInt(match[1]!) * unit
  return bytes > BigInt(Number.MAX_SAFE_INTEGER) ? "too large" : Number(bytes)
}

/**
 * Mount namespaces of one sandbox, whose in-memory filesystems count against `account` and
 * whose host trees hold descriptors of `hostFds`; each tmpfs and overlay gets the next
 * instance number (its device number).
 */
export const makeMountNamespaces = (sandbox: MemoryAccount, hostFds: HostFdBudget, hostSockets: HostSocketFiles): MakeMountNamespace => {
  let instances = 0

  /**
   * The container's root filesystem: the bundle's root through the gofer, under a copy-on-write
   * overlay that keeps the container's changes in the sandbox's memory, unless the spec asks for
   * a read-only root.
   */
  const openRoot = (spec: Spec, rootPath: string, trees: DonatedFds | undefined, account: MemoryAccount): Effect.Effect<Dentry, InvalidRoot, Scope.Scope> =>
    Effect.suspend(() => {
      // Numbered whether or not the root gets an overlay, so numbers do not depend on it.
      const instance = ++instances
      const donated = trees?.take(0)
      if (trees !== undefined && donated === undefined) return Effect.fail(new InvalidRoot({ path: rootPath, reason: notDonated }))
      return hostRoot(rootPath, { fds: hostFds, sockets: hostSockets, ...(donated !== undefined ? { donated } : {}) }).pipe(
        Effect.flatMap((lower) => spec.root?.readonly === true ? Effect.succeed(lower) : overlay(lower, { instance, account })),
        Effect.map((inode) => Dentry.root(inode)),
        Effect.mapError((e) => new InvalidRoot({ path: rootPath, reason: e.message }))
      )
    })

  /**
   * The filesystems the sentry serves, where the spec mounts them: procfs at its mounts of type
   * "proc"; devfs where it mounts a tmpfs or devtmpfs at /dev (the devices a runtime puts there);
   * a new tmpfs at its other tmpfs mounts, with `size=` (bytes, or k/m/g; default half of the
   * account's memory) as its limit, `mode=` (octal) for its root, and its data counted in the
   * container's memory account (`account`); the host directory or file of a bind mount (source absolute or
   * relative to the bundle), served by the gofer like the root: read-only with `ro`, else the
   * guest's changes reach the host directory or file.
   * The pseudo-filesystems runc's and containerd's specs mount for Linux programs (sysfs,
   * devpts, mqueue, cgroup) are left out: no WASI guest can use them. Any other type (nfs,
   * ext4, overlay, …) is an InvalidMount: the sandbox cannot serve it, and a container that
   * counts on it must not start without it.
   */
  const syntheticMountsOf = (
    spec: Spec,
    bundleDir: string,
    trees: DonatedFds | undefined,
    account: MemoryAccount
  ): Effect.Effect<ReadonlyArray<SyntheticMount>, InvalidMount, Scope.Scope> => {
    // The place of the next bind mount's tree among the donated ones (the root's is 0).
    let tree = 0
    return Effect.forEach(spec.mounts ?? [], (m): Effect.Effect<ReadonlyArray<SyntheticMount>, InvalidMount, Scope.Scope> => {
      const path = Path.posix.normalize(m.destination).replace(/(.)\/$/, "$1")
      if (m.type === "proc") return Effect.succeed([{ path, fs: "proc" }])
      if (path === "/dev" && (m.type === "tmpfs" || m.type === "devtmpfs")) return Effect.succeed([{ path, fs: "dev" }])
      if (isBindMount(m)) {
        if (m.source === undefined) return Effect.fail(new InvalidMount({ destination: m.destination, reason: "a bind mount needs a source" }))
        const source = Path.resolve(bundleDir, m.source)
        const donated = trees?.take(++tree)
        if (trees !== undefined && donated === undefined) {
          return Effect.fail(new InvalidMount({ destination: m.destination, reason: `${source}: ${notDonated}` }))
        }
        const options = { writable: !isReadOnlyMount(m), fds: hostFds, sockets: hostSockets, ...(donated !== undefined ? { donated } : {}) }
        return hostMount(source, options).pipe(
          Effect.map((root) => [{ path, fs: "bind", root, source, readOnly: isReadOnlyMount(m) }] as const),
          Effect.mapError((e) => new InvalidMount({ destination: m.destination, reason: `${source}: ${e.message}` }))
        )
      }
      if (m.type !== undefined && linuxOnlyFilesystems.has(m.type)) {
        return Effect.as(Effect.logDebug(`mount at ${m.destination} (${m.type}) left out: no WASI guest can use it`), [])
      }
      if (m.type !== "tmpfs") {
        const reason = m.type === undefined ? "a mount needs a type (or the bind option)" : `type ${m.type} cannot be served by the sandbox`
        return Effect.fail(new InvalidMount({ destination: m.destination, reason }))
      }
      return Effect.gen(function*() {
        const options = new Map((m.options ?? []).map((o) => [o.split("=")[0]!, o.slice(o.indexOf("=") + 1)] as const))
        const size = options.get("size")
        const limit = size === undefined ? undefined : parseSize(size)
        if (limit === null) return yield* new InvalidMount({ destination: m.destination, reason: `size=${size} is not a number of bytes (k, m or g suffixes allowed)` })
        if (limit === "too large") return yield* new InvalidMount({ destination: m.destination, reason: `size=${size} is beyond any size the sandbox can count` })
        const modeText = options.get("mode")
        const mode = modeText === undefined ? undefined : /^[0-7]{1,4}$/.test(modeText) ? parseInt(modeText, 8) : null
        if (mode === null) return yield* new InvalidMount({ destination: m.destination, reason: `mode=${modeText} is not an octal mode` })
        // Without size=, half the sandbox's memory, as Linux sizes a tmpfs by default.
        const root = yield* Tmpfs.make({ instance: ++instances, limit: limit ?? Math.floor(account.total / 2), account, ...(mode !== undefined ? { mode } : {}) })
        return [{ path, fs: "tmpfs", root }] as const
      })
    }).pipe(Effect.map((lists) => lists.flat()))
  }

  return ({ account = sandbox, bundleDir, rootPath, spec, trees }) =>
    Effect.gen(function*() {
      const root = yield* openRoot(spec, rootPath, trees, account)
      const mounts = yield* syntheticMountsOf(spec, bundleDir, trees, account)
      // What the container's in-memory files hold goes back to the sandbox when it is destroyed.
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          releaseMemory(root.inode)
          for (const mount of mounts) if (mount.fs === "tmpfs") releaseMemory(mount.root)
        })
      )
      return { root, mounts }
    })
}
