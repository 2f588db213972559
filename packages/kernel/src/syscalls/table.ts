/**
 * The syscall table: one handler per syscall on the channel, indexed by syscall number,
 * composed from the families (fd, path, poll, process, sockets, name resolution, the calls served in the
 * worker, memory). Each call's arguments and results are declared once, in
 * platform/syscallAbi.ts; a family's handler decodes them through that declaration.
 */
import { type SyscallName, syscallNames } from "@runsc/abi"
import type { Handler } from "./context.js"
import { fdHandlers, makeReaddir } from "./fd.js"
import { memory_grow } from "./memory.js"
import { pathHandlers } from "./path.js"
import { pollHandlers } from "./poll.js"
import { processHandlers } from "./process.js"
import { resolveHandlers } from "./resolve.js"
import { servedHandlers } from "./served.js"
import { socketHandlers } from "./sockets.js"

/** A kernel's syscall table: handlers by syscall number. */
export const makeSyscallTable = (): ReadonlyArray<Handler> => {
  const all: { readonly [K in SyscallName]: Handler } = {
    ...servedHandlers,
    ...fdHandlers,
    fd_readdir: makeReaddir(),
    ...pathHandlers,
    ...pollHandlers,
    ...processHandlers,
    ...socketHandlers,
    ...resolveHandlers,
    memory_grow
  }
  return syscallNames.map((name) => all[name])
}
