export { Changes } from "./changes.js"
export { ByteChunks, concatBytes } from "./fs/byteChunks.js"
export * from "./errors.js"
export { ContentCache } from "./fs/contentCache.js"
export { DescriptionRefs, type FdEntry, FdTable } from "./fs/fdTable.js"
export { donate, DonatedFds, donateTrees, type DonationPoint, listenForDonations, MAX_DONATED_FDS, openTrees } from "./fs/donation.js"
export { hostMount, type HostMountOptions, hostRoot } from "./fs/host.js"
export { HostFdBudget } from "./fs/hostFds.js"
export { hostStream, type HostStreamOptions } from "./fs/hostStream.js"
export type { DirEntry, FileDescription, Inode, OpenOptions, Stat } from "./fs/inode.js"
export type { MountNamespace, MountNamespaceArgs } from "./fs/mountNamespace.js"
export { Dentry, resolve, type ResolveOptions } from "./fs/resolve.js"
export type { SyntheticMount } from "./fs/synthetic.js"
export { overlay, type OverlayOptions } from "./fs/overlay.js"
export { NODE_HEAP, Tmpfs } from "./fs/tmpfs.js"
export { defaultHeapShare, defaultTotalMemory, MemoryAccount, PROCESS_BUDGET, PROCESS_MEMORY } from "./memoryAccount.js"
export {
  type Accepted,
  isAbstract,
  isSocket,
  type Network,
  NetworkTraffic,
  type Received,
  type SocketAddress,
  type SocketDescription,
  type SocketFamily,
  type SocketFlag,
  type SocketKind,
  type SocketOps,
  type SocketOwner,
  type SocketSize,
  type SocketTimeLimit,
  type UnixAddress
} from "./net/socket.js"
export { formatAddress, ipText, parseIp } from "./net/addrPort.js"
export { Kernel, type KernelOptions, type KernelShape, type ProcessArgs, type ProcessUsage } from "./kernel.js"
/** Bytes of one task's syscall channel (a SharedArrayBuffer a guest worker is started with). */
export { CHANNEL_BYTES } from "./platform/channel.js"
export { type GuestHooks, guestHooks, installHooks } from "./platform/guestHooks.js"
export { instrument, type InstrumentedModule } from "./platform/instrument.js"
export { type CachedModule, DEFAULT_MODULE_CACHE_BYTES, ModuleCache, type ModuleCacheStats } from "./platform/moduleCache.js"
export type { WorkerPoolStats } from "./platform/pool.js"
export type { GuestPlatform, GuestThread, SpawnedThread } from "./platform/pool.js"
export { scriptedPlatform } from "./platform/scripted.js"
export { type StartingThread, startGuestThread } from "./platform/startThread.js"
export type { StraceOptions } from "./syscalls/strace.js"
export { type Executable, findExecutable, loadExecutable, programFromBytes, readAll, readFile } from "./task/exec.js"
export { makePipe, PIPE_BUF, PIPE_CAPACITY, type Pipe } from "./fs/pipe.js"
export { TaskSet, type ThrottleReason } from "./task/taskSet.js"
export { PID_MAX, PidNamespace } from "./task/pidNamespace.js"
export { type ControllingTerminal, ProcessGroup, Session } from "./task/session.js"
export { type ProcessState, ThreadGroup } from "./task/threadGroup.js"
export {
  type HeartbeatMonitor,
  HeartbeatMonitorFailed,
  type HeartbeatMonitorOptions,
  startHeartbeatMonitor
} from "./watchdog/heartbeat.js"
export { makeWatchdog, stuckTasksReport, type WatchdogOptions, type WatchedTask } from "./watchdog/watchdog.js"
export { makeTerminal, type Terminal, terminalSignals } from "./tty/terminal.js"
