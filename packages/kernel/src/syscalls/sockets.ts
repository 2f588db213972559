/**
 * The socket family. No socket can exist yet (preview1 cannot create one and none are
 * pre-opened), so each call checks its fd and answers ENOTSOCK, as Linux does for a socket call
 * on a file. The socket work replaces these handlers (and widens their declarations in
 * platform/syscallAbi.ts).
 */
import { Errno } from "@runsc/abi"
import { fail } from "../errors.js"
import { args } from "../platform/syscallAbi.js"
import { flatMapNow } from "../settled.js"
import type { Handler, SyscallContext } from "./context.js"
import { entryWith } from "./lookup.js"

// Each call's accessors, looked up once (see platform/syscallAbi.ts).
const SockAcceptArgs = args.sock_accept
const SockRecvArgs = args.sock_recv
const SockSendArgs = args.sock_send
const SockShutdownArgs = args.sock_shutdown

const notSocket = (fd: (c: SyscallContext) => number): Handler => (c) => flatMapNow(entryWith(c, fd(c), 0n), () => fail(Errno.NOTSOCK))

export const socketHandlers = {
  sock_accept: notSocket(SockAcceptArgs.fd),
  sock_recv: notSocket(SockRecvArgs.fd),
  sock_send: notSocket(SockSendArgs.fd),
  sock_shutdown: notSocket(SockShutdownArgs.fd)
} as const satisfies Record<string, Handler>
