/**
 * A container of the sandbox, as an actor: one fiber takes its lifecycle requests (prepare,
 * start, exec, a signal to its init or to all of its processes, its init's exit, destroy) from a
 * mailbox, one at a time, and is the only writer of its state. So the requests of one container
 * are serialized by that container alone: a slow start stalls no other container, and nothing
 * sandbox-wide is locked.
 * Waits need no turn: they wait on the init's or a process's exit status.
 *
 * The container owns a Scope that owns everything of it, acquired in the order that makes
 * release right by construction: `resources` (its root filesystem, its mounts, their host
 * descriptors and memory) first, its TaskSet (its processes) last; closing the scope SIGKILLs
 * every process, waits for each to exit, and only then releases the filesystems. Closing the
 * scope is the destroy; the actor runs it uninterruptibly, and answers every later request with
 * ContainerNotFound.
 *
 * Invariant 5: a kill of all its processes holds the TaskSet's admission closed while it runs (a
 * guest's spawn meanwhile is refused, or registered before and killed), and an exec starts its
 * process in the actor's turn, never between the kill's steps.
 */
import { defaultAction, type ExitStatus, SIGKILL, signaled } from "@runsc/abi"
import {
  type Dentry,
  type DonatedFds,
  type InvalidModule,
  type KernelShape,
  PidNamespace,
  parseIp,
  type SandboxOutOfMemory,
  type SocketAddress,
  type SocketDescription,
  type SyntheticMount,
  type SyscallError,
  type TaskSet,
  type ThreadGroup
} from "@runsc/kernel"
import {
  type Bundle,
  type BundleNotFound,
  InvalidSpec,
  LISTEN_ANNOTATION,
  type ListenAddress,
  listenAddressesOf,
  memoryAtLimitOf,
  memoryLimitOf,
  pidNamespace,
  pidsLimitOf,
  type Spec
} from "@runsc/spec"
import { Deferred, Effect, ExecutionStrategy, Exit, FiberId, FiberSet, Queue, Scope } from "effect"
import {
  ContainerAlreadyStarted,
  ContainerNotFound,
  ContainerNotStarted,
  ContainerStopped,
  InvalidMount,
  InvalidRoot,
  NoSuchProcess,
  PidsLimitReached
} from "./errors.js"
import { cpuQuotaOf, enforceCpuQuota } from "./cpuQuota.js"
import { type CpuShares, cpuSharesOf } from "./cpuShares.js"
import {
  guestPathOf,
  type LaunchArgs,
  maxFdsOf,
  prepareLaunch,
  type LaunchError,
  type PreparedLaunch,
  type Stdio,
  startPrepared
} from "./launch.js"

/**
 * `created`: registered, not started; `running`: its init runs; `stopped`: its init has exited,
 * its start failed, or a signal killed it before its start.
 */
export type ContainerState = "created" | "running" | "stopped"

/** How the root container's program is found and its HOME set (`runsc do`; see LoaderArgs). */
export interface InitOptions {
  readonly hostProgram?: string | undefined
  readonly homeFromPasswd?: boolean | undefined
}

/** What a container needs of the sandbox around it. */
export interface Sandbox {
  readonly kernel: KernelShape
  /** Where its CPU shares are weighed against the other containers'. */
  readonly cpuShares: CpuShares
  /** The PID namespace an earlier container made for the spec's namespace `path`. */
  readonly namespaceAt: (path: string) => Effect.Effect<PidNamespace<ThreadGroup> | undefined>
  /** Its init has started. */
  readonly started: (container: Container) => Effect.Effect<void>
  /** Its init has exited, or a signal killed it before its start (the container has stopped). */
  readonly stopped: (container: Container) => Effect.Effect<void>
  /** The container has been destroyed: forget it. */
  readonly destroyed: (container: Container) => Effect.Effect<void>
  /** A listening socket of the sandbox's network for a container's processes (LISTEN_ANNOTATION). */
  readonly listen: (tasks: TaskSet, address: SocketAddress) => Effect.Effect<SocketDescription, SyscallError>
  /** The ports `container`'s spec publishes (PUBLISH_ANNOTATION), for the enclosing scope. */
  readonly publish: (container: Container, spec: Spec) => Effect.Effect<void, InvalidSpec, Scope.Scope>
}

const LISTEN_PATH = `annotations["${LISTEN_ANNOTATION}"]`

/** ContainerStopped: its init could not join its PID namespace, whose init has died (or the sandbox is ending). */
export type StartError = ContainerNotFound | ContainerAlreadyStarted | ContainerStopped | InvalidRoot | InvalidMount | InvalidSpec | LaunchError

/** A start's failures, reading its bundle's included. */
type InitError = StartError | BundleNotFound

type ExecError = ContainerNotFound | ContainerNotStarted | ContainerStopped | PidsLimitReached | InvalidModule | SandboxOutOfMemory

type Request =
  | {
    readonly _tag: "Start"
    readonly bundle: Effect.Effect<Bundle, InitError>
    readonly stdio: Stdio
    readonly options: InitOptions
    readonly reply: Deferred.Deferred<number, InitError | ContainerNotFound>
  }
  | {
    readonly _tag: "Prepare"
    readonly bundle: Effect.Effect<Bundle, InitError>
    readonly stdio: Stdio
    readonly options: InitOptions
    readonly reply: Deferred.Deferred<void, InitError | ContainerNotFound>
  }
  | {
    readonly _tag: "Exec"
    readonly prepared: PreparedLaunch
    readonly reply: Deferred.Deferred<number, ExecError>
  }
  | { readonly _tag: "SignalAll"; readonly signo: number; readonly reply: Deferred.Deferred<void, ContainerNotFound> }
  | { readonly _tag: "SignalInit"; readonly signo: number; readonly reply: Deferred.Deferred<void, NoSuchProcess | ContainerNotFound> }
  | { readonly _tag: "InitExited" }
  | { readonly _tag: "Destroy"; readonly reply: Deferred.Deferred<void, ContainerNotFound> }

export class Container {
  // Written by the actor only.
  private current: ContainerState = "created"
  private initProcess: ThreadGroup | undefined
  /** The status a signal gave it before its start (runc's created container dies of one). */
  private killedBeforeStart: ExitStatus | undefined
  /** Its init, prepared at create for its start (`prepare`). */
  private pending: PreparedInit | undefined
  private started: {
    readonly spec: Spec
    readonly root: Dentry
    /** The filesystems mounted in its view (its tmpfs trees live as long as the container). */
    readonly mounts: ReadonlyArray<SyntheticMount>
    readonly pidNamespace: PidNamespace<ThreadGroup>
    /** The spec's `pid` namespace path, for later containers that join it. */
    readonly pidNamespacePath: string | undefined
  } | undefined
  private destroyed = false
  /** Completed once it is no longer created: started, or stopped before (or instead of) a start. */
  private readonly settledSignal = Deferred.unsafeMake<void>(FiberId.none)
  /** Processes started by exec, by root-namespace pid, until waitPid consumes them. */
  readonly execs = new Map<number, ThreadGroup>()

  private constructor(
    readonly id: string,
    private readonly sandbox: Sandbox,
    /** The container: closing it is its destroy. */
    private readonly scope: Scope.CloseableScope,
    /** What its processes use; closed after every one of them has exited. */
    private readonly resources: Scope.Scope,
    /** Its processes (a child a guest spawns joins its parent's). */
    readonly tasks: TaskSet,
    private readonly mailbox: Queue.Queue<Request>,
    /** Completed when the actor has ended (after a destroy, or at the sandbox's teardown). */
    private readonly ended: Deferred.Deferred<void>,
    /** What its create gave: its bundle and host trees, for its start. */
    readonly created: CreatedWith | undefined
  ) {}

  /**
   * A created container: its scope a child of `parent`, its actor a fiber of `actors` (run
   * outside the container's scope, which the actor itself closes).
   */
  static make(
    id: string,
    sandbox: Sandbox,
    parent: Scope.Scope,
    actors: FiberSet.FiberSet,
    created?: CreatedWith
  ): Effect.Effect<Container> {
    return Effect.gen(function*() {
      const scope = yield* Scope.fork(parent, ExecutionStrategy.sequential)
      // Forked first, so closed last: what the container's processes use.
      const resources = yield* Scope.fork(scope, ExecutionStrategy.sequential)
      // Donated trees its start never mounted are closed with it.
      const trees = created?.trees
      if (trees !== undefined) yield* Scope.addFinalizer(resources, Effect.sync(() => trees.close()))
      // Made after, so released first: closing the container kills its processes and waits for them.
      const tasks = yield* sandbox.kernel.taskSet(id).pipe(Scope.extend(scope))
      const mailbox = yield* Queue.unbounded<Request>()
      const ended = yield* Deferred.make<void>()
      const container = new Container(id, sandbox, scope, resources, tasks, mailbox, ended, created)
      // Interruptible whoever creates it (a control call runs uninterruptibly): the sandbox's
      // teardown interrupts the actor.
      yield* FiberSet.run(actors, Effect.interruptible(container.serve))
      return container
    })
  }

  get state(): ContainerState {
    return this.current
  }

  /** Waits until it is no longer created: its init started, or it stopped without one. */
  get settled(): Effect.Effect<void> {
    return Deferred.await(this.settledSignal)
  }

  private leaveCreated(state: "running" | "stopped"): void {
    this.current = state
    Deferred.unsafeDone(this.settledSignal, Exit.void)
  }

  get init(): ThreadGroup | undefined {
    return this.initProcess
  }

  /**
   * Its init's exit status once it has exited, or the status a signal gave it before its start;
   * ContainerNotStarted while it is created, or when its start failed.
   */
  get exitStatus(): Effect.Effect<ExitStatus, ContainerNotStarted> {
    return Effect.suspend(() => {
      if (this.initProcess !== undefined) return Deferred.await(this.initProcess.exitStatus)
      if (this.killedBeforeStart !== undefined) return Effect.succeed(this.killedBeforeStart)
      return Effect.fail(new ContainerNotStarted({ id: this.id }))
    })
  }

  get pidNamespace(): PidNamespace<ThreadGroup> | undefined {
    return this.started?.pidNamespace
  }

  get pidNamespacePath(): string | undefined {
    return this.started?.pidNamespacePath
  }

  // ---- requests -------------------------------------------------------------------------------

  /** Starts its init (the bundle read in the actor's turn); returns the init's root-namespace pid. */
  start(bundle: Effect.Effect<Bundle, InitError>, stdio: Stdio, options: InitOptions = {}): Effect.Effect<number, InitError> {
    return this.ask<number, InitError>((reply) => ({ _tag: "Start", bundle, stdio, options, reply }))
  }

  /**
   * Prepares its init for a later start (what runc's create does): its filesystems, PID
   * namespace and program, so that a missing or broken program fails here, and the start only
   * starts the process. The start then ignores its own bundle and stdio.
   */
  prepare(bundle: Effect.Effect<Bundle, InitError>, stdio: Stdio, options: InitOptions = {}): Effect.Effect<void, InitError> {
    return this.ask<void, InitError>((reply) => ({ _tag: "Prepare", bundle, stdio, options, reply }))
  }

  /**
   * What an exec needs to prepare its process outside the actor (its program found and
   * compiled, which takes long): the container's root, mounts, namespace and spec, while it runs.
   */
  get execBase(): Effect.Effect<Omit<LaunchArgs, "argv" | "env" | "cwd" | "uid" | "stdio" | "terminal"> & { readonly spec: Spec }, ContainerNotFound | ContainerNotStarted | ContainerStopped> {
    return Effect.suspend(() => {
      const refused = this.refusesExec()
      if (refused !== undefined) return Effect.fail(refused)
      const started = this.started!
      return Effect.succeed({
        spec: started.spec,
        root: started.root,
        syntheticMounts: started.mounts,
        maxFds: maxFdsOf(started.spec.process!),
        pidNamespace: started.pidNamespace,
        tasks: this.tasks
      })
    })
  }

  /** Starts a prepared process in it (in the actor's turn); returns its root-namespace pid. */
  exec(prepared: PreparedLaunch): Effect.Effect<number, ExecError> {
    return this.ask<number, ExecError>((reply) => ({ _tag: "Exec", prepared, reply }))
  }

  /**
   * Signals every live process. For SIGKILL the container's admission stays closed until each
   * has exited (a wait of the container's, not the caller's: the call returns once the signals
   * are sent, as runc's kill does).
   */
  signalAll(signo: number): Effect.Effect<void, ContainerNotFound> {
    return this.ask<void, never>((reply) => ({ _tag: "SignalAll", signo, reply }))
  }

  /**
   * A signal for its init, which a created container has too, as runc's does (its init waits
   * there to exec the program): one whose default action ends a process stops the container
   * with that signal as its status, and the sandbox of a root container exits; any other (0,
   * one ignored by default, SIGSTOP, SIGCONT) changes nothing. Once started, the init gets it.
   */
  signalInit(signo: number): Effect.Effect<void, NoSuchProcess | ContainerNotFound> {
    return this.ask<void, NoSuchProcess>((reply) => ({ _tag: "SignalInit", signo, reply }))
  }

  /**
   * Kills every process, waits for each to exit, releases everything, and forgets the container;
   * idempotent: a destroy sent while one runs, or after, returns once that one has completed.
   */
  get destroy(): Effect.Effect<void> {
    return Effect.catchTag(this.ask<void, never>((reply) => ({ _tag: "Destroy", reply })), "ContainerNotFound", () => Deferred.await(this.ended))
  }

  /**
   * Sends a request and waits for its answer. The request is carried out even if the caller is
   * interrupted meanwhile. Once the container is destroyed (or the sandbox ends), a request is
   * answered ContainerNotFound, whether sent before or after: the check and the send are one
   * synchronous step, and the actor answers every request left when it ends.
   */
  private ask<A, E>(request: (reply: Deferred.Deferred<A, E | ContainerNotFound>) => Request): Effect.Effect<A, E | ContainerNotFound> {
    return Effect.suspend(() => {
      if (this.destroyed) return Effect.fail(new ContainerNotFound({ id: this.id }))
      const reply = Deferred.unsafeMake<A, E | ContainerNotFound>(FiberId.none)
      Queue.unsafeOffer(this.mailbox, request(reply))
      return Deferred.await(reply)
    })
  }

  // ---- the actor --------------------------------------------------------------------------------

  /**
   * Takes requests until the container is destroyed. When it ends (so, also when the sandbox's
   * teardown interrupts it), the request it was serving and every one still queued are
   * answered ContainerNotFound: no sender waits forever.
   */
  private get serve(): Effect.Effect<void> {
    let serving: Request | undefined
    const loop = Effect.gen(this, function*() {
      while (!this.destroyed) {
        const request = yield* Queue.take(this.mailbox)
        serving = request
        switch (request._tag) {
          case "Start":
            yield* Deferred.complete(request.reply, this.startInit(request.bundle, request.stdio, request.options))
            break
          case "Prepare":
            yield* Deferred.complete(request.reply, this.prepareNow(request.bundle, request.stdio, request.options))
            break
          case "Exec":
            yield* Deferred.complete(request.reply, this.startExec(request.prepared))
            break
          case "SignalAll":
            yield* Deferred.complete(request.reply, this.signalEvery(request.signo))
            break
          case "SignalInit":
            yield* Deferred.complete(request.reply, this.signalInitNow(request.signo))
            break
          case "InitExited":
            this.current = "stopped"
            yield* this.sandbox.stopped(this)
            break
          case "Destroy":
            yield* Deferred.complete(request.reply, this.close)
            break
        }
        serving = undefined
      }
    })
    const end = Effect.gen(this, function*() {
      this.destroyed = true
      const left = [...(serving ? [serving] : []), ...(yield* Queue.takeAll(this.mailbox))]
      const gone = new ContainerNotFound({ id: this.id })
      for (const request of left) {
        // Each reply's own type (every one has room for ContainerNotFound).
        switch (request._tag) {
          case "Start":
            Deferred.unsafeDone(request.reply, Exit.fail(gone))
            break
          case "Prepare":
            Deferred.unsafeDone(request.reply, Exit.fail(gone))
            break
          case "Exec":
            Deferred.unsafeDone(request.reply, Exit.fail(gone))
            break
          case "SignalInit":
            Deferred.unsafeDone(request.reply, Exit.fail(gone))
            break
          case "SignalAll":
          case "Destroy":
            Deferred.unsafeDone(request.reply, Exit.fail(gone))
            break
        }
      }
      yield* Queue.shutdown(this.mailbox)
      yield* Deferred.succeed(this.ended, undefined)
    })
    return Effect.ensuring(loop, end)
  }

  private refusesExec(): ContainerNotFound | ContainerNotStarted | ContainerStopped | undefined {
    if (this.destroyed) return new ContainerNotFound({ id: this.id })
    if (this.current === "created") return new ContainerNotStarted({ id: this.id })
    if (this.current === "stopped" || !this.initProcess?.isAlive || !this.tasks.isOpen) return new ContainerStopped({ id: this.id })
    return undefined
  }

  private startExec(prepared: PreparedLaunch): Effect.Effect<number, ExecError> {
    return Effect.gen(this, function*() {
      const refused = this.refusesExec()
      if (refused !== undefined) return yield* refused
      const tg = yield* startPrepared(this.sandbox.kernel, prepared).pipe(
        Effect.catchTag("ProcessCreationRefused", (): Effect.Effect<never, PidsLimitReached | ContainerStopped> =>
          this.tasks.isFull ? new PidsLimitReached({ id: this.id, limit: this.tasks.limit! }) : new ContainerStopped({ id: this.id }))
      )
      this.execs.set(tg.rootPid, tg)
      return tg.rootPid
    })
  }

  private signalEvery(signo: number): Effect.Effect<void> {
    return Effect.uninterruptible(Effect.gen(this, function*() {
      const release = this.tasks.hold()
      const signalled = this.tasks.live
      const { kernel } = this.sandbox
      yield* signo === SIGKILL ? kernel.killAll(signalled) : Effect.forEach(signalled, (tg) => kernel.signal(tg, signo), { discard: true })
      if (signo !== SIGKILL) return release()
      const exited = Effect.forEach(signalled, (tg) => Deferred.await(tg.exitStatus), { discard: true })
      yield* Effect.forkIn(Effect.interruptible(Effect.ensuring(exited, Effect.sync(release))), this.scope)
    }))
  }

  private signalInitNow(signo: number): Effect.Effect<void, NoSuchProcess> {
    return Effect.suspend(() => {
      if (this.current === "created") {
        const action = defaultAction(signo)
        if (signo === 0 || (action !== "terminate" && action !== "core")) return Effect.void
        this.killedBeforeStart = signaled(signo)
        this.leaveCreated("stopped")
        return this.sandbox.stopped(this)
      }
      const init = this.initProcess
      if (init === undefined || !init.isAlive) return Effect.fail(new NoSuchProcess({ pid: init?.rootPid ?? 0 }))
      return this.sandbox.kernel.signal(init, signo)
    })
  }

  /**
   * The destroy: its scope closed (kill, wait, release), then the container forgotten. Until
   * then its id stays taken, and a concurrent destroy returns only when this one has completed.
   */
  private get close(): Effect.Effect<void> {
    return Effect.uninterruptible(Effect.gen(this, function*() {
      this.destroyed = true
      this.leaveCreated("stopped")
      yield* Scope.close(this.scope, Exit.void)
      yield* this.sandbox.destroyed(this)
    }))
  }

  /**
   * Prepares its init ahead of the start, as runc's create does (the process set up, its
   * program found): everything but the process itself, held until the start. A prepare that
   * fails leaves the container stopped, having given back all it took.
   */
  private prepareNow(bundle: Effect.Effect<Bundle, InitError>, stdio: Stdio, options: InitOptions): Effect.Effect<void, InitError> {
    return Effect.gen(this, function*() {
      if (this.killedBeforeStart !== undefined) return yield* new ContainerStopped({ id: this.id })
      if (this.current !== "created" || this.pending !== undefined) return yield* new ContainerAlreadyStarted({ id: this.id })
      const started = yield* Scope.fork(this.resources, ExecutionStrategy.sequential)
      this.pending = yield* Effect.flatMap(bundle, (loaded) => this.prepareInit(loaded, stdio, options, started)).pipe(
        Effect.onError((cause) => Effect.zipRight(Scope.close(started, Exit.failCause(cause)), Effect.sync(() => this.leaveCreated("stopped"))))
      )
    })
  }

  /**
   * A start that fails leaves the container stopped, as runc does, having given back all it
   * took. An init prepared at create starts as prepared (its bundle and stdio were given then).
   */
  private startInit(bundle: Effect.Effect<Bundle, InitError>, stdio: Stdio, options: InitOptions): Effect.Effect<number, InitError> {
    return Effect.gen(this, function*() {
      if (this.killedBeforeStart !== undefined) return yield* new ContainerStopped({ id: this.id })
      if (this.current !== "created") return yield* new ContainerAlreadyStarted({ id: this.id })
      const pending = this.pending
      this.pending = undefined
      // What the start takes is held in a scope of its own within `resources`: closed with the
      // container, or at once if the start fails.
      const started = pending?.started ?? (yield* Scope.fork(this.resources, ExecutionStrategy.sequential))
      const ready = pending !== undefined
        ? Effect.succeed(pending)
        : Effect.flatMap(bundle, (loaded) => this.prepareInit(loaded, stdio, options, started))
      return yield* Effect.flatMap(ready, (init) => this.launchInit(init)).pipe(
        Effect.onError((cause) => Effect.zipRight(Scope.close(started, Exit.failCause(cause)), Effect.sync(() => this.leaveCreated("stopped"))))
      )
    })
  }

  /** Its init up to the process itself: its mounts, PID namespace and program, held in `started`. */
  private prepareInit(bundle: Bundle, stdio: Stdio, options: InitOptions, started: Scope.CloseableScope): Effect.Effect<PreparedInit, InitError> {
    return Effect.gen(this, function*() {
      const { kernel } = this.sandbox
      const { spec } = bundle
      const process = spec.process
      // loadBundle refuses such a spec; one given in memory is refused here, as runc does.
      if (process === undefined) return yield* new InvalidSpec({ path: "process", reason: "required field is missing" })
      // Every process of the container counts, its init and execs included, as in its cgroup: its
      // pids against its pids limit; its guest memory, worker shares and in-memory files against
      // its memory limit (an account within the sandbox's; without a limit, the sandbox's size).
      this.tasks.limit = pidsLimitOf(spec)
      yield* kernel.limitMemory(this.tasks, memoryLimitOf(spec) ?? kernel.memory.total, memoryAtLimitOf(spec))
      // What it holds (host trees, in-memory files) goes back when the container is destroyed.
      // A container given its bundle at create starts from that bundle (Loader.startSubcontainer).
      const trees = this.created?.trees
      const { root, mounts } = yield* kernel.mountNamespace({
        spec,
        account: this.tasks.memory ?? kernel.memory,
        bundleDir: bundle.dir,
        rootPath: bundle.rootPath,
        ...(trees !== undefined ? { trees } : {})
      }).pipe(
        Scope.extend(started),
        Effect.mapError((e) =>
          e._tag === "InvalidRoot"
            ? new InvalidRoot({ path: e.path, reason: e.reason })
            : new InvalidMount({ destination: e.destination, reason: e.reason })
        )
      )
      // Run before the above: the container's structure has every process of it dead by now.
      // Should one live, it is a sentry bug, said loudly.
      yield* Scope.addFinalizer(started, Effect.suspend(() => {
        const alive = this.tasks.live.length
        return alive === 0 ? Effect.void : Effect.logError(`sentry bug: container ${this.id} releases its filesystems under ${alive} live process(es)`)
      }))
      const listening = listenAddressesOf(spec)
      if ("reason" in listening) return yield* new InvalidSpec({ path: LISTEN_PATH, reason: listening.reason })
      // runsc's rule: no pid namespace → the root one; a path used by an earlier container →
      // join it; otherwise a new child of the root namespace.
      const wanted = pidNamespace(spec)
      const joined = wanted._tag === "New" && wanted.path !== undefined ? yield* this.sandbox.namespaceAt(wanted.path) : undefined
      const namespace = wanted._tag === "Shared"
        ? kernel.rootPidNamespace
        : joined ?? new PidNamespace<ThreadGroup>(kernel.rootPidNamespace)
      const launchArgs: LaunchArgs = {
        root,
        argv: process.args,
        env: process.env ?? [],
        cwd: process.cwd,
        uid: process.user?.uid ?? 0,
        stdio,
        syntheticMounts: mounts,
        maxFds: maxFdsOf(process),
        pidNamespace: namespace,
        terminal: process.terminal ?? false,
        hostProgram: options.hostProgram === undefined ? undefined : {
          hostPath: options.hostProgram,
          guestPath: guestPathOf(options.hostProgram, bundle.rootPath, mounts.map((m) => m.path))
        },
        homeFromPasswd: options.homeFromPasswd,
        tasks: this.tasks
      }
      // The program's module is held compiled until the start has used it.
      const lease = yield* Scope.fork(started, ExecutionStrategy.sequential)
      const prepared = yield* prepareLaunch(kernel, launchArgs).pipe(Scope.extend(lease))
      return {
        spec,
        root,
        mounts,
        namespace,
        pidNamespacePath: wanted._tag === "New" ? wanted.path : undefined,
        prepared,
        listeners: listening.addresses,
        lease,
        started
      }
    })
  }

  /** Listening sockets at `addresses`, in order; none left open when one cannot be made (in use, say). */
  private openListeners(addresses: ReadonlyArray<ListenAddress>): Effect.Effect<ReadonlyArray<SocketDescription>, InvalidSpec> {
    const opened: Array<SocketDescription> = []
    return Effect.forEach(addresses, (at) => {
      const ip = parseIp(at.address)!
      const text = at.family === "ipv6" ? `[${at.address}]:${at.port}` : `${at.address}:${at.port}`
      return this.sandbox.listen(this.tasks, { ...ip, port: at.port }).pipe(
        Effect.map((socket) => void opened.push(socket)),
        Effect.mapError((e) => new InvalidSpec({ path: LISTEN_PATH, reason: `cannot listen on ${text}: ${e.message}` }))
      )
    }).pipe(
      Effect.as(opened),
      Effect.tapError(() => Effect.forEach(opened, (socket) => socket.close, { discard: true }))
    )
  }

  /** Starts a prepared init: the container runs from here. */
  private launchInit(init: PreparedInit): Effect.Effect<number, InitError> {
    return Effect.gen(this, function*() {
      const { kernel } = this.sandbox
      // Its CPU quota, enforced from before its init runs until the container is released.
      const quota = cpuQuotaOf(init.spec)
      if (quota !== undefined) yield* Effect.forkIn(Effect.interruptible(enforceCpuQuota(kernel, this.tasks, quota)), init.started)
      // Its weight against the other containers while they contend for the cores.
      yield* this.sandbox.cpuShares.join(this.tasks, cpuSharesOf(init.spec)).pipe(Scope.extend(init.started))
      // Its published ports, from now until it is released.
      yield* this.sandbox.publish(this, init.spec).pipe(Scope.extend(init.started), Effect.tapError(() => Scope.close(init.lease, Exit.void)))
      // Its listeners, bound now (as its program would bind them when it starts), follow its
      // preserved fds; the process owns them from its start, and they close if it cannot start.
      const listeners = yield* this.openListeners(init.listeners).pipe(Effect.tapError(() => Scope.close(init.lease, Exit.void)))
      const { stdio } = init.prepared.args
      const prepared = listeners.length === 0
        ? init.prepared
        : { ...init.prepared, args: { ...init.prepared.args, stdio: { ...stdio, preserved: [...(stdio.preserved ?? []), ...listeners] } } }
      const tg = yield* startPrepared(kernel, prepared).pipe(
        Effect.onError(() => Effect.forEach(listeners, (listener) => listener.close, { discard: true })),
        Effect.ensuring(Scope.close(init.lease, Exit.void)),
        Effect.catchTag("ProcessCreationRefused", () => new ContainerStopped({ id: this.id }))
      )
      this.started = {
        spec: init.spec,
        root: init.root,
        mounts: init.mounts,
        pidNamespace: init.namespace,
        pidNamespacePath: init.pidNamespacePath
      }
      this.initProcess = tg
      this.leaveCreated("running")
      yield* this.sandbox.started(this)
      // The init's exit is a request like any other: the actor records it in its turn.
      yield* Effect.forkIn(
        Effect.interruptible(Effect.zipRight(Deferred.await(tg.exitStatus), Queue.offer(this.mailbox, { _tag: "InitExited" }))),
        this.scope
      )
      return tg.rootPid
    })
  }
}

/**
 * What a container may be given at its create (`Loader.createSubcontainer`): its bundle, and
 * the host trees of its root and bind mounts opened by its creator (`DonatedFds`), which its
 * start then mounts instead of opening their paths.
 */
export interface CreatedWith {
  readonly bundle: Bundle
  readonly trees?: DonatedFds
}

/** An init prepared for its start (Container.prepareInit). */
interface PreparedInit {
  readonly spec: Spec
  /** Where its init's listeners are bound at its start (LISTEN_ANNOTATION). */
  readonly listeners: ReadonlyArray<ListenAddress>
  readonly root: Dentry
  readonly mounts: ReadonlyArray<SyntheticMount>
  readonly namespace: PidNamespace<ThreadGroup>
  readonly pidNamespacePath: string | undefined
  readonly prepared: PreparedLaunch
  /** Holds the program's compiled module until the start. */
  readonly lease: Scope.CloseableScope
  /** Holds what the container's processes use (its filesystems), until its destroy. */
  readonly started: Scope.CloseableScope
}
