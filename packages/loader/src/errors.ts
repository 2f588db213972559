/**
 * Failures of the Loader that a caller can act on. Kernel and spec errors (NotWasm,
 * ExecNotFound, InvalidModule, InvalidSpec, BundleNotFound) pass through unchanged. All are
 * `Schema.TaggedError`s: they cross the control socket as typed values.
 */
import { Schema } from "effect"

export class ContainerNotStarted extends Schema.TaggedError<ContainerNotStarted>()("ContainerNotStarted", {
  id: Schema.String
}) {
  override get message(): string {
    return `container ${this.id} has not been started`
  }
}

export class ContainerAlreadyStarted extends Schema.TaggedError<ContainerAlreadyStarted>()("ContainerAlreadyStarted", {
  id: Schema.String
}) {
  override get message(): string {
    return `container ${this.id} is not in created state: it was already started`
  }
}

export class InvalidMount extends Schema.TaggedError<InvalidMount>()("InvalidMount", {
  destination: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `mount at ${this.destination}: ${this.reason}`
  }
}

export class InvalidRoot extends Schema.TaggedError<InvalidRoot>()("InvalidRoot", {
  path: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `root filesystem ${this.path}: ${this.reason}`
  }
}

export class InvalidCwd extends Schema.TaggedError<InvalidCwd>()("InvalidCwd", {
  cwd: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `cwd ${this.cwd}: ${this.reason}`
  }
}

export class ProgramNotReadable extends Schema.TaggedError<ProgramNotReadable>()("ProgramNotReadable", {
  path: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `${this.path}: ${this.reason}`
  }
}

export class SandboxPanicked extends Schema.TaggedError<SandboxPanicked>()("SandboxPanicked", {
  reason: Schema.String
}) {
  override get message(): string {
    return `sandbox panicked: ${this.reason}; state dumped to the log`
  }
}

export class ContainerNotFound extends Schema.TaggedError<ContainerNotFound>()("ContainerNotFound", {
  id: Schema.String
}) {
  override get message(): string {
    return `container ${this.id} not found`
  }
}

export class ContainerExists extends Schema.TaggedError<ContainerExists>()("ContainerExists", { id: Schema.String }) {
  override get message(): string {
    return `container ${this.id} already exists`
  }
}

export class ContainerStopped extends Schema.TaggedError<ContainerStopped>()("ContainerStopped", {
  id: Schema.String
}) {
  override get message(): string {
    return `container ${this.id} has stopped`
  }
}

/** The container holds as many processes as its `linux.resources.pids.limit` allows (as fork's EAGAIN). */
export class PidsLimitReached extends Schema.TaggedError<PidsLimitReached>()("PidsLimitReached", {
  id: Schema.String,
  limit: Schema.Number
}) {
  override get message(): string {
    return `container ${this.id} holds ${this.limit} processes, its pids limit: no new process may start`
  }
}

export class InvalidPid extends Schema.TaggedError<InvalidPid>()("InvalidPid", {
  pid: Schema.Number,
  reason: Schema.String
}) {
  override get message(): string {
    return `invalid pid ${this.pid}: ${this.reason}`
  }
}

export class InvalidSignal extends Schema.TaggedError<InvalidSignal>()("InvalidSignal", { signal: Schema.Number }) {
  override get message(): string {
    return `invalid signal ${this.signal}`
  }
}

export class NoSuchProcess extends Schema.TaggedError<NoSuchProcess>()("NoSuchProcess", { pid: Schema.Number }) {
  override get message(): string {
    return `no such process: ${this.pid}`
  }
}

export class ProcessInOtherContainer extends Schema.TaggedError<ProcessInOtherContainer>()("ProcessInOtherContainer", {
  pid: Schema.Number,
  id: Schema.String,
  owner: Schema.String
}) {
  override get message(): string {
    return `process ${this.pid} belongs to a different container: ${this.owner} (not ${this.id})`
  }
}

export class NoTerminal extends Schema.TaggedError<NoTerminal>()("NoTerminal", {
  id: Schema.String,
  pid: Schema.Number
}) {
  override get message(): string {
    return `process ${this.pid} of container ${this.id} has no terminal`
  }
}

export class AlreadyPaused extends Schema.TaggedError<AlreadyPaused>()("AlreadyPaused", { id: Schema.String }) {
  override get message(): string {
    return `sandbox ${this.id} is already paused`
  }
}

export class NotPaused extends Schema.TaggedError<NotPaused>()("NotPaused", { id: Schema.String }) {
  override get message(): string {
    return `sandbox ${this.id} is not paused`
  }
}
