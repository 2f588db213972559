/**
 * The channel's wake-up protocol (platform/channel.ts: `publish`): each end notifies the other
 * only when that end has said it is parked, so no wake-up may ever be lost, including on a
 * channel that a pooled worker carries from one task to the next.
 */
import { assert, describe, it } from "@effect/vitest"
import { Errno, syscallNumber } from "@runsc/abi"
import { Duration, Effect, Exit, Fiber } from "effect"
import { ChannelViews, publish, State, Word } from "../src/platform/channel.js"
import type { Handler, SyscallContext } from "../src/syscalls/context.js"
import { releaseChannel, serveSyscalls } from "../src/syscalls/serve.js"
import { SyscallAccount } from "../src/task/syscallAccount.js"

const SCHED_YIELD = syscallNumber.sched_yield

/** A server's view of one task: just what the serve loop reads (no stop, no pause, no throttle). */
const taskContext = (channel: ChannelViews): SyscallContext =>
  ({
    channel,
    tg: { rootPid: 1, continued: undefined, tasks: { throttled: undefined }, inKernel: new SyscallAccount() },
    paused: () => undefined
  }) as unknown as SyscallContext

const table: Array<Handler> = []
table[SCHED_YIELD] = () => Exit.void

/** Polls (on the event loop, as a test may) until `done`, or fails after `within`. */
const eventually = (what: string, done: () => boolean, within = Duration.seconds(5)) =>
  Effect.gen(function*() {
    const polls = Math.ceil(Duration.toMillis(within) / 5)
    for (let i = 0; i < polls; i++) {
      if (done()) return
      yield* Effect.sleep(Duration.millis(5))
    }
    assert.fail(`not within ${Duration.format(within)}: ${what}`)
  })

/** One request from the worker's end: published as the worker does, answered or not. */
const request = (words: Int32Array) =>
  Effect.gen(function*() {
    words[Word.SYSCALL] = SCHED_YIELD
    words[Word.NARGS] = 0
    publish(words, State.REQUEST, Word.SENTRY_PARKED)
    yield* eventually("the sentry answers", () => Atomics.load(words, Word.STATE) === State.RESPONSE)
    assert.strictEqual(words[Word.ERRNO], Errno.SUCCESS)
    words[Word.STATE] = State.IDLE
  })

describe("the channel's wake-ups", () => {
  it.live("a parked server is woken by each request", () =>
    Effect.gen(function*() {
      const channel = ChannelViews.allocate()
      const words = channel.words
      const server = yield* Effect.fork(serveSyscalls(table, taskContext(channel), undefined))
      for (let i = 0; i < 5; i++) {
        yield* eventually("the server parks", () => Atomics.load(words, Word.SENTRY_PARKED) === 1)
        yield* request(words)
      }
      yield* Fiber.interrupt(server)
    }))

  it.live("a server interrupted while parked cannot leave the channel's next server unwakeable", () =>
    Effect.gen(function*() {
      const channel = ChannelViews.allocate()
      const words = channel.words
      const first = yield* Effect.fork(serveSyscalls(table, taskContext(channel), undefined))
      yield* eventually("the first server parks", () => Atomics.load(words, Word.SENTRY_PARKED) === 1)
      // The task ends: its server is interrupted with its waitAsync armed, and the channel is
      // released, which resolves that stale wait on a later turn of the event loop. A pooled
      // worker then brings the same channel to the next task, whose server parks at once.
      yield* Fiber.interrupt(first)
      yield* releaseChannel(words)
      const second = yield* Effect.fork(serveSyscalls(table, taskContext(channel), undefined))
      yield* Effect.sleep(Duration.millis(20))
      // The stale wait has run by now: the second server must still be woken by a request.
      yield* request(words)
      yield* request(words)
      yield* Fiber.interrupt(second)
    }))
})
