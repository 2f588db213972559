/**
 * The poll family: poll_oneoff, waiting for clocks and for fds to be ready (pipes; files and
 * host streams are ready at once). The socket work adds its readiness here.
 */
import { ClockId, Errno, EventType, Layout, Rights, SubclockFlags } from "@runsc/abi"
import { Clock, Duration, Effect } from "effect"
import { fail } from "../errors.js"
import type { FileDescription } from "../fs/inode.js"
import { args, results } from "../platform/syscallAbi.js"
import { fnNow } from "../settled.js"
import { blocking, type Handler, setPayloadLength, type SyscallContext } from "./context.js"

// Each call's accessors, looked up once (see platform/syscallAbi.ts).
const PollOneoffArgs = args.poll_oneoff
const PollOneoffResults = results.poll_oneoff

/**
 * What one watched description costs the sentry's heap while a poll waits on it (the fiber
 * that waits for its change): charged to the caller's memory as heap for the wait, and the
 * poll fails ENOMEM when it cannot be. Waits are one per description, however many
 * subscriptions name it. Before, 5,461 subscriptions of one pipe made as many fibers, and a
 * few hundred such polls aborted the sandbox process with a full heap.
 */
export const POLL_WAIT_HEAP = 2048

const poll_oneoff: Handler = fnNow(function*(c: SyscallContext) {
  const nsubs = PollOneoffArgs.nsubs(c)
  if (nsubs === 0) return yield* fail(Errno.INVAL)
  const view = c.channel.dataView
  const at = PollOneoffArgs.subscriptions.at(c)
  const S = Layout.subscription
  const nowRealtime = yield* Clock.currentTimeNanos
  const nowMonotonic = process.hrtime.bigint() // the same clock the worker serves as MONOTONIC
  interface Ready {
    readonly userdata: bigint
    readonly error: number
    readonly type: number
  }
  const immediate: Array<Ready> = []
  const clocks: Array<{ readonly userdata: bigint; readonly waitNs: bigint }> = []
  // fd subscriptions on descriptions that can wait (pipes); the others are ready at once.
  const streams: Array<Ready & { readonly readiness: NonNullable<FileDescription["readiness"]> }> = []
  for (let i = 0; i < nsubs; i++) {
    const base = at + i * S.sizeOf
    const userdata = view.getBigUint64(base + S.userdata, true)
    const tag = view.getUint8(base + S.tag)
    if (tag === EventType.CLOCK) {
      const id = view.getUint32(base + S.clock.id, true)
      const timeout = view.getBigUint64(base + S.clock.timeout, true)
      const absolute = (view.getUint16(base + S.clock.flags, true) & SubclockFlags.ABSTIME) !== 0
      const now = id === ClockId.REALTIME ? nowRealtime : id === ClockId.MONOTONIC ? nowMonotonic : undefined
      if (now === undefined) immediate.push({ userdata, error: Errno.INVAL, type: tag })
      else clocks.push({ userdata, waitNs: absolute ? timeout - now : timeout })
    } else if (tag === EventType.FD_READ || tag === EventType.FD_WRITE) {
      const fd = view.getUint32(base + S.fdReadWrite.fd, true)
      const entry = c.tg.fdTable.lookup(fd)
      const error = entry === undefined ? Errno.BADF
        : (entry.rightsBase & Rights.POLL_FD_READWRITE) === 0n ? Errno.NOTCAPABLE
        : Errno.SUCCESS
      // Files and host streams are reported ready at once (the read or write that follows
      // is what waits); pipes when they are.
      const readiness = entry?.description.readiness
      if (error === Errno.SUCCESS && readiness !== undefined) streams.push({ userdata, error, type: tag, readiness })
      else immediate.push({ userdata, error, type: tag })
    } else {
      immediate.push({ userdata, error: Errno.INVAL, type: tag })
    }
  }
  const watched = [...new Set(streams.map((s) => s.readiness))]
  const heap = watched.length * POLL_WAIT_HEAP
  const memory = c.services.memoryOf(c.tg)
  const soonest = clocks.length === 0 ? undefined : clocks.reduce((m, s) => (s.waitNs < m ? s.waitNs : m), clocks[0]!.waitNs)
  const deadline = soonest === undefined ? undefined : nowMonotonic + soonest
  const readyStreams = () => streams.filter((s) => s.readiness.ready(s.type === EventType.FD_READ ? "read" : "write"))
  let fired: Array<Ready> = [...immediate, ...readyStreams()]
  while (fired.length === 0) {
    const remaining = deadline === undefined ? undefined : deadline - process.hrtime.bigint()
    if (remaining !== undefined && remaining <= 0n) {
      fired = clocks.filter((s) => s.waitNs <= soonest!).map((s) => ({ userdata: s.userdata, error: 0, type: EventType.CLOCK }))
      break
    }
    // Until the soonest clock, or until a watched description changes (then look again).
    yield* Effect.acquireUseRelease(
      Effect.sync(() => memory.chargeHeap(heap)),
      (charged) =>
        charged
          ? blocking(c, Effect.raceAll([remaining === undefined ? Effect.never : Effect.sleep(Duration.nanos(remaining)), ...watched.map((r) => r.changed)]))
          : fail(Errno.NOMEM),
      (charged) => Effect.sync(() => charged && memory.releaseHeap(heap))
    )
    fired = readyStreams()
  }
  const E = Layout.event
  fired.forEach((event, i) => {
    const base = i * E.sizeOf
    for (let b = 0; b < E.sizeOf; b += 8) view.setBigUint64(base + b, 0n, true)
    view.setBigUint64(base + E.userdata, event.userdata, true)
    view.setUint16(base + E.error, event.error, true)
    view.setUint8(base + E.type, event.type)
  })
  setPayloadLength(c, fired.length * E.sizeOf)
  PollOneoffResults.nevents(c, fired.length)
})

export const pollHandlers = { poll_oneoff } as const satisfies Record<string, Handler>
