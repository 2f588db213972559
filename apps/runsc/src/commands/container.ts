/**
 * The OCI lifecycle commands (RUNSC.md "CLI contract"): create, start, state, kill, wait,
 * delete, list, ps, pause, resume, events. Each is a fresh process: it finds the container's
 * sandbox through the state file under --root and talks to it over the control socket, one
 * connection per call. What it cannot know it does not claim: a sandbox that is gone makes a
 * stopped container, one that lives but does not answer is reported as such and left alone.
 */
import { Args, Command, Options } from "@effect/cli"
import { parseSignal, toShellCode } from "@runsc/abi"
import { call, ControlTimeout, donationSocketOf, type SandboxClient, SandboxUnreachable } from "@runsc/control"
import { donateTrees, MAX_DONATED_FDS, openTrees } from "@runsc/kernel"
import type { RpcClientError } from "@effect/rpc"
import { type Bundle, hostTreesOf, loadBundle, validateContainerId } from "@runsc/spec"
import { Clock, Duration, Effect, Exit, Option, Schema } from "effect"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { type Cgroup, type CgroupFailed, cgroupPathOf, cgroupProcsFiles, makeCgroup, removeCgroups } from "../cgroups.js"
import { openConsole } from "../console.js"
import { NOT_READY, spawnDetached, type Stdio } from "../detached.js"
import { ConfinementUnavailable, confinementOf, nodeFlags } from "../confinement.js"
import { InvalidFlag, NotSupported } from "../errors.js"
import { globalArgs, type GlobalFlags } from "../globals.js"
import { spawnWaiter } from "../holder.js"
import { preparePidFile } from "../pidFile.js"
import { lendStdio } from "../relay.js"
import { rootCommand } from "../root.js"
import { isAlive, processStart, thisProcess } from "../hostProcess.js"
import { type ContainerRecord, type StateDirectory, StateStore } from "../state.js"

export type Status = "creating" | "created" | "running" | "paused" | "stopped"

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

/**
 * The sandbox process of a container exists but does not answer on its control socket (it may
 * be out of file descriptors, stopped, or overloaded). The CLI cannot tell what became of the
 * container, so it does not say: it neither calls it stopped nor destroys it.
 */
export class SandboxNotAnswering extends Schema.TaggedError<SandboxNotAnswering>()("SandboxNotAnswering", {
  id: Schema.String,
  pid: Schema.Number,
  reason: Schema.String
}) {
  override get message(): string {
    return `the sandbox of container ${this.id} (pid ${this.pid}) is alive but not answering (${this.reason}); it is left as it is (delete --force kills it)`
  }
}

/**
 * The record of the container named by `id`. Only the commands that merely look (state, ps,
 * events) accept an abbreviation, and only when nothing of `id` itself exists: every command
 * that changes or waits on a container needs its full id (README, "Container ids").
 */
export const findContainer = (id: string, options: { readonly abbreviated: boolean } = { abbreviated: false }) =>
  Effect.gen(function*() {
    const states = yield* StateStore
    // Validated before it names any file.
    const given = yield* validateContainerId(id)
    const resolved = yield* states.resolve(given, options.abbreviated)
    return { states, record: yield* states.read(resolved) }
  })

/** Waits (at most `ms`) until a sandbox process is gone; whether it is. */
const sandboxGone = (record: ContainerRecord, ms: number) =>
  Effect.gen(function*() {
    for (let i = 0; i < ms / 10 && isAlive(record.sandboxPid, record.sandboxStart); i++) yield* Effect.sleep("10 millis")
    return !isAlive(record.sandboxPid, record.sandboxStart)
  })

/**
 * What a control call that got no answer means: the container is stopped if its sandbox is gone
 * (a sandbox that has just closed its socket gets a moment to finish exiting), and otherwise
 * the sandbox is alive and not answering.
 */
const unanswered = (record: ContainerRecord, reason: string, wanted: string, graceMs: number) =>
  Effect.flatMap(sandboxGone(record, graceMs), (gone): Effect.Effect<never, WrongStatus | SandboxNotAnswering> =>
    gone
      ? Effect.fail(new WrongStatus({ id: record.id, status: "stopped", wanted }))
      : Effect.fail(new SandboxNotAnswering({ id: record.id, pid: record.sandboxPid, reason })))

/**
 * One control call to a container's sandbox; a call that is not answered fails WrongStatus
 * (stopped; `wanted` says what the command needed) or SandboxNotAnswering, never "unreachable".
 */
export const callSandbox = <A, E>(
  record: ContainerRecord,
  method: string,
  f: (client: SandboxClient) => Effect.Effect<A, E | RpcClientError.RpcClientError>,
  options: { readonly timeout?: Duration.DurationInput; readonly wanted?: string } = {}
): Effect.Effect<A, Exclude<E, RpcClientError.RpcClientError> | WrongStatus | SandboxNotAnswering> =>
  call(record.socket, method, f, options.timeout).pipe(
    Effect.catchAll((e): Effect.Effect<never, Exclude<E, RpcClientError.RpcClientError> | WrongStatus | SandboxNotAnswering> =>
      e instanceof SandboxUnreachable ? unanswered(record, e.reason, options.wanted ?? "running", 2000)
      : e instanceof ControlTimeout ? unanswered(record, `no answer to ${method} within ${e.millis} ms`, options.wanted ?? "running", 0)
      : Effect.fail(e as Exclude<E, RpcClientError.RpcClientError>)
    )
  )

/**
 * How long a sandbox may take to answer a status query before it is reported as not answering:
 * as long as any other call, since a sandbox starved of CPU (hundreds booting at once on two
 * cores) answers late but is not hung.
 */
const STATUS_LIMIT = Duration.seconds(30)

/**
 * The status, computed: the state file says what the CLI did, the sandbox what became of it.
 * SandboxNotAnswering when the sandbox lives but does not say.
 */
export const statusOf = (record: ContainerRecord): Effect.Effect<Status, SandboxNotAnswering> =>
  Effect.gen(function*() {
    // A reservation read here is a live create's (a stale one was removed by the read).
    if (record.phase === "creating") return "creating"
    if (!isAlive(record.sandboxPid, record.sandboxStart)) return "stopped"
    if (record.phase === "start-failed") return "stopped"
    const stopped = () => Effect.succeed("stopped" as const)
    const state = yield* callSandbox(record, "RuntimeState", (c) => c.RuntimeState({ id: record.id }), { timeout: STATUS_LIMIT }).pipe(
      Effect.catchTags({ WrongStatus: stopped, ContainerNotFound: stopped })
    )
    if (state !== "running") return state === "creating" ? "created" : "stopped"
    const paused = yield* callSandbox(record, "IsPaused", (c) => c.IsPaused(), { timeout: STATUS_LIMIT }).pipe(
      Effect.catchTag("WrongStatus", () => Effect.succeed(false))
    )
    return paused ? "paused" : "running"
  })

export const print = (text: string) => Effect.sync(() => void Fs.writeSync(1, `${text}\n`))

const warn = (text: string) => Effect.sync(() => void Fs.writeSync(2, `runsc: warning: ${text}\n`))

// ---- create ----------------------------------------------------------------------------------

/**
 * How long a sandbox may take to serve. Generous: under load (hundreds of creates at once on
 * two cores) a boot takes many times its usual half second.
 */
const SANDBOX_START_LIMIT = Duration.seconds(120)

/**
 * Starts `runsc boot` detached with this process's stdio, under `nodeArgs` (its confinement);
 * resolves once it serves (or fails). The sandbox is confirmed when the enclosing scope
 * succeeds and killed when it fails (see detached.ts).
 */
const spawnSandbox = (
  id: string,
  bundle: string,
  socket: string,
  nodeArgs: ReadonlyArray<string>,
  args: ReadonlyArray<string>,
  stdio: Stdio | undefined,
  cgroup: Cgroup | undefined,
  preserved: ReadonlyArray<number>
) =>
  spawnDetached({
    nodeArgs,
    args: [
      ...args,
      "boot",
      "--bundle",
      bundle,
      "--socket",
      socket,
      "--sync-fd",
      "3",
      // They follow the sync fd: its fds 4, 5, ….
      ...(preserved.length > 0 ? ["--preserved-fds", `${preserved.length}`] : []),
      id
    ],
    extraFds: preserved,
    ...(stdio !== undefined ? { stdio } : {}),
    ...(cgroup !== undefined ? { cgroups: cgroupProcsFiles(cgroup) } : {})
  }).pipe(
    Effect.mapError(({ reason }) => new SandboxFailed({ id, reason })),
    // Its init could not be prepared (a program missing or not wasm): the create fails with why.
    Effect.flatMap(({ line, pid }) =>
      line.startsWith(NOT_READY) ? Effect.fail(new SandboxFailed({ id, reason: line.slice(NOT_READY.length) })) : Effect.succeed(pid)
    ),
    Effect.timeoutFail({
      duration: SANDBOX_START_LIMIT,
      onTimeout: () => new SandboxFailed({ id, reason: `it did not serve within ${Duration.format(SANDBOX_START_LIMIT)}` })
    })
  )

const CONTAINER_TYPE = "io.kubernetes.cri.container-type"
const SANDBOX_ID = "io.kubernetes.cri.sandbox-id"

/** The pod's root container that a sub-container's annotations name: a valid id, or an error. */
const sandboxIdOf = (annotations: Readonly<Record<string, string>>) => {
  const sandboxId = annotations[SANDBOX_ID]
  if (sandboxId === undefined) {
    return Effect.fail(new InvalidFlag({ flag: `annotation ${SANDBOX_ID}`, reason: "a container of type container needs its sandbox's id" }))
  }
  // It names files under the state root: never a path.
  return Effect.mapError(
    validateContainerId(sandboxId),
    () => new InvalidFlag({ flag: `annotation ${SANDBOX_ID}`, reason: `${JSON.stringify(sandboxId)} is not a container id` })
  )
}

/**
 * A sub-container (CRI annotations: container-type `container`, sandbox-id naming the pod's
 * root container): registered in that sandbox, with this CLI's stdio lent to it now, to outlive
 * this process. The sandbox reads none of its files: this CLI sends it the spec, and donates
 * the host trees of its root and bind mounts as descriptors it opened (donation.ts), so a
 * confined sandbox serves it without being allowed one more host path. A container-waiter is
 * left to hold it (holder.ts): the host process its --pid-file names. Registered for the
 * enclosing scope: destroyed in the sandbox (and its waiter killed) if it fails.
 */
const joinSandbox = (
  states: StateDirectory,
  reservation: ContainerRecord,
  sandboxId: string,
  bundle: Bundle,
  stdio: Stdio | undefined,
  terminal: boolean
) =>
  Effect.gen(function*() {
    const { id } = reservation
    const sandbox = yield* states.read(sandboxId)
    if (sandbox.sandboxId !== undefined || sandbox.phase === "creating") {
      return yield* new InvalidFlag({ flag: `annotation ${SANDBOX_ID}`, reason: `${sandboxId} is not the root container of a sandbox` })
    }
    if (!isAlive(sandbox.sandboxPid, sandbox.sandboxStart)) {
      return yield* new WrongStatus({ id: sandboxId, status: "stopped", wanted: "running" })
    }
    const { confinement } = sandbox
    // Sent before the request that claims them, so the sandbox finds them queued.
    const donation = Crypto.randomUUID()
    const trees = yield* openTrees(hostTreesOf(bundle).map((tree) => tree.path))
    yield* donateTrees(donationSocketOf(sandbox.socket), donation, trees)
    const { helper, stdio: lent } = yield* lendStdio({
      dir: states.root,
      confined: confinement !== undefined,
      outlivesCli: true,
      globalArgs: globalArgs(yield* rootCommand),
      ...(stdio !== undefined ? { fds: stdio } : {})
    })
    yield* Effect.acquireRelease(
      callSandbox(sandbox, "CreateSubcontainer", (c) =>
        c.CreateSubcontainer({ id, bundle: { dir: bundle.dir, rootPath: bundle.rootPath, spec: bundle.spec }, donation, stdio: lent })),
      (_, exit) =>
        Exit.isFailure(exit) ? Effect.ignore(call(sandbox.socket, "DestroySubcontainer", (c) => c.DestroySubcontainer({ id }))) : Effect.void
    )
    // Its holder, the host process --pid-file names: the container has none of its own.
    const holder = yield* spawnWaiter("container", [
      "container-waiter",
      "--sync-fd",
      "3",
      "--socket",
      sandbox.socket,
      ...(terminal ? ["--terminal"] : []),
      ...(helper !== undefined ? ["--relay", `${helper.pid}:${helper.start}`] : []),
      id
    ])
    const record: ContainerRecord = {
      ...reservation,
      sandboxPid: sandbox.sandboxPid,
      sandboxStart: sandbox.sandboxStart,
      socket: sandbox.socket,
      phase: "created",
      sandboxId,
      ...(confinement !== undefined ? { confinement } : {})
    }
    return { record, holder }
  })

/**
 * Without the privilege to manage cgroups (not root, or --rootless true), a cgroup that cannot
 * be made or entered is skipped with a warning, as runc's rootless mode does; as root it fails
 * the create.
 */
const cgroupRefused = (flags: GlobalFlags, e: CgroupFailed) =>
  process.getuid?.() !== 0 || Option.getOrUndefined(flags.rootless) === "true"
    ? warn(`${e.message}; the sandbox runs outside it (rootless)`)
    : Effect.fail(e)

/** The root container's cgroup (linux.cgroupsPath), made for the enclosing scope: removed if the create fails. */
const sandboxCgroup = (bundle: Bundle, id: string, flags: GlobalFlags) =>
  Effect.gen(function*() {
    const path = yield* cgroupPathOf(bundle.spec, id, flags.systemdCgroup)
    if (path === undefined) return undefined
    return yield* Effect.acquireRelease(
      makeCgroup(path, bundle.spec),
      (cgroup, exit) => (Exit.isFailure(exit) ? removeCgroups(cgroup.made) : Effect.void)
    ).pipe(Effect.catchAll((e) => Effect.as(cgroupRefused(flags, e), undefined)))
  })

/** A root container's own sandbox, started for the enclosing scope (killed if it fails). */
const bootSandbox = (
  states: StateDirectory,
  reservation: ContainerRecord,
  bundle: Bundle,
  stdio: Stdio | undefined,
  preserved: ReadonlyArray<number>
) =>
  Effect.gen(function*() {
    const flags = yield* rootCommand
    if (flags.network === "host") {
      yield* warn(`the sandbox of ${reservation.id} uses the host's network (--network=host): its guests listen on the host and reach anything`)
    }
    const { id } = reservation
    const confinement = flags.unconfined ? undefined : confinementOf({
      bundle,
      files: states.sandboxFiles(id),
      logs: [flags.log, flags.debugLog].flatMap((log) => Option.isSome(log) ? [Path.resolve(log.value)] : []),
      allowRead: flags.allowRead,
      allowWrite: flags.allowWrite
    })
    const nodeArgs = confinement === undefined ? [] : nodeFlags(confinement)
    if (nodeArgs === undefined) return yield* new ConfinementUnavailable({ node: process.version })
    if (confinement === undefined) {
      yield* warn(`the sandbox of ${id} runs unconfined: it can read every host file this user can`)
    }
    // Made before the sandbox starts, which enters it before its first instruction (so all of
    // its memory is charged there); a failed create removes it after killing the sandbox.
    const cgroup = yield* sandboxCgroup(bundle, id, flags)
    const sandboxPid = yield* spawnSandbox(id, bundle.dir, reservation.socket, nodeArgs, globalArgs(flags), stdio, cgroup, preserved)
    const record: ContainerRecord = {
      ...reservation,
      sandboxPid,
      sandboxStart: processStart(sandboxPid),
      phase: "created",
      ...(confinement !== undefined ? { confinement } : {}),
      ...(cgroup !== undefined && cgroup.made.length > 0 ? { cgroups: cgroup.made } : {})
    }
    return record
  })

/**
 * Creates a container: its id reserved; its sandbox process started detached with this
 * process's stdio (the container's) or, with a console socket, a new terminal whose master end
 * goes there; serving; its state file written; then --pid-file, last, as containerd expects;
 * and only then is the sandbox told it is registered. Every step is undone when a later one
 * fails or the create is interrupted: no sandbox, state, socket or file aside is left behind.
 */
export const createContainer = (
  id: string,
  bundle: string,
  pidFile: Option.Option<string>,
  consoleSocket: Option.Option<string>,
  preserved: ReadonlyArray<number> = []
) =>
  Effect.gen(function*() {
    // Validated before it names any file.
    const containerId = yield* validateContainerId(id)
    const states = yield* StateStore
    const dir = Path.resolve(bundle)
    // A bad bundle is reported here, by create, before any process starts.
    const loaded = yield* loadBundle(dir)
    const annotations = loaded.spec.annotations ?? {}
    const sandboxId = annotations[CONTAINER_TYPE] === "container" ? yield* sandboxIdOf(annotations) : undefined
    if (sandboxId !== undefined && preserved.length > 0) {
      return yield* new NotSupported({ flag: "--preserve-fds", reason: "a pod's later container gets only its stdio from its create" })
    }
    // Every file of the id can be made under its full name (a socket path is cut short otherwise).
    yield* states.fits(containerId, sandboxId === undefined)
    const pty = yield* consoleFor(consoleSocket, loaded.spec.process?.terminal ?? false)
    // A --pid-file that cannot be written is found before anything starts.
    const pidFileAside = yield* Option.match(pidFile, { onNone: () => Effect.succeed(undefined), onSome: preparePidFile })
    const me = thisProcess()
    const reservation: ContainerRecord = {
      id: containerId,
      bundle: dir,
      sandboxPid: 0,
      sandboxStart: "",
      socket: states.socketOf(containerId),
      phase: "creating",
      createdBy: me,
      createdAt: new Date(yield* Clock.currentTimeMillis).toISOString(),
      annotations
    }
    yield* Effect.acquireRelease(
      states.reserve(reservation),
      (_, exit) => (Exit.isFailure(exit) ? Effect.ignore(states.abandon(containerId, me)) : Effect.void)
    )
    const { holder, record } = sandboxId !== undefined
      ? yield* joinSandbox(states, reservation, sandboxId, loaded, pty?.stdio, pty !== undefined)
      : { record: yield* bootSandbox(states, reservation, loaded, pty?.stdio, preserved), holder: undefined }
    yield* states.commit(record)
    // The container has its terminal: the caller may have the other end now.
    if (pty !== undefined) yield* pty.send
    // The host process that lives as long as the container's init: its sandbox, or in a pod its holder.
    if (pidFileAside !== undefined) yield* pidFileAside.write(`${holder ?? record.sandboxPid}`)
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

/**
 * runc's create/run/exec flags that engines send. --no-pivot and --no-new-keyring have no
 * meaning for a wasm sandbox (no pivot_root, no kernel keyring): accepted, no effect.
 * --preserve-fds N passes this CLI's fds 3..3+N-1 to the process, as its fds 4..4+N-1 (its fd 3
 * is its root preopen, which WASI guests look for first).
 */
export const runcOnlyOptions = {
  noPivot: Options.boolean("no-pivot").pipe(Options.withDescription("runc's: do not use pivot_root (accepted; no effect)")),
  noNewKeyring: Options.boolean("no-new-keyring").pipe(Options.withDescription("runc's: no new session keyring (accepted; no effect)"))
}

export const preserveFdsOption = Options.integer("preserve-fds").pipe(
  Options.withDescription("pass this CLI's fds 3..3+N-1 to the process, as its fds 4..4+N-1 (after its root preopen)"),
  Options.withDefault(0)
)

/** --preserve-fds N: this CLI's fds 3..3+N-1, each open (a closed one is refused, not skipped). */
export const preservedFds = (n: number): Effect.Effect<ReadonlyArray<number>, InvalidFlag> =>
  Effect.suspend(() => {
    if (n < 0 || n > MAX_DONATED_FDS) return Effect.fail(new InvalidFlag({ flag: "--preserve-fds", reason: `must be from 0 to ${MAX_DONATED_FDS}` }))
    const fds = Array.from({ length: n }, (_, i) => 3 + i)
    const closed = fds.find((fd) => {
      try {
        Fs.fstatSync(fd)
        return false
      } catch {
        return true
      }
    })
    return closed === undefined ? Effect.succeed(fds) : Effect.fail(new InvalidFlag({ flag: "--preserve-fds", reason: `fd ${closed} is not open` }))
  })

export const consoleSocketOption = Options.text("console-socket").pipe(
  Options.withDescription("Unix socket to send the master end of the container's new terminal to (SCM_RIGHTS)"),
  Options.optional
)

export const createCommand = Command.make(
  "create",
  {
    bundle: Options.directory("bundle").pipe(Options.withAlias("b"), Options.withDefault(".")),
    pidFile: Options.text("pid-file").pipe(Options.withDescription("write the sandbox's pid here (last)"), Options.optional),
    consoleSocket: consoleSocketOption,
    ...runcOnlyOptions,
    preserveFds: preserveFdsOption,
    id: Args.text({ name: "container-id" })
  },
  ({ bundle, consoleSocket, id, pidFile, preserveFds }) =>
    Effect.flatMap(preservedFds(preserveFds), (preserved) => Effect.asVoid(createContainer(id, bundle, pidFile, consoleSocket, preserved)))
).pipe(Command.withDescription("create a container: its sandbox process waits for start"))

// ---- start, state, kill, wait, delete, list --------------------------------------------------

/**
 * Starts a created container's root (StartRoot) or sub-container. Nothing is written here: the
 * sandbox keeps the outcome (a container whose start failed is stopped), so that a start that
 * succeeded is never reported otherwise because a state file could not be written.
 */
export const startContainer = (record: ContainerRecord, options: { readonly justCreated: boolean } = { justCreated: false }) =>
  Effect.gen(function*() {
    // A container this CLI has just created is created: no need to ask.
    const status = options.justCreated ? "created" : yield* statusOf(record)
    if (status !== "created") return yield* new WrongStatus({ id: record.id, status, wanted: "created" })
    yield* record.sandboxId === undefined
      ? callSandbox(record, "StartRoot", (c) => c.StartRoot(), { wanted: "created" })
      : callSandbox(record, "StartSubcontainer", (c) => c.StartSubcontainer({ id: record.id, stdio: {} }), {
        wanted: "created"
      })
  })

export const startCommand = Command.make("start", { id: Args.text({ name: "container-id" }) }, ({ id }) =>
  Effect.flatMap(findContainer(id), ({ record }) => startContainer(record))).pipe(
    Command.withDescription("start a created container")
  )

/** The pid `state` and `list` show: a stopped container has none, so 0, as runc prints (the OCI state schema wants pid ≥ 0). */
const pidShown = (status: Status | "unknown", record: ContainerRecord): number =>
  (status === "stopped" || status === "creating" ? 0 : record.sandboxPid)

export const stateCommand = Command.make("state", { id: Args.text({ name: "container-id" }) }, ({ id }) =>
  Effect.gen(function*() {
    const { record } = yield* findContainer(id, { abbreviated: true })
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
      // Stopped: --all has nothing left to clean; anything else is an error, as in runsc. A
      // created container's init gets it too, as runc's does: a signal that ends a process
      // stops the container (and ends a root container's sandbox).
      if (status === "stopped" && all) return
      if (status !== "created" && status !== "running" && status !== "paused") {
        return yield* new WrongStatus({ id: record.id, status, wanted: "created or running" })
      }
      yield* callSandbox(record, "Signal", (c) =>
        c.Signal({ id: record.id, pid: Option.getOrElse(pid, () => 0), signo, mode: all ? "AllProcesses" : "Process" })).pipe(
          // Stopped between the two calls: --all still has nothing to clean.
          Effect.catchIf((e) => all && e._tag === "WrongStatus", () => Effect.void)
        )
    })
).pipe(Command.withDescription("send a signal to a container's init, one of its processes, or all"))

/**
 * `wait [--pid N | --rootpid N] ID`, as runsc has it: the container's init, or one of its
 * processes (exec'd or spawned by a guest). This CLI names every process by its root-namespace
 * pid (ps, kill --pid, exec --internal-pid-file), so --pid and --rootpid name the same one.
 */
export const waitCommand = Command.make(
  "wait",
  {
    pid: Options.integer("pid").pipe(Options.withDescription("wait for this process of the container instead of its init (as ps names it)"), Options.optional),
    rootpid: Options.integer("rootpid").pipe(Options.withDescription("the same, by its pid in the sandbox's root PID namespace"), Options.optional),
    id: Args.text({ name: "container-id" })
  },
  ({ id, pid, rootpid }) =>
    Effect.gen(function*() {
      if (Option.isSome(pid) && Option.isSome(rootpid)) return yield* new InvalidFlag({ flag: "--pid", reason: "cannot be used with --rootpid" })
      const { record, states } = yield* findContainer(id)
      const process = Option.orElse(pid, () => rootpid)
      const code = Option.isNone(process)
        ? yield* waitForExit(states, record)
        : toShellCode(yield* callSandbox(record, "WaitPid", (c) => c.WaitPid({ id: record.id, pid: process.value }), { timeout: Duration.infinity }))
      yield* print(JSON.stringify({ id: record.id, exitStatus: code }))
    })
).pipe(Command.withDescription("wait for a container's init, or one of its processes, and print its exit status"))

/**
 * The exit code of a container's init: from the sandbox while it answers, else from the record
 * it leaves when its root ends (written before its teardown; read once the process is gone).
 */
export const waitForExit = (states: StateDirectory, record: ContainerRecord) =>
  Effect.gen(function*() {
    if (record.phase === "creating") return yield* new WrongStatus({ id: record.id, status: "creating", wanted: "created or running" })
    const live = yield* callSandbox(record, "Wait", (c) => c.Wait({ id: record.id }), { timeout: Duration.infinity }).pipe(
      Effect.map(toShellCode),
      Effect.catchTag("WrongStatus", () => Effect.succeed(undefined))
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
    if (record.sandboxPid <= 0 || !isAlive(record.sandboxPid, record.sandboxStart)) return
    try {
      process.kill(record.sandboxPid, "SIGKILL")
    } catch {
      return
    }
    yield* sandboxGone(record, 5000)
  })

/**
 * Ends what is left of a container and removes every trace of it. A sub-container is destroyed
 * in its pod's sandbox, which goes on (and must answer: a sub-container is never forgotten
 * while it may still run); a root container's sandbox gets `graceMs` to exit by itself (it does
 * once its root has), then is killed.
 */
export const removeContainer = (states: StateDirectory, record: ContainerRecord, graceMs = 0) =>
  Effect.gen(function*() {
    if (record.phase === "creating") {
      // Nothing runs yet: its create finds the reservation gone and kills what it started.
    } else if (record.sandboxId !== undefined) {
      yield* callSandbox(record, "DestroySubcontainer", (c) => c.DestroySubcontainer({ id: record.id })).pipe(
        Effect.catchTag("WrongStatus", () => Effect.void)
      )
    } else if (!(yield* sandboxGone(record, graceMs))) {
      yield* killSandbox(record)
    }
    if (record.cgroups !== undefined) yield* removeCgroups(record.cgroups)
    // A reservation's socket is its live create's business (its sandbox may be serving).
    yield* states.lockedRemoval(record.id, states.remove(record.id, { socket: record.phase !== "creating" }))
  })

export const deleteCommand = Command.make(
  "delete",
  {
    force: Options.boolean("force").pipe(Options.withDescription("delete even if running (its sandbox is killed)")),
    id: Args.text({ name: "container-id" })
  },
  ({ force, id }) =>
    Effect.gen(function*() {
      // With --force, a container that does not exist is deleted already (runc exits 0: engines
      // call it after every delete).
      const found = yield* findContainer(id).pipe(
        Effect.map(Option.some),
        Effect.catchTag("ContainerUnknown", (e) => force ? Effect.succeed(Option.none()) : Effect.fail(e))
      )
      if (Option.isNone(found)) return
      const { record, states } = found.value
      // With --force, a sandbox that does not answer is killed like a running one.
      const status = yield* force ? statusOf(record).pipe(Effect.orElseSucceed(() => "running" as const)) : statusOf(record)
      if ((status === "running" || status === "paused" || status === "creating") && !force) {
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
      const states = yield* StateStore
      const rows = yield* Effect.forEach(yield* states.ids, (id) =>
        states.read(id).pipe(
          Effect.flatMap((record) =>
            Effect.map(
              // A sandbox that does not answer is listed, as what the CLI knows of it.
              statusOf(record).pipe(Effect.orElseSucceed((): Status | "unknown" => "unknown")),
              (status) => ({ record, status })
            )
          ),
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

/** TIME as ps prints it: the CPU time used, [DD-]hh:mm:ss. */
const cpuClock = (cpuNs: bigint) => {
  const total = Number(cpuNs / 1_000_000_000n)
  const [days, hours, minutes, seconds] = [Math.floor(total / 86400), Math.floor(total / 3600) % 24, Math.floor(total / 60) % 60, total % 60]
  const hms = [hours, minutes, seconds].map((n) => String(n).padStart(2, "0")).join(":")
  return days > 0 ? `${days}-${hms}` : hms
}

/** C as ps prints it: CPU time over the time since the process started, in percent. */
const cpuPercent = (cpuNs: bigint, startedAtNs: bigint, nowMs: number) => {
  const lived = nowMs * 1e6 - Number(startedAtNs)
  return lived > 0 ? Math.floor((Number(cpuNs) / lived) * 100) : 0
}

export const psCommand = Command.make(
  "ps",
  {
    format: Options.choice("format", ["table", "json"]).pipe(Options.withDefault("table" as const)),
    id: Args.text({ name: "container-id" })
  },
  ({ format, id }) =>
    Effect.gen(function*() {
      const { record } = yield* findContainer(id, { abbreviated: true })
      const processes = yield* callSandbox(record, "Processes", (c) => c.Processes({ id: record.id }))
      if (format === "json") return yield* print(JSON.stringify(processes.map((p) => p.pid)))
      const now = yield* Clock.currentTimeMillis
      yield* print(["UID", "PID", "PPID", "C", "STIME", "TIME", "CMD"].join("\t"))
      yield* Effect.forEach(processes, (p) =>
        print([p.uid, p.pid, p.ppid, cpuPercent(p.cpuTime, p.startedAt, now), clockTime(p.startedAt), cpuClock(p.cpuTime), p.argv.join(" ")].join("\t")), {
        discard: true
      })
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
      yield* name === "pause"
        ? callSandbox(record, "Pause", (c) => c.Pause(), { wanted })
        : callSandbox(record, "Resume", (c) => c.Resume(), { wanted })
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
      const { record } = yield* findContainer(id, { abbreviated: true })
      // runc's `oom` event: a charge its memory limit refused since the last look (a malloc
      // that returned NULL, a process that could not start, a tmpfs write that failed).
      let failures: number | undefined
      const once = Effect.flatMap(callSandbox(record, "Event", (c) => c.Event({ id: record.id })), (data) =>
        Effect.gen(function*() {
          const { failcnt } = data.memory.usage
          if (failures !== undefined && failcnt > failures) yield* print(JSON.stringify({ type: "oom", id: record.id }))
          failures = failcnt
          yield* print(JSON.stringify({
            type: "stats",
            id: record.id,
            data: {
              cpu: { usage: { total: Number(data.cpu.usage.total) } },
              memory: { usage: data.memory.usage },
              pids: { current: data.pids.current },
              network: data.network
            }
          }))
        }))
      if (stats) return yield* once
      // Until the container stops (its sandbox stops answering).
      while ((yield* statusOf(record)) !== "stopped") {
        yield* once
        yield* Effect.sleep(Duration.seconds(Math.max(1, interval)))
      }
    })
).pipe(Command.withDescription("print a container's stats (cpu, memory, pids, network), once with --stats; without, every --interval seconds, and an `oom` event when its memory limit refused memory"))
