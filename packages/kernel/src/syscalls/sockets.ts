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

const notSocket = (fd: (c: SyscallContext) => number): Handler => (c) => flatMapNow(entryWith(c, fd(c), 0n), () => fail(Errno.NOTSOCK))

export const socketHandlers = {
  sock_accept: notSocket(args.sock_accept.fd),
  sock_recv: notSocket(args.sock_recv.fd),
  sock_send: notSocket(args.sock_send.fd),
  sock_shutdown: notSocket(args.sock_shutdown.fd)
} as const satisfies Record<string, Handler>
