/**
 * The calls served in the guest's worker (declared `served` in platform/syscallAbi.ts): clocks,
 * randomness, argv/environ, proc_exit and sched_yield, as a vDSO serves calls without entering
 * the kernel.
 */
import { Errno } from "@runsc/abi"
import { Effect } from "effect"
import { fail } from "../errors.js"
import type { Handler } from "./context.js"

/** Reaching the sentry means a worker stub without its in-worker path: a sentry bug, answered ENOSYS. */
const servedInWorker: Handler = () => fail(Errno.NOSYS)

export const servedHandlers = {
  args_get: servedInWorker,
  args_sizes_get: servedInWorker,
  environ_get: servedInWorker,
  environ_sizes_get: servedInWorker,
  clock_res_get: servedInWorker,
  clock_time_get: servedInWorker,
  proc_exit: servedInWorker,
  // Served in the worker, except that a task with a pending stop enters the sentry through it.
  sched_yield: () => Effect.void,
  random_get: servedInWorker
} as const satisfies Record<string, Handler>
