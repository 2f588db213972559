/**
 * The OCI lifecycle commands (RUNSC.md "CLI contract"): create, start, state, kill, wait,
 * delete, list, ps, pause, resume, events. Each is a fresh process: it finds the container's sandbox through the state
 * file under --root and talks to it over the control socket, one connection per call.
 */
import { Args, Command, Options } from "@effect/cli"
import { parseSignal, toShellCode } from "@runsc/abi"
import { call } from "@runsc/control"
import { type Bundle, loadBundle, validateContainerId } from "@runsc/spec"
import { Clock, Duration, Effect, Option, Schema } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { openConsole } from "../console.js"
import { spawnDetached, type Stdio } from "../detached.js"
import { bindSources, ConfinementUnavailable, confinementOf, mayAccess, nodeFlags, OutsideConfinement } from "../confinement.js"
import { CannotWrite, InvalidFlag } from "../errors.js"
import { globalArgs, rootDirOf } from "../globals.js"
import { lendStdio } from "../relay.js"
import { rootCommand } from "../root.js"
import { type ContainerRecord, ContainerIdInUse, isAlive, processStart, StateStore } from "../state.js"

export type Status = "created" | "running" | "paused" | "stopped"

export class SandboxFailed extends Schema.TaggedError<SandboxFailed>()("SandboxFailed", { id: Schema.String, reason: Schema.String }) {
  override get message(): string {
    return `sandbox for ${this.id} failed: ${this.reason}`
  }
}

export class WrongStatus extends Schema.TaggedError<WrongStatus>()("WrongStatus", {
  id: Schema.String,
  status: Schema.String,
  wanted: Schema.String
}) {
  override get message(): string {
    return `container ${this.id} is ${this.status}, not ${this.wanted}`
  }
}

const store = Effect.map(rootCommand, (flags) => new StateStore(rootDirOf(flags)))

/** The record of the container named by an id or an unambiguous prefix of one. */
export const findContainer = (idOrPrefix: string) =>
  Effect.gen(function*() {
    const states = yield* store
    const id = yield* states.resolve(idOrPrefix)
    return { states, record: yield* states.read(id) }
  })

/** The status, computed: the state file says what the CLI did, the sandbox what became of it. */
const statusOf = (record: ContainerRecord): Effect.Effect<Status> =>
  Effect.gen(function*() {
    if (!isAlive(record.sandboxPid, record.sandboxStart)) return "stopped"
    if (record.phase === "created") return "created"
    if (record.phase === "start-failed") return "stopped"
    const state = yield* call(record.socket, "RuntimeState", (c) => c.RuntimeState({ id: record.id }), "10 seconds").pipe(
      Effect.orElseSucceed(() => "stopped" as const)
    )
    if (state !== "running") return state === "creating" ? "created" : "stopped"
    const paused = yield* call(record.socket, "IsPaused", (c) => c.IsPaused(), "10 seconds").pipe(Effect.orElseSucceed(() => false))
    return paused ? "paused" : "running"
  })

export const print = (text: string) => Effect.sync(() => void Fs.writeSync(1, `${text}\n`))

const warn = (text: string) => Effect.sync(() => void Fs.writeSync(2, `runsc: warning: ${text}\n`))

// ---- create ----------------------------------------------------------------------------------

const SANDBOX_START_LIMIT = Duration.seconds(30)

/**
 * Starts `runsc boot` detached with this process's stdio, under `nodeArgs` (its confinement);
 * resolves once it serves (or fails).
 */
const spawnSandbox = (
  id: string,
  bundle: string,
  socket: string,
  nodeArgs: ReadonlyArray<string>,
  args: ReadonlyArray<string>,
  stdio: Stdio | undefined
) =>
  spawnDetached({
    nodeArgs,
    args: [...args, "boot", "--bundle", bundle, "--socket", socket, "--sync-fd", "3", id],
    ...(stdio !== undefined ? { stdio } : {})
  }).pipe(
    Effect.mapError(({ reason }) => new SandboxFailed({ id, reason })),
    Effect.map(({ pid }) => pid),
    Effect.timeoutFail({
      duration: SANDBOX_START_LIMIT,
      onTimeout: () => new SandboxFailed({ id, reason: `it did not serve within ${Duration.format(SANDBOX_START_LIMIT)}` })
    })
  )

const CONTAINER_TYPE = "io.kubernetes.cri.container-type"
const SANDBOX_ID = "io.kubernetes.cri.sandbox-id"

/**
 * A sub-container (CRI annotations: container-type `container`, sandbox-id naming the pod's
 * root container): registered in that sandbox, with this CLI's stdio lent to it now, to outlive
 * this process. A confined sandbox must be allowed to read the sub-container's bundle, root and bind sources.
 */
const joinSandbox = (
  states: StateStore,
  id: string,
  bundle: Bundle,
  annotations: Readonly<Record<string, string>>,
  stdio: Stdio | undefined
) =>
  Effect.gen(function*() {
    const sandboxId = annotations[SANDBOX_ID]
    if (sandboxId === undefined) {
      return yield* new InvalidFlag({ flag: `annotation ${SANDBOX_ID}`, reason: "a container of type container needs its sandbox's id" })
    }
    const sandbox = yield* states.read(sandboxId)
    if (!isAlive(sandbox.sandboxPid, sandbox.sandboxStart)) {
      return yield* new WrongStatus({ id: sandboxId, status: "stopped", wanted: "running" })
    }
    const { confinement } = sandbox
    if (confinement !== undefined) {
      const unreadable = [bundle.dir, bundle.rootPath, ...bindSources(bundle)].find((path) => !mayAccess(confinement, "read", path))
      if (unreadable !== undefined) return yield* new OutsideConfinement({ sandboxId, path: unreadable, access: "read" })
      const unwritable = bindSources(bundle, "writable").find((path) => !mayAccess(confinement, "write", path))
      if (unwritable !== undefined) return yield* new OutsideConfinement({ sandboxId, path: unwritable, access: "write" })
    }
    const { stdio: lent } = yield* lendStdio({
      dir: states.root,
      confined: confinement !== undefined,
      outlivesCli: true,
      globalArgs: globalArgs(yield* rootCommand),
      ...(stdio !== undefined ? { fds: stdio } : {})
    })
    yield* call(sandbox.socket, "CreateSubcontainer", (c) => c.CreateSubcontainer({ id, stdio: lent }))
    const record: ContainerRecord = {
      id,
      bundle: bundle.dir,
      sandboxPid: sandbox.sandboxPid,
      sandboxStart: sandbox.sandboxStart,
      socket: sandbox.socket,
      phase: "created",
      createdAt: new Date(yield* Clock.currentTimeMillis).toISOString(),
      annotations,
      sandboxId,
      ...(confinement !== undefined ? { confinement } : {})
    }
    return record
  }).pipe(Effect.scoped)

/**
 * Creates a container: its sandbox process started detached with this process's stdio (the
 * container's) or, with a console socket, a new terminal whose master end goes there; serving;
 * its state file written; then --pid-file, last, as containerd expects.
 */
export const createContainer = (id: string, bundle: string, pidFile: Option.Option<string>, consoleSocket: Option.Option<string>) =>
  Effect.gen(function*() {
    // Validated before it names any file.
    const containerId = yield* validateContainerId(id)
    const flags = yield* rootCommand
    const states = yield* store
    const dir = Path.resolve(bundle)
    // A bad bundle is reported here, by create, before any process starts.
    const loaded = yield* loadBundle(dir)
    const socket = states.socketOf(containerId)
    const annotations = loaded.spec.annotations ?? {}
    const pty = yield* consoleFor(consoleSocket, loaded.spec.process?.terminal ?? false)
    const record = yield* states.locked(Effect.gen(function*() {
      if ((yield* states.ids).includes(containerId)) return yield* new ContainerIdInUse({ id: containerId })
      if (annotations[CONTAINER_TYPE] === "container") {
        const record = yield* joinSandbox(states, containerId, loaded, annotations, pty?.stdio)
        yield* states.write(record)
        return record
      }
      const confinement = flags.unconfined ? undefined : confinementOf({
        bundle: loaded,
        files: states.sandboxFiles(containerId),
        logs: [flags.log, flags.debugLog].flatMap((log) => Option.isSome(log) ? [Path.resolve(log.value)] : []),
        allowRead: flags.allowRead,
        allowWrite: flags.allowWrite
      })
      const nodeArgs = confinement === undefined ? [] : nodeFlags(confinement)
      if (nodeArgs === undefined) return yield* new ConfinementUnavailable({ node: process.version })
      if (confinement === undefined) {
        yield* warn(`the sandbox of ${containerId} runs unconfined: it can read every host file this user can`)
      }
      const sandboxPid = yield* spawnSandbox(containerId, dir, socket, nodeArgs, globalArgs(flags), pty?.stdio)
      const record: ContainerRecord = {
        id: containerId,
        bundle: dir,
        sandboxPid,
        sandboxStart: processStart(sandboxPid),
        socket,
        phase: "created",
        createdAt: new Date(yield* Clock.currentTimeMillis).toISOString(),
        annotations,
        ...(confinement !== undefined ? { confinement } : {})
      }
      yield* states.write(record)
      return record
    }))
    // The container has its terminal: the caller may have the other end now.
    if (pty !== undefined) yield* pty.send.pipe(Effect.tapError(() => Effect.ignore(removeContainer(states, record))))
    yield* Option.match(pidFile, {
      onNone: () => Effect.void,
      onSome: (path) =>
        Effect.try({
          try: () => Fs.writeFileSync(path, `${record.sandboxPid}`),
          catch: (e) => new CannotWrite({ path, reason: (e as Error).message })
        })
    })
    return { record, states }
  }).pipe(Effect.scoped)

/** A process's terminal from --console-socket: it must want one (`terminal`, or exec's -t). */
export const consoleFor = (consoleSocket: Option.Option<string>, terminal: boolean) =>
  Option.match(consoleSocket, {
    onNone: () => Effect.succeed(undefined),
    onSome: (path) =>
      terminal
        ? Effect.map(openConsole(Path.resolve(path)), ({ send, slave }) => ({ stdio: [slave, slave, slave] as Stdio, send }))
        : Effect.fail(new InvalidFlag({ flag: "--console-socket", reason: "the process has no terminal (process.terminal, or exec -t)" }))
  })

export const consoleSocketOption = Options.text("console-socket").pipe(
  Options.withDescription("Unix socket to send the master end of the container's new terminal to (SCM_RIGHTS)"),
  Options.optional
)

export const createCommand = Command.make(
  "create",
  {
    bundle: Options.directory("bundle").pipe(Options.withAlias("b"), Options.withDefault(".")),
    pidFile: Options.file("pid-file").pipe(Options.withDescription("write the sandbox's pid here (last)"), Options.optional),
    consoleSocket: consoleSocketOption,
    id: Args.text({ name: "container-id" })
  },
  ({ bundle, consoleSocket, id, pidFile }) => Effect.asVoid(createContainer(id, bundle, pidFile, consoleSocket))
).pipe(Command.withDescription("create a container: its sandbox process waits for start"))

// ---- start, state, kill, wait, delete, list --------------------------------------------------

/** Starts a created container's root (StartRoot) and records how that went. */
export const startContainer = (states: StateStore, record: ContainerRecord) =>
  Effect.gen(function*() {
    const status = yield* statusOf(record)
    if (status !== "created") return yield* new WrongStatus({ id: record.id, status, wanted: "created" })
    const started = yield* Effect.either(
      record.sandboxId === undefined
        ? call(record.socket, "StartRoot", (c) => c.StartRoot())
        : call(record.socket, "StartSubcontainer", (c) => c.StartSubcontainer({ id: record.id, bundle: record.bundle, stdio: {} }))
    )
    // A failed start leaves the container stopped, so that kill and delete work on it.
    yield* states.locked(states.write({ ...record, phase: started._tag === "Right" ? "started" : "start-failed" }))
    if (started._tag === "Left") return yield* Effect.fail(started.left)
  })

export const startCommand = Command.make("start", { id: Args.text({ name: "container-id" }) }, ({ id }) =>
  Effect.flatMap(findContainer(id), ({ record, states }) => startContainer(states, record))).pipe(
    Command.withDescription("start a created container")
  )

/** The pid `state` and `list` show: a stopped container has none, so 0, as runc prints (the OCI state schema wants pid ≥ 0). */
const pidShown = (status: Status, record: ContainerRecord): number => (status === "stopped" ? 0 : record.sandboxPid)

export const stateCommand = Command.make("state", { id: Args.text({ name: "container-id" }) }, ({ id }) =>
  Effect.gen(function*() {
    const { record } = yield* findContainer(id)
    const status = yield* statusOf(record)
    yield* print(JSON.stringify(
      {
        ociVersion: "1.0.2",
        id: record.id,
        status,
        pid: pidShown(status, record),
        bundle: record.bundle,
        annotations: record.annotations
      },
      null,
      2
    ))
  })).pipe(Command.withDescription("print the container's OCI state"))

export const killCommand = Command.make(
  "kill",
  {
    all: Options.boolean("all").pipe(Options.withDescription("signal every process of the container")),
    pid: Options.integer("pid").pipe(Options.withDescription("signal this process (root-namespace pid)"), Options.optional),
    id: Args.text({ name: "container-id" }),
    signal: Args.text({ name: "signal" }).pipe(Args.withDefault("TERM"))
  },
  ({ all, id, pid, signal }) =>
    Effect.gen(function*() {
      const signo = parseSignal(signal)
      if (signo === undefined) return yield* new InvalidFlag({ flag: "signal", reason: `unknown signal ${JSON.stringify(signal)}` })
      if (all && Option.isSome(pid)) return yield* new InvalidFlag({ flag: "--all", reason: "cannot be used with --pid" })
      const { record } = yield* findContainer(id)
      const status = yield* statusOf(record)
      // Stopped: --all has nothing left to clean; anything else is an error, as in runsc.
      if (status === "stopped" && all) return
      if (status !== "running" && status !== "paused") return yield* new WrongStatus({ id: record.id, status, wanted: "running" })
      yield* call(record.socket, "Signal", (c) =>
        c.Signal({ id: record.id, pid: Option.getOrElse(pid, () => 0), signo, mode: all ? "AllProcesses" : "Process" }))
    })
).pipe(Command.withDescription("send a signal to a container's init, one of its processes, or all"))

export const waitCommand = Command.make("wait", { id: Args.text({ name: "container-id" }) }, ({ id }) =>
  Effect.gen(function*() {
    const { record, states } = yield* findContainer(id)
    const code = yield* waitForExit(states, record)
    yield* print(JSON.stringify({ id: record.id, exitStatus: code }))
  })).pipe(Command.withDescription("wait for a container's init and print its exit status"))

/** Waits (at most `ms`) until a sandbox process is gone; whether it is. */
const sandboxGone = (record: ContainerRecord, ms: number) =>
  Effect.gen(function*() {
    for (let i = 0; i < ms / 10 && isAlive(record.sandboxPid, record.sandboxStart); i++) yield* Effect.sleep("10 millis")
    return !isAlive(record.sandboxPid, record.sandboxStart)
  })

/**
 * The exit code of a container's init: from the sandbox while it answers, else from the record
 * it leaves when its root ends (written before its teardown; read once the process is gone).
 */
export const waitForExit = (states: StateStore, record: ContainerRecord) =>
  Effect.gen(function*() {
    const live = yield* call(record.socket, "Wait", (c) => c.Wait({ id: record.id }), Duration.infinity).pipe(
      Effect.map(toShellCode),
      Effect.catchTag("SandboxUnreachable", () => Effect.succeed(undefined))
    )
    if (live !== undefined) return live
    const recorded = (yield* states.readExit(record.id)) ??
      ((yield* sandboxGone(record, 5000)) ? yield* states.readExit(record.id) : undefined)
    if (recorded === undefined) return yield* new SandboxFailed({ id: record.id, reason: "it is gone and recorded no exit status" })
    return recorded
  })

/** SIGKILLs a sandbox process and waits (bounded) until it is gone. */
const killSandbox = (record: ContainerRecord) =>
  Effect.gen(function*() {
    if (!isAlive(record.sandboxPid, record.sandboxStart)) return
    try {
      process.kill(record.sandboxPid, "SIGKILL")
    } catch {
      return
    }
    yield* sandboxGone(record, 5000)
  })

/**
 * Ends what is left of a container and removes every trace of it. A sub-container is destroyed
 * in its pod's sandbox, which goes on; a root container's sandbox gets `graceMs` to exit by
 * itself (it does once its root has), then is killed.
 */
export const removeContainer = (states: StateStore, record: ContainerRecord, graceMs = 0) =>
  Effect.gen(function*() {
    if (record.sandboxId !== undefined) {
      yield* Effect.ignore(call(record.socket, "DestroySubcontainer", (c) => c.DestroySubcontainer({ id: record.id })))
    } else if (!(yield* sandboxGone(record, graceMs))) {
      yield* killSandbox(record)
    }
    yield* states.locked(states.remove(record.id))
  })

export const deleteCommand = Command.make(
  "delete",
  {
    force: Options.boolean("force").pipe(Options.withDescription("delete even if running (its sandbox is killed)")),
    id: Args.text({ name: "container-id" })
  },
  ({ force, id }) =>
    Effect.gen(function*() {
      const { record, states } = yield* findContainer(id)
      const status = yield* statusOf(record)
      if ((status === "running" || status === "paused") && !force) {
        return yield* new WrongStatus({ id: record.id, status, wanted: "created or stopped" })
      }
      yield* removeContainer(states, record)
    })
).pipe(Command.withDescription("delete a container and every trace of it"))

export const listCommand = Command.make(
  "list",
  {
    quiet: Options.boolean("quiet").pipe(Options.withAlias("q"), Options.withDescription("ids only")),
    format: Options.choice("format", ["text", "json"]).pipe(Options.withDefault("text" as const))
  },
  ({ format, quiet }) =>
    Effect.gen(function*() {
      const states = yield* store
      const rows = yield* Effect.forEach(yield* states.ids, (id) =>
        states.read(id).pipe(
          Effect.flatMap((record) => Effect.map(statusOf(record), (status) => ({ record, status }))),
          // A corrupt or vanishing file of one id hides that id, nothing else.
          Effect.option
        ))
      const listed = rows.flatMap((r) => (Option.isSome(r) ? [r.value] : []))
      if (quiet) return yield* Effect.forEach(listed, ({ record }) => print(record.id), { discard: true })
      if (format === "json") {
        return yield* print(JSON.stringify(listed.map(({ record, status }) => ({
          ociVersion: "1.0.2",
          id: record.id,
          pid: pidShown(status, record),
          status,
          bundle: record.bundle,
          created: record.createdAt
        }))))
      }
      yield* print(["ID", "PID", "STATUS", "BUNDLE", "CREATED"].join("\t"))
      yield* Effect.forEach(listed, ({ record, status }) =>
        print([record.id, pidShown(status, record), status, record.bundle, record.createdAt].join("\t")), {
        discard: true
      })
    })
).pipe(Command.withDescription("list containers"))

/** STIME as ps prints it for a process started today: hh:mm. */
const clockTime = (startedAtNs: bigint) => {
  const date = new Date(Number(startedAtNs / 1_000_000n))
  return `${String(date.getHours()).padStart(2, "0")}:${String(date.getMinutes()).padStart(2, "0")}`
}

export const psCommand = Command.make(
  "ps",
  {
    format: Options.choice("format", ["table", "json"]).pipe(Options.withDefault("table" as const)),
    id: Args.text({ name: "container-id" })
  },
  ({ format, id }) =>
    Effect.gen(function*() {
      const { record } = yield* findContainer(id)
      const processes = yield* call(record.socket, "Processes", (c) => c.Processes({ id: record.id }))
      if (format === "json") return yield* print(JSON.stringify(processes.map((p) => p.pid)))
      yield* print(["UID", "PID", "PPID", "STIME", "CMD"].join("\t"))
      yield* Effect.forEach(processes, (p) =>
        print([p.uid, p.pid, p.ppid, clockTime(p.startedAt), p.argv.join(" ")].join("\t")), { discard: true })
    })
).pipe(Command.withDescription("list the processes of a container"))

// ---- pause, resume, events ---------------------------------------------------------------------

const pauseOrResume = (name: "pause" | "resume") =>
  Command.make(name, { id: Args.text({ name: "container-id" }) }, ({ id }) =>
    Effect.gen(function*() {
      const { record } = yield* findContainer(id)
      const status = yield* statusOf(record)
      const wanted = name === "pause" ? "running" : "paused"
      if (status !== wanted) return yield* new WrongStatus({ id: record.id, status, wanted })
      // The whole sandbox: every container in it stops (or goes on) with its root.
      yield* name === "pause" ? call(record.socket, "Pause", (c) => c.Pause()) : call(record.socket, "Resume", (c) => c.Resume())
    })).pipe(Command.withDescription(name === "pause" ? "stop every process of the sandbox" : "let a paused sandbox go on"))

export const pauseCommand = pauseOrResume("pause")
export const resumeCommand = pauseOrResume("resume")

export const eventsCommand = Command.make(
  "events",
  {
    stats: Options.boolean("stats").pipe(Options.withDescription("print the current stats once, then exit")),
    interval: Options.integer("interval").pipe(Options.withDescription("seconds between stats"), Options.withDefault(5)),
    id: Args.text({ name: "container-id" })
  },
  ({ id, interval, stats }) =>
    Effect.gen(function*() {
      const { record } = yield* findContainer(id)
      const once = Effect.flatMap(call(record.socket, "Event", (c) => c.Event({ id: record.id })), (data) =>
        print(JSON.stringify({
          type: "stats",
          id: record.id,
          data: {
            cpu: { usage: { total: Number(data.cpu.usage.total) } },
            memory: { usage: { usage: data.memory.usage.usage } },
            pids: { current: data.pids.current }
          }
        })))
      if (stats) return yield* once
      // Until the container stops (its sandbox stops answering).
      while ((yield* statusOf(record)) !== "stopped") {
        yield* once
        yield* Effect.sleep(Duration.seconds(Math.max(1, interval)))
      }
    })
).pipe(Command.withDescription("print a container's stats (cpu, memory, pids), once with --stats"))
