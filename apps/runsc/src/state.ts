/**
 * The CLI's state: one JSON file per container under `--root`, which is how a stateless
 * `runsc <cmd>` finds the sandbox process and control socket of a container. A service
 * (`StateStore`) whose every file operation goes through @effect/platform's FileSystem: the CLI
 * provides Node's, a test may provide its own.
 *
 * Invariants:
 * - A file is replaced atomically (written aside, then renamed; the file aside is removed when
 *   the write fails), so a reader sees the old record or the new one, never half.
 * - Every read-modify-write of one container's files holds that container's lock (see
 *   containerLock.ts); there is no lock of the whole root, and no lock is held while a sandbox
 *   boots. A lock left by a CLI that died is broken by the next one that wants it.
 * - A create first reserves its id (a record in phase `creating` naming the creating CLI), boots
 *   the sandbox holding no lock, then commits. A reservation whose creator is gone is stale: it
 *   names no container, and whoever finds it removes it.
 * - A socket file is removed only once its sandbox is gone (a sandbox removes its own by name as
 *   it exits; one left by a killed sandbox is replaced by the next sandbox of that id).
 * - Every path built here is made from a valid container id (a defect otherwise), and a record
 *   is only believed for the id its file is named after.
 * - The status is never trusted from the file alone: a container whose sandbox process is gone
 *   is `stopped`.
 */
import { FileSystem } from "@effect/platform"
import { donationSocketOf, MAX_SOCKET_PATH } from "@runsc/control"
import { isValidContainerId } from "@runsc/spec"
import { Context, Effect, Either, Layer, Schema } from "effect"
import * as Path from "node:path"
import { Confinement, type SandboxFiles } from "./confinement.js"
import { LockUnavailable, reasonOf, removeIfStale, withLock } from "./containerLock.js"
import { CannotWrite } from "./errors.js"
import { isAlive, type ProcessIdentity, sameProcess } from "./hostProcess.js"

export { LockUnavailable } from "./containerLock.js"

export const ContainerRecord = Schema.Struct({
  id: Schema.String,
  /** The bundle directory (absolute). */
  bundle: Schema.String,
  /** The host pid of the sandbox process (`runsc boot`); 0 while `creating`. */
  sandboxPid: Schema.Number,
  /**
   * When that process started (/proc stat's starttime): a pid reused by another process after
   * the sandbox died is not the sandbox — it is never signalled as one.
   */
  sandboxStart: Schema.String,
  /** The sandbox's control socket. */
  socket: Schema.String,
  /**
   * What the CLI did: `creating` (the id is reserved by `createdBy`, which is booting the
   * sandbox), `created` (registered; from here the sandbox says what became of it). `started`
   * and `start-failed` were written by earlier versions, whose sandboxes may still run.
   */
  phase: Schema.Literal("creating", "created", "started", "start-failed"),
  /** The `create` that made this record (absent in records of earlier versions). */
  createdBy: Schema.optional(Schema.Struct({ pid: Schema.Number, start: Schema.String })),
  createdAt: Schema.String,
  annotations: Schema.Record({ key: Schema.String, value: Schema.String }),
  /** For a sub-container: the id of the root container whose sandbox it runs in. */
  sandboxId: Schema.optional(Schema.String),
  /** What the sandbox process may touch; absent when it runs unconfined (--unconfined). */
  confinement: Schema.optional(Confinement),
  /** The cgroup directories its create made for the sandbox (linux.cgroupsPath), removed by delete. */
  cgroups: Schema.optional(Schema.Array(Schema.String))
})
export type ContainerRecord = typeof ContainerRecord.Type

export class ContainerUnknown extends Schema.TaggedError<ContainerUnknown>()("ContainerUnknown", { id: Schema.String }) {
  override get message(): string {
    return `container ${JSON.stringify(this.id)} does not exist`
  }
}

export class ContainerIdAmbiguous extends Schema.TaggedError<ContainerIdAmbiguous>()("ContainerIdAmbiguous", {
  prefix: Schema.String,
  matches: Schema.Array(Schema.String)
}) {
  override get message(): string {
    return `container id prefix ${JSON.stringify(this.prefix)} is ambiguous: ${this.matches.join(", ")}`
  }
}

export class StateCorrupt extends Schema.TaggedError<StateCorrupt>()("StateCorrupt", { id: Schema.String, reason: Schema.String }) {
  override get message(): string {
    return `state of container ${this.id} is corrupt: ${this.reason}`
  }
}

export class ContainerIdInUse extends Schema.TaggedError<ContainerIdInUse>()("ContainerIdInUse", { id: Schema.String }) {
  override get message(): string {
    return `container with id ${JSON.stringify(this.id)} already exists`
  }
}

export class ContainerIdTooLong extends Schema.TaggedError<ContainerIdTooLong>()("ContainerIdTooLong", {
  id: Schema.String,
  root: Schema.String,
  max: Schema.Number
}) {
  override get message(): string {
    return `container id ${JSON.stringify(this.id)} is too long for the state root ${this.root}: at most ${this.max} characters fit ` +
      `(a file name is at most 255 bytes, a control socket's path at most ${MAX_SOCKET_PATH} bytes)`
  }
}

/** A create found, when it came to register its container, that its reservation had been deleted. */
export class CreateAbandoned extends Schema.TaggedError<CreateAbandoned>()("CreateAbandoned", { id: Schema.String }) {
  override get message(): string {
    return `container ${JSON.stringify(this.id)} was deleted while it was being created`
  }
}

const SUFFIX = ".state.json"
/** The longest name made here from an id: its record's file aside (the pid has at most 7 digits). */
const LONGEST_SUFFIX = `${SUFFIX}.4194304.tmp`.length

const decode = Schema.decodeUnknownEither(Schema.parseJson(ContainerRecord))

/** The state root of the CLI's containers: what `StateStore` provides. */
export class StateDirectory {
  constructor(readonly root: string, private readonly fs: FileSystem.FileSystem) {}

  /** A path for one of container `id`'s files: never built from anything but a valid id. */
  private pathOf(id: string, suffix: string): string {
    if (!isValidContainerId(id)) throw new Error(`BUG: invalid container id ${JSON.stringify(id)} reached the state root`)
    return Path.join(this.root, `${id}${suffix}`)
  }

  /** The control socket of the sandbox whose root container is `id`. */
  socketOf(id: string): string {
    return this.pathOf(id, ".sock")
  }

  private fileOf(id: string): string {
    return this.pathOf(id, SUFFIX)
  }

  private exitFileOf(id: string): string {
    return this.pathOf(id, ".exit")
  }

  private lockOf(id: string): string {
    return this.pathOf(id, ".lock")
  }

  /**
   * The text of one of this CLI's own files under the state root: only ever a regular file made
   * here, so a symlink in its place is not followed (someone planted it) and, like a FIFO (whose
   * reader would wait for a writer) or a device, makes the file unreadable. Undefined when it is
   * missing or unreadable. (The checks precede the read: the root is its owner's alone, 0700, so
   * only its owner could swap a file between them.)
   */
  private readStateFile(path: string): Effect.Effect<string | undefined> {
    const fs = this.fs
    return Effect.gen(function*() {
      if (Either.isRight(yield* Effect.either(fs.readLink(path)))) return undefined
      if ((yield* fs.stat(path)).type !== "File") return undefined
      return yield* fs.readFileString(path)
    }).pipe(Effect.orElseSucceed(() => undefined))
  }

  /** Whether anything (a symlink to nowhere included) is at `path`. */
  private isThere(path: string): Effect.Effect<boolean> {
    return Effect.either(this.fs.readLink(path)).pipe(
      Effect.flatMap((link) => (Either.isRight(link) ? Effect.succeed(true) : this.fs.exists(path))),
      // A name too long to exist.
      Effect.orElseSucceed(() => false)
    )
  }

  /**
   * Fails unless every file of `id` can be made here under its full name: a file name has at
   * most 255 bytes, and a sandbox's socket path (`ownSocket`: a root container's) at most 107.
   */
  fits(id: string, ownSocket: boolean): Effect.Effect<void, ContainerIdTooLong> {
    const byName = 255 - LONGEST_SUFFIX
    const bySocket = MAX_SOCKET_PATH - Buffer.byteLength(Path.join(this.root, ".sock"))
    const max = ownSocket ? Math.min(byName, bySocket) : byName
    return Buffer.byteLength(id) <= max ? Effect.void : Effect.fail(new ContainerIdTooLong({ id, root: this.root, max: Math.max(0, max) }))
  }

  /** Makes the root directory (0700) if needed. */
  get ensureRoot(): Effect.Effect<void, CannotWrite> {
    return this.fs.makeDirectory(this.root, { recursive: true, mode: 0o700 }).pipe(
      Effect.mapError((e) => new CannotWrite({ path: this.root, reason: reasonOf(e) }))
    )
  }

  /** Every container id with a state file. */
  get ids(): Effect.Effect<ReadonlyArray<string>> {
    return this.fs.readDirectory(this.root).pipe(
      Effect.map((names) =>
        names
          .filter((f) => f.endsWith(SUFFIX))
          .map((f) => f.slice(0, -SUFFIX.length))
          .filter(isValidContainerId)
          .sort()
      ),
      Effect.orElseSucceed(() => [])
    )
  }

  /**
   * Whether anything of `id` is here: its record (even a reservation), its socket, its exit
   * record or its lock. Such an id is taken to be meant as it is, never as an abbreviation.
   */
  hasTraces(id: string): Effect.Effect<boolean> {
    const traces = [this.fileOf(id), this.socketOf(id), donationSocketOf(this.socketOf(id)), this.exitFileOf(id), this.lockOf(id)]
    return Effect.exists(traces, (path) => this.isThere(path))
  }

  /**
   * The full id that `idOrPrefix` names: itself when anything of it exists here; with
   * `abbreviated`, else the only id it starts (see README, "Container ids").
   */
  resolve(idOrPrefix: string, abbreviated: boolean): Effect.Effect<string, ContainerUnknown | ContainerIdAmbiguous> {
    return Effect.gen(this, function*() {
      const ids = yield* this.ids
      if (ids.includes(idOrPrefix) || !abbreviated || (yield* this.hasTraces(idOrPrefix))) return idOrPrefix
      const matches = idOrPrefix.length === 0 ? [] : ids.filter((id) => id.startsWith(idOrPrefix))
      if (matches.length === 1) return matches[0]!
      if (matches.length > 1) return yield* new ContainerIdAmbiguous({ prefix: idOrPrefix, matches })
      return yield* new ContainerUnknown({ id: idOrPrefix })
    })
  }

  /** The record of `id` as its file says, stale reservations included. */
  private readFile(id: string): Effect.Effect<ContainerRecord, ContainerUnknown | StateCorrupt> {
    return Effect.gen(this, function*() {
      const text = yield* this.readStateFile(this.fileOf(id))
      if (text === undefined) return yield* new ContainerUnknown({ id })
      const record = decode(text)
      if (record._tag === "Left") return yield* new StateCorrupt({ id, reason: "not a state record" })
      if (record.right.id !== id) return yield* new StateCorrupt({ id, reason: `it is the record of ${JSON.stringify(record.right.id)}` })
      return record.right
    })
  }

  /**
   * The record of container `id`. A stale reservation (its create died) names no container:
   * it is removed, and the container does not exist.
   */
  read(id: string): Effect.Effect<ContainerRecord, ContainerUnknown | StateCorrupt | LockUnavailable> {
    return Effect.flatMap(this.readFile(id), (record) =>
      Effect.flatMap(this.neverMade(record), (never) =>
        never ? Effect.zipRight(this.reclaim(id), Effect.fail(new ContainerUnknown({ id }))) : Effect.succeed(record)))
  }

  /**
   * Whether `record` names no container: a stale reservation, or a record its create committed
   * but whose sandbox was never confirmed (the create was killed in between) and has said so.
   */
  private neverMade(record: ContainerRecord): Effect.Effect<boolean> {
    if (isStaleReservation(record)) return Effect.succeed(true)
    if (record.phase !== "created") return Effect.succeed(false)
    return Effect.map(this.readStateFile(this.exitFileOf(record.id)), (text) => text?.trim() === ABANDONED_RECORD)
  }

  /** Removes the traces of `id` if its record (still) names no container. */
  private reclaim(id: string): Effect.Effect<void, LockUnavailable> {
    return this.lockedRemoval(
      id,
      Effect.flatMap(Effect.either(this.readFile(id)), (current) =>
        current._tag === "Left"
          ? Effect.void
          : Effect.flatMap(this.neverMade(current.right), (never) =>
            // A sandbox still on its way out removes its sockets itself; a gone one's are left here.
            never ? this.remove(id, { socket: current.right.phase === "created" && !isAlive(current.right.sandboxPid, current.right.sandboxStart) }) : Effect.void))
    )
  }

  /**
   * Writes `text` to `file` atomically: written to `aside` (which `exclusive` says must not
   * exist yet), then renamed over it; the file aside is removed when that fails. Not
   * interruptible half-way: an interruption never leaves the file aside behind.
   */
  private replace(file: string, aside: string, text: string, exclusive: boolean): Effect.Effect<void, CannotWrite> {
    return this.fs.writeFileString(aside, text, { mode: 0o600, flag: exclusive ? "wx" : "w" }).pipe(
      Effect.zipRight(this.fs.rename(aside, file)),
      Effect.tapError(() => Effect.ignore(this.fs.remove(aside, { force: true }))),
      Effect.mapError((e) => new CannotWrite({ path: file, reason: reasonOf(e) })),
      Effect.uninterruptible
    )
  }

  /** Writes `record` atomically: another reader sees the old file or the new one, never half. */
  write(record: ContainerRecord): Effect.Effect<void, CannotWrite> {
    return Effect.suspend(() => {
      const file = this.fileOf(record.id)
      return this.replace(file, `${file}.${process.pid}.tmp`, JSON.stringify(record), true)
    })
  }

  /**
   * Reserves `record.id` for the create `record.createdBy` (phase `creating`): fails
   * ContainerIdInUse when a container has it; a stale reservation and the leftovers of a
   * container gone without a record (an exit record) are cleared first.
   */
  reserve(record: ContainerRecord): Effect.Effect<void, ContainerIdInUse | StateCorrupt | CannotWrite | LockUnavailable> {
    const { id } = record
    return this.locked(
      id,
      Effect.gen(this, function*() {
        const current = yield* Effect.either(this.readFile(id))
        if (current._tag === "Right" && !isStaleReservation(current.right)) return yield* new ContainerIdInUse({ id })
        // A corrupt record is still somebody's container: only `delete` removes it.
        if (current._tag === "Left" && current.left._tag === "StateCorrupt") return yield* current.left
        // A socket here belongs to a sandbox that may still listen (the new one replaces it only
        // if nobody does); what else is here is a gone container's.
        yield* this.remove(id, { socket: false })
        yield* this.write(record)
      })
    )
  }

  /**
   * Replaces the reservation `record.createdBy` made with `record`: fails CreateAbandoned
   * when the reservation is no longer there (a `delete --force` of the id while it was created).
   */
  commit(record: ContainerRecord): Effect.Effect<void, CreateAbandoned | CannotWrite | LockUnavailable> {
    return this.locked(
      record.id,
      Effect.gen(this, function*() {
        const current = yield* Effect.either(this.readFile(record.id))
        const mine = current._tag === "Right" && current.right.phase === "creating" &&
          sameProcess(current.right.createdBy, record.createdBy!)
        if (!mine) return yield* new CreateAbandoned({ id: record.id })
        yield* this.write(record)
      })
    )
  }

  /** Undoes a create of `id` by `creator` that failed: removes its record, if it is still its own. */
  abandon(id: string, creator: ProcessIdentity): Effect.Effect<void, LockUnavailable> {
    return this.lockedRemoval(
      id,
      Effect.flatMap(Effect.either(this.readFile(id)), (current) =>
        current._tag === "Right" && sameProcess(current.right.createdBy, creator) ? this.remove(id, { socket: true }) : Effect.void)
    )
  }

  /** The files the sandbox of root container `id` writes here, and nothing else. */
  sandboxFiles(id: string): SandboxFiles {
    const socket = this.socketOf(id)
    return { socket, donations: donationSocketOf(socket), exit: [this.exitFileOf(id), `${this.exitFileOf(id)}.tmp`] }
  }

  /**
   * Records how the root container's init ended (the sandbox writes it before it exits; the one
   * writer of this file, so the name of the file aside is fixed, and can be granted).
   */
  writeExit(id: string, code: number): Effect.Effect<void, CannotWrite> {
    return Effect.suspend(() => this.replace(this.exitFileOf(id), `${this.exitFileOf(id)}.tmp`, `${code}\n`, false))
  }

  /**
   * Records, in place of an exit status, that the sandbox of root container `id` was never
   * confirmed by its create and is going (see ABANDONED_RECORD).
   */
  writeAbandoned(id: string): Effect.Effect<void, CannotWrite> {
    return Effect.suspend(() => this.replace(this.exitFileOf(id), `${this.exitFileOf(id)}.tmp`, `${ABANDONED_RECORD}\n`, false))
  }

  /** The exit code a sandbox recorded for its root container, if it did. */
  readExit(id: string): Effect.Effect<number | undefined> {
    return Effect.gen(this, function*() {
      const text = yield* this.readStateFile(this.exitFileOf(id))
      const code = text === undefined ? NaN : Number(text)
      return Number.isInteger(code) ? code : undefined
    })
  }

  /**
   * Runs `removal` (which only removes files of `id`) holding `id`'s lock — or without it when
   * the lock itself cannot be made (a full disk): what frees the disk must not need room on it.
   * Nobody else can take a lock then, and a removal racing one already held at worst removes a
   * reservation, whose create then finds it gone and undoes itself.
   */
  lockedRemoval<E, R>(id: string, removal: Effect.Effect<void, E, R>): Effect.Effect<void, E | LockUnavailable, R> {
    return this.locked(id, removal).pipe(
      Effect.catchIf(
        (e): e is LockUnavailable => e instanceof LockUnavailable && !e.held,
        // A stale lock that could not be broken the safe way goes with the rest.
        () => Effect.zipRight(removal, removeIfStale(this.fs, this.lockOf(id)))
      )
    )
  }

  /**
   * Every trace of a container: its state, its recorded exit and, with `socket`, its socket —
   * only once its sandbox is gone: a listening sandbox removes its socket file by name as it
   * exits, so a path taken from a live one would be taken from its successor too.
   */
  remove(id: string, options: { readonly socket: boolean }): Effect.Effect<void> {
    return Effect.suspend(() => {
      const sockets = options.socket ? [this.socketOf(id), donationSocketOf(this.socketOf(id))] : []
      const paths = [this.fileOf(id), this.exitFileOf(id), `${this.exitFileOf(id)}.tmp`, ...sockets]
      return Effect.forEach(paths, (path) => Effect.ignore(this.fs.remove(path, { force: true })), { discard: true })
    }).pipe(Effect.uninterruptible)
  }

  /** Runs `f` holding container `id`'s lock, `<id>.lock` (see containerLock.ts). */
  locked<A, E, R>(id: string, f: Effect.Effect<A, E, R>): Effect.Effect<A, E | LockUnavailable, R> {
    return Effect.zipRight(
      Effect.mapError(this.ensureRoot, ({ path, reason }) => new LockUnavailable({ path, reason, held: false })),
      withLock(this.fs, this.lockOf(id), f)
    )
  }
}

/** The CLI's state root, as a service: made by `StateStore.layer(root)` on the FileSystem provided. */
export class StateStore extends Context.Tag("runsc/StateStore")<StateStore, StateDirectory>() {
  static readonly layer = (root: string): Layer.Layer<StateStore, never, FileSystem.FileSystem> =>
    Layer.effect(StateStore, Effect.map(FileSystem.FileSystem, (fs) => new StateDirectory(root, fs)))
}

/**
 * What a sandbox writes in its exit record when its create went away without confirming it (a
 * create killed between its commit and its confirmation): the record the create committed
 * names a container that never was, and readers remove it as a stale reservation. Only the
 * sandbox may write this file, and it is granted nothing else here: it cannot touch the record.
 */
export const ABANDONED_RECORD = "abandoned"

/** A reservation whose create is gone: no container will come of it. */
export const isStaleReservation = (record: ContainerRecord): boolean =>
  record.phase === "creating" && (record.createdBy === undefined || !isAlive(record.createdBy.pid, record.createdBy.start))
