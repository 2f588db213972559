/**
 * A container of the sandbox: its state, its root filesystem, its PID namespace, its init and
 * the processes exec'd into it (the kernel knows every process of it, by container id). The
 * Loader's registry owns containers and serializes every change to them (the registry lock);
 * a process can never be added to a container that a kill of all its processes is emptying or
 * has emptied: the container's admission refuses it (the kernel checks it as it registers one).
 */
import type { Dentry, PidNamespace, SyntheticMount, TaskSet, ThreadGroup } from "@runsc/kernel"
import type { Spec } from "@runsc/spec"
import type { Scope } from "effect"

/** `created`: registered, not started; `running`: its init runs; `stopped`: its init has exited, or its start failed. */
export type ContainerState = "created" | "running" | "stopped"

export class Container {
  state: ContainerState = "created"
  init: ThreadGroup | undefined
  spec: Spec | undefined
  root: Dentry | undefined
  /** The filesystems mounted in its view (its tmpfs trees live as long as the container). */
  mounts: ReadonlyArray<SyntheticMount> = []
  pidNamespace: PidNamespace<ThreadGroup> | undefined
  /** The spec's `pid` namespace path, for later containers that join it. */
  pidNamespacePath: string | undefined
  /** Processes started by execute, by root-namespace pid, until waitPid consumes them. */
  readonly execs = new Map<number, ThreadGroup>()

  /**
   * `scope` is the container: closing it (destroy, or the sandbox's teardown) first kills every
   * process of the container and waits for each to exit, and only then closes `resources`, its
   * child holding what those processes used (its trees and mounts, their host descriptors and
   * memory). The order comes from the scopes' structure, not from the steps of a destroy.
   */
  constructor(
    readonly id: string,
    readonly scope: Scope.CloseableScope,
    readonly resources: Scope.Scope,
    /**
     * Its processes (a child a guest spawns joins its parent's). Its admission is held closed
     * while a kill of all of them runs, closed for good once the container is being destroyed.
     */
    readonly tasks: TaskSet
  ) {}
}
