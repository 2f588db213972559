/**
 * The CLI's state: one JSON file per container under `--root`, which is how a stateless
 * `runsc <cmd>` finds the sandbox process and control socket of a container.
 *
 * Invariants: a file is replaced atomically (written aside, then renamed), and every
 * read-modify-write of the root holds its lock (a lock file created exclusively), so concurrent
 * CLIs neither corrupt nor lose updates. A corrupt file of one id is reported for that id only;
 * every other id works. The status is never trusted from the file alone: a container whose
 * sandbox process is gone is `stopped`.
 */
import { Clock, Effect, Schema } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { Confinement, type SandboxFiles } from "./confinement.js"
import { CannotWrite } from "./errors.js"

export const ContainerRecord = Schema.Struct({
  id: Schema.String,
  /** The bundle directory (absolute). */
  bundle: Schema.String,
  /** The host pid of the sandbox process (`runsc boot`). */
  sandboxPid: Schema.Number,
  /**
   * When that process started (/proc stat's starttime): a pid reused by another process after
   * the sandbox died is not the sandbox — it is never signalled as one.
   */
  sandboxStart: Schema.String,
  /** The sandbox's control socket. */
  socket: Schema.String,
  /** What the CLI last did to it: created, or started (the sandbox decides running/stopped). */
  phase: Schema.Literal("created", "started", "start-failed"),
  createdAt: Schema.String,
  annotations: Schema.Record({ key: Schema.String, value: Schema.String }),
  /** For a sub-container: the id of the root container whose sandbox it runs in. */
  sandboxId: Schema.optional(Schema.String),
  /** What the sandbox process may touch; absent when it runs unconfined (--unconfined). */
  confinement: Schema.optional(Confinement)
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

const SUFFIX = ".state.json"
const LOCK_WAIT_MS = 10_000

const decode = Schema.decodeUnknownEither(Schema.parseJson(ContainerRecord))

export class StateStore {
  constructor(readonly root: string) {}

  /** The control socket of the sandbox whose root container is `id`. */
  socketOf(id: string): string {
    return Path.join(this.root, `${id}.sock`)
  }

  private fileOf(id: string): string {
    return Path.join(this.root, `${id}${SUFFIX}`)
  }

  /** Makes the root directory (0700) if needed. */
  get ensureRoot(): Effect.Effect<void, CannotWrite> {
    return Effect.try({
      try: () => void Fs.mkdirSync(this.root, { recursive: true, mode: 0o700 }),
      catch: (e) => new CannotWrite({ path: this.root, reason: (e as Error).message })
    })
  }

  /** Every container id with a state file. */
  get ids(): Effect.Effect<ReadonlyArray<string>> {
    return Effect.sync(() => {
      try {
        return Fs.readdirSync(this.root).filter((f) => f.endsWith(SUFFIX)).map((f) => f.slice(0, -SUFFIX.length)).sort()
      } catch {
        return []
      }
    })
  }

  /** The full id for `idOrPrefix`: an exact id, or the only id it starts. */
  resolve(idOrPrefix: string): Effect.Effect<string, ContainerUnknown | ContainerIdAmbiguous> {
    return Effect.flatMap(this.ids, (ids): Effect.Effect<string, ContainerUnknown | ContainerIdAmbiguous> => {
      if (ids.includes(idOrPrefix)) return Effect.succeed(idOrPrefix)
      const matches = idOrPrefix.length === 0 ? [] : ids.filter((id) => id.startsWith(idOrPrefix))
      if (matches.length === 1) return Effect.succeed(matches[0]!)
      if (matches.length > 1) return Effect.fail(new ContainerIdAmbiguous({ prefix: idOrPrefix, matches }))
      return Effect.fail(new ContainerUnknown({ id: idOrPrefix }))
    })
  }

  read(id: string): Effect.Effect<ContainerRecord, ContainerUnknown | StateCorrupt> {
    return Effect.suspend((): Effect.Effect<ContainerRecord, ContainerUnknown | StateCorrupt> => {
      let text: string
      try {
        text = Fs.readFileSync(this.fileOf(id), "utf8")
      } catch {
        return Effect.fail(new ContainerUnknown({ id }))
      }
      const record = decode(text)
      return record._tag === "Right" ? Effect.succeed(record.right) : Effect.fail(new StateCorrupt({ id, reason: "not a state record" }))
    })
  }

  /** Writes `record` atomically: another reader sees the old file or the new one, never half. */
  write(record: ContainerRecord): Effect.Effect<void, CannotWrite> {
    return Effect.try({
      try: () => {
        const file = this.fileOf(record.id)
        const aside = `${file}.${process.pid}.tmp`
        Fs.writeFileSync(aside, JSON.stringify(record), { mode: 0o600 })
        Fs.renameSync(aside, file)
      },
      catch: (e) => new CannotWrite({ path: this.fileOf(record.id), reason: (e as Error).message })
    })
  }

  private exitFileOf(id: string): string {
    return Path.join(this.root, `${id}.exit`)
  }

  /** The files the sandbox of root container `id` writes here, and nothing else. */
  sandboxFiles(id: string): SandboxFiles {
    return { socket: this.socketOf(id), exit: [this.exitFileOf(id), `${this.exitFileOf(id)}.tmp`] }
  }

  /**
   * Records how the root container's init ended (the sandbox writes it before it exits; the one
   * writer of this file, so the name of the file aside is fixed, and can be granted).
   */
  writeExit(id: string, code: number): Effect.Effect<void, CannotWrite> {
    return Effect.try({
      try: () => {
        const aside = `${this.exitFileOf(id)}.tmp`
        Fs.writeFileSync(aside, `${code}\n`, { mode: 0o600 })
        Fs.renameSync(aside, this.exitFileOf(id))
      },
      catch: (e) => new CannotWrite({ path: this.exitFileOf(id), reason: (e as Error).message })
    })
  }

  /** The exit code a sandbox recorded for its root container, if it did. */
  readExit(id: string): Effect.Effect<number | undefined> {
    return Effect.sync(() => {
      try {
        const code = Number(Fs.readFileSync(this.exitFileOf(id), "utf8"))
        return Number.isInteger(code) ? code : undefined
      } catch {
        return undefined
      }
    })
  }

  /** Every trace of a container: its state, its socket, its recorded exit. */
  remove(id: string): Effect.Effect<void> {
    return Effect.sync(() => {
      Fs.rmSync(this.fileOf(id), { force: true })
      Fs.rmSync(this.socketOf(id), { force: true })
      Fs.rmSync(this.exitFileOf(id), { force: true })
    })
  }

  /**
   * Runs `f` holding the root's lock: an exclusively created lock file, taken by polling (a
   * CLI holds it for milliseconds). A lock left by a CLI that died is broken once its pid is gone.
   */
  locked<A, E, R>(f: Effect.Effect<A, E, R>): Effect.Effect<A, E | CannotWrite, R> {
    const lock = Path.join(this.root, ".lock")
    const take: Effect.Effect<void, CannotWrite> = Effect.gen(this, function*() {
      yield* this.ensureRoot
      const deadline = (yield* Clock.currentTimeMillis) + LOCK_WAIT_MS
      for (;;) {
        try {
          const fd = Fs.openSync(lock, "wx", 0o600)
          Fs.writeSync(fd, `${process.pid}`)
          Fs.closeSync(fd)
          return
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== "EEXIST") {
            return yield* new CannotWrite({ path: lock, reason: (e as Error).message })
          }
        }
        const holder = lockHolder(lock)
        if (holder > 0 && procStat(holder) === undefined) Fs.rmSync(lock, { force: true })
        else if ((yield* Clock.currentTimeMillis) > deadline) return yield* new CannotWrite({ path: lock, reason: "lock held for too long" })
        else yield* Effect.sleep("2 millis")
      }
    })
    return Effect.acquireUseRelease(take, () => f, () => Effect.sync(() => Fs.rmSync(lock, { force: true })))
  }
}

/** The pid written in a lock file (0: unknown, or the file is gone already). */
const lockHolder = (lock: string): number => {
  try {
    return Number(Fs.readFileSync(lock, "utf8")) || 0
  } catch {
    return 0
  }
}

/** A process's state letter and start time (clock ticks since boot), from /proc; undefined when gone. */
const procStat = (pid: number): { readonly state: string; readonly start: string } | undefined => {
  try {
    const stat = Fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    // Fields after the command (which may contain spaces and parentheses) start after the last ")".
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return { state: fields[0]!, start: fields[19]! }
  } catch {
    return undefined
  }
}

/** The start time of a live process, to recognize it later (see ContainerRecord.sandboxStart). */
export const processStart = (pid: number): string => procStat(pid)?.start ?? ""

/**
 * Whether the sandbox process of a record still runs: the pid exists, is that same process (its
 * start time matches), and is not a zombie waiting for a slow reaper.
 */
export const isAlive = (pid: number, start: string): boolean => {
  const stat = procStat(pid)
  return stat !== undefined && stat.start === start && stat.state !== "Z" && stat.state !== "X"
}
