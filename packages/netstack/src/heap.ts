/**
 * What the netstack's objects hold of the sentry's JS heap, charged to their owner's memory as
 * heap (MemoryAccount.chargeHeap): a socket from its creation until its close, and a connection
 * endpoint's receive queue while it is connected (beside its buffer, which is charged as plain
 * memory: its bytes live off the heap). Uncharged, a guest queued pending connections until the
 * sentry's heap was full and the sandbox process aborted, with its account a third used.
 *
 * Measured on Node 20: ~5.5 KB of heap per pending connection (the listener's endpoint, its
 * queue, and the closed client it still refers to); charged 7 KiB, with room for what a
 * measurement of live objects does not see (the collector's own overhead).
 */
import type { SocketOwner } from "@runsc/kernel"

/** A socket object, its description and their closures. */
export const SOCKET_HEAP = 3072
/** A connected endpoint's queue, its changes, and the peer it keeps reachable after that peer's close. */
export const CONNECTION_HEAP = 4096

/** Charges a new socket of `owner`'s; false (nothing charged) when its memory refuses (ENOBUFS). */
export const chargeSocket = (owner: SocketOwner): boolean => owner.memory.chargeHeap(SOCKET_HEAP)

export const releaseSocket = (owner: SocketOwner): void => owner.memory.releaseHeap(SOCKET_HEAP)
