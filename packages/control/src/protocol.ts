/**
 * The control protocol between the runsc CLI and a sandbox process: runsc's containerManager
 * methods (RUNSC.md "Control methods") as one `@effect/rpc` group. Payloads, results and
 * errors are Schemas, so a failure crosses the socket as the same tagged error the Loader
 * raised — never a string.
 *
 * Stdio of the processes a call starts is named by host paths the sandbox opens (a FIFO, a
 * file, or `/proc/<pid>/fd/<n>` of the calling CLI), or by `unix:<socket path>`, a relay the
 * caller listens on (for its fds that are sockets, which cannot be reopened by path): Node
 * cannot pass fds over a Unix socket.
 */
import { Rpc, RpcGroup } from "@effect/rpc"
import {
  AlreadyPaused,
  ContainerAlreadyStarted,
  ContainerExists,
  ContainerNotFound,
  ContainerNotStarted,
  ContainerStopped,
  InvalidCwd,
  InvalidMount,
  InvalidPid,
  InvalidRoot,
  InvalidSignal,
  NoSuchProcess,
  NoTerminal,
  NotPaused,
  PidsLimitReached,
  ProcessInOtherContainer,
  ProgramNotReadable,
  SandboxPanicked
} from "@runsc/loader"
import { DonationFailed, ExecNotFound, InvalidModule, NotWasm, SandboxOutOfMemory } from "@runsc/kernel"
import { BundleNotFound, InvalidContainerId, InvalidSpec, Spec } from "@runsc/spec"
import { Schema } from "effect"

/** A port-forward the sandbox could not listen for (the host refused the address, or the sandbox's network is none). */
export class ForwardFailed extends Schema.TaggedError<ForwardFailed>()("ForwardFailed", {
  address: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `cannot forward ${this.address}: ${this.reason}`
  }
}

/** Prefix of a stdio entry that names a relay socket rather than a file to open. */
export const RELAY_PREFIX = "unix:"

/** A sub-container's bundle as its create read it: the sandbox reads none of its files. */
export const SubcontainerBundle = Schema.Struct({
  dir: Schema.String,
  rootPath: Schema.String,
  spec: Spec
})

/** Host paths the sandbox opens as a process's fds 0, 1, 2 (unset: /dev/null). */
export const StdioPaths = Schema.Struct({
  stdin: Schema.optional(Schema.String),
  stdout: Schema.optional(Schema.String),
  stderr: Schema.optional(Schema.String)
})
export type StdioPaths = typeof StdioPaths.Type

export const ExitStatusSchema = Schema.Union(
  Schema.TaggedStruct("Exited", { code: Schema.Number }),
  Schema.TaggedStruct("Signaled", { signal: Schema.Number })
)

export const SignalModeSchema = Schema.Literal("Process", "AllProcesses", "ProcessGroup", "ForegroundProcessGroup")

export const ProcessInfoSchema = Schema.Struct({
  pid: Schema.Number,
  ppid: Schema.Number,
  pgid: Schema.Number,
  tpgid: Schema.Number,
  uid: Schema.Number,
  containerId: Schema.String,
  state: Schema.String,
  argv: Schema.Array(Schema.String),
  syscalls: Schema.Number,
  startedAt: Schema.BigInt,
  cpuTime: Schema.BigInt
})

export const ContainerStatsSchema = Schema.Struct({
  cpu: Schema.Struct({ usage: Schema.Struct({ total: Schema.BigInt }) }),
  memory: Schema.Struct({ usage: Schema.Struct({ usage: Schema.Number, limit: Schema.Number, failcnt: Schema.Number }) }),
  pids: Schema.Struct({ current: Schema.Number }),
  network: Schema.Struct({
    rx_bytes: Schema.Number,
    tx_bytes: Schema.Number,
    rx_packets: Schema.Number,
    tx_packets: Schema.Number,
    accepted: Schema.Number,
    connected: Schema.Number,
    refused: Schema.Number
  })
})

/** The control server could not open a file the caller named for a process's stdio. */
export class StdioUnavailable extends Schema.TaggedError<StdioUnavailable>()("StdioUnavailable", {
  path: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `stdio ${this.path}: ${this.reason}`
  }
}

const StartErrors = Schema.Union(
  ContainerNotFound,
  ContainerAlreadyStarted,
  ContainerStopped,
  InvalidRoot,
  InvalidMount,
  InvalidSpec,
  InvalidCwd,
  ExecNotFound,
  NotWasm,
  InvalidModule,
  SandboxOutOfMemory,
  ProgramNotReadable,
  StdioUnavailable
)

export class SandboxRpcs extends RpcGroup.make(
  Rpc.make("StartRoot", { success: Schema.Number, error: StartErrors }),
  // Stdio named at create is opened at once (the creating CLI may be gone by start) and held
  // until the container starts, or is destroyed; so are its bundle and the host trees its
  // creator donated (`donation` is the token it sent them with: see donation.ts), which the
  // sandbox mounts at the start instead of opening any path of the container.
  Rpc.make("CreateSubcontainer", {
    payload: {
      id: Schema.String,
      bundle: SubcontainerBundle,
      donation: Schema.String,
      stdio: Schema.optional(StdioPaths)
    },
    error: Schema.Union(ContainerExists, InvalidContainerId, StdioUnavailable, DonationFailed)
  }),
  Rpc.make("StartSubcontainer", {
    payload: { id: Schema.String, stdio: StdioPaths },
    success: Schema.Number,
    error: Schema.Union(StartErrors, InvalidSpec, BundleNotFound)
  }),
  Rpc.make("DestroySubcontainer", { payload: { id: Schema.String } }),
  Rpc.make("ExecuteAsync", {
    payload: {
      id: Schema.String,
      argv: Schema.Array(Schema.String),
      env: Schema.optional(Schema.Array(Schema.String)),
      cwd: Schema.optional(Schema.String),
      uid: Schema.optional(Schema.Number),
      terminal: Schema.optional(Schema.Boolean),
      stdio: StdioPaths,
      /** The token its CLI donated its --preserve-fds with (see CreateSubcontainer's `donation`). */
      preserved: Schema.optional(Schema.String)
    },
    success: Schema.Number,
    error: Schema.Union(StartErrors, ContainerNotStarted, ContainerStopped, PidsLimitReached, DonationFailed)
  }),
  Rpc.make("Wait", {
    payload: { id: Schema.String },
    success: ExitStatusSchema,
    error: Schema.Union(ContainerNotFound, ContainerNotStarted, SandboxPanicked)
  }),
  // A sub-container's holder (the host process its --pid-file names): waits from its create
  // until its init has started and exited; the holder going away (the call interrupted) kills it.
  Rpc.make("HoldContainer", {
    payload: { id: Schema.String },
    success: ExitStatusSchema,
    error: Schema.Union(ContainerNotFound, ContainerNotStarted)
  }),
  Rpc.make("WaitPid", {
    payload: {
      id: Schema.String,
      pid: Schema.Number,
      /**
       * The caller holds the process (a host process stands for it, as `runsc exec` and its
       * detached waiter do): should the caller go away before the process has exited, the
       * process is SIGKILLed, as a runc process dies with the pid an engine kills.
       */
      holder: Schema.optional(Schema.Boolean)
    },
    success: ExitStatusSchema,
    error: Schema.Union(ContainerNotFound, InvalidPid, NoSuchProcess, ProcessInOtherContainer)
  }),
  Rpc.make("Signal", {
    payload: { id: Schema.String, pid: Schema.Number, signo: Schema.Number, mode: SignalModeSchema },
    error: Schema.Union(
      ContainerNotFound,
      ContainerNotStarted,
      InvalidPid,
      InvalidSignal,
      NoSuchProcess,
      ProcessInOtherContainer,
      NoTerminal
    )
  }),
  Rpc.make("Processes", {
    payload: { id: Schema.String },
    success: Schema.Array(ProcessInfoSchema),
    error: ContainerNotFound
  }),
  Rpc.make("Event", { payload: { id: Schema.String }, success: ContainerStatsSchema, error: ContainerNotFound }),
  // runsc port-forward: the sandbox listens on the host address for as long as the call is
  // open, bridging each connection to the guest port on its loopback; it says "listening" once.
  Rpc.make("Forward", {
    payload: { hostAddress: Schema.String, hostPort: Schema.Number, guestPort: Schema.Number },
    success: Schema.Literal("listening"),
    error: ForwardFailed,
    stream: true
  }),
  Rpc.make("Pause", { error: AlreadyPaused }),
  Rpc.make("Resume", { error: NotPaused }),
  Rpc.make("IsPaused", { success: Schema.Boolean }),
  Rpc.make("RuntimeState", {
    payload: { id: Schema.String },
    success: Schema.Literal("creating", "running", "stopped"),
    error: ContainerNotFound
  })
) {}
