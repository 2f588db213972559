/**
 * Failures of the Loader that a caller can act on. Kernel and spec errors (NotWasm,
 * ExecNotFound, InvalidModule, InvalidSpec, BundleNotFound) pass through unchanged.
 */
import { Data } from "effect"

export class ContainerNotStarted extends Data.TaggedError("ContainerNotStarted")<{ readonly id: string }> {
  override get message(): string {
    return `container ${this.id} has not been started`
  }
}

export class ContainerAlreadyStarted extends Data.TaggedError("ContainerAlreadyStarted")<{ readonly id: string }> {
  override get message(): string {
    return `container ${this.id} is not in created state: it was already started`
  }
}

export class InvalidRoot extends Data.TaggedError("InvalidRoot")<{ readonly path: string; readonly reason: string }> {
  override get message(): string {
    return `root filesystem ${this.path}: ${this.reason}`
  }
}

export class InvalidCwd extends Data.TaggedError("InvalidCwd")<{ readonly cwd: string; readonly reason: string }> {
  override get message(): string {
    return `cwd ${this.cwd}: ${this.reason}`
  }
}

export class ProgramNotReadable extends Data.TaggedError("ProgramNotReadable")<{
  readonly path: string
  readonly reason: string
}> {
  override get message(): string {
    return `${this.path}: ${this.reason}`
  }
}

export class SandboxPanicked extends Data.TaggedError("SandboxPanicked")<{ readonly reason: string }> {
  override get message(): string {
    return `sandbox panicked: ${this.reason}; state dumped to the log`
  }
}

export class ContainerNotFound extends Data.TaggedError("ContainerNotFound")<{ readonly id: string }> {
  override get message(): string {
    return `container ${this.id} not found`
  }
}

export class ContainerExists extends Data.TaggedError("ContainerExists")<{ readonly id: string }> {
  override get message(): string {
    return `container ${this.id} already exists`
  }
}

export class ContainerStopped extends Data.TaggedError("ContainerStopped")<{ readonly id: string }> {
  override get message(): string {
    return `container ${this.id} has stopped`
  }
}

export class InvalidPid extends Data.TaggedError("InvalidPid")<{ readonly pid: number; readonly reason: string }> {
  override get message(): string {
    return `invalid pid ${this.pid}: ${this.reason}`
  }
}

export class InvalidSignal extends Data.TaggedError("InvalidSignal")<{ readonly signal: number }> {
  override get message(): string {
    return `invalid signal ${this.signal}`
  }
}

export class NoSuchProcess extends Data.TaggedError("NoSuchProcess")<{ readonly pid: number }> {
  override get message(): string {
    return `no such process: ${this.pid}`
  }
}

export class ProcessInOtherContainer extends Data.TaggedError("ProcessInOtherContainer")<{
  readonly pid: number
  readonly id: string
  readonly owner: string
}> {
  override get message(): string {
    return `process ${this.pid} belongs to a different container: ${this.owner} (not ${this.id})`
  }
}

export class NoTerminal extends Data.TaggedError("NoTerminal")<{ readonly id: string; readonly pid: number }> {
  override get message(): string {
    return `process ${this.pid} of container ${this.id} has no terminal`
  }
}

export class AlreadyPaused extends Data.TaggedError("AlreadyPaused")<{ readonly id: string }> {
  override get message(): string {
    return `sandbox ${this.id} is already paused`
  }
}

export class NotPaused extends Data.TaggedError("NotPaused")<{ readonly id: string }> {
  override get message(): string {
    return `sandbox ${this.id} is not paused`
  }
}
