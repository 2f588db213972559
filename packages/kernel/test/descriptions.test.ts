/**
 * Open file descriptions close once, whoever holds them: a description given at two stdio slots
 * of a terminal stays one open file; a second close of a pipe end changes nothing; and a
 * spawn interrupted while its child's module compiles (its caller killed) still gives back the
 * pipes it made for the child.
 */
import { assert, describe, it } from "@effect/vitest"
import { Errno, SpawnFd } from "@runsc/abi"
import { Effect, Fiber } from "effect"
import { fail } from "../src/errors.js"
import { DescriptionRefs, FdTable } from "../src/fs/fdTable.js"
import { makePipe, PIPE_CAPACITY } from "../src/fs/pipe.js"
import { MemoryAccount } from "../src/memoryAccount.js"
import { ChannelViews } from "../src/platform/channel.js"
import { argPlace } from "../src/platform/syscallAbi.js"
import type { SyscallContext } from "../src/syscalls/context.js"
import { processHandlers } from "../src/syscalls/process.js"
import { makeTerminal } from "../src/tty/terminal.js"

const entry = (description: FdEntryDescription) => ({ description, rightsBase: 0n, rightsInheriting: 0n, flags: 0 })
type FdEntryDescription = Parameters<FdTable["allocate"]>[0]["description"]

describe("open file descriptions close once", () => {
  it.effect("a terminal over one pipe end given as stdout and stderr: closing both fds is one close (the reader sees EOF)", () =>
    Effect.gen(function*() {
      let closedBoth = 0
      const pipe = makePipe(1n, () => closedBoth++)
      const terminal = makeTerminal([pipe.read, pipe.write, pipe.write])
      assert.strictEqual(terminal.stdio[1], terminal.stdio[2], "one view of one description")
      const table = new FdTable(new DescriptionRefs())
      yield* Effect.forEach(terminal.stdio, (description, fd) => table.set(fd, entry(description)))
      yield* table.closeAll
      assert.strictEqual(closedBoth, 1)
      const other = makePipe(2n)
      yield* other.write.close
      yield* other.write.close
      assert.isTrue(other.read.readiness!.ready("read"), "EOF once the only writer is gone")
      yield* other.read.close
      yield* other.read.close
    }))

  it.effect("proc_spawn interrupted while the child's module compiles gives back the pipes it made for the child", () =>
    Effect.gen(function*() {
      const account = new MemoryAccount(1 << 30)
      const setup = (spawn: () => Effect.Effect<never, unknown>) => {
        const fdTable = new FdTable(new DescriptionRefs())
        const channel = ChannelViews.allocate()
        const path = new TextEncoder().encode("prog")
        const argv = new TextEncoder().encode("prog\0")
        channel.data.set(path, 0)
        channel.data.set(argv, path.length)
        channel.words[argPlace("proc_spawn", "path")] = path.length
        channel.words[argPlace("proc_spawn", "argv")] = argv.length
        channel.words[argPlace("proc_spawn", "envp")] = 0
        channel.i64[argPlace("proc_spawn", "fd0")] = BigInt(SpawnFd.PIPE)
        channel.words[argPlace("proc_spawn", "nfds")] = 1
        channel.words[argPlace("proc_spawn", "pgid")] = -1
        channel.words[argPlace("proc_spawn", "flags")] = 0
        const c = {
          tg: { fdTable, group: {}, pidNamespace: {} },
          channel,
          raise: () => Effect.void,
          paused: () => undefined,
          services: { spawn, newPipe: () => (account.charge(PIPE_CAPACITY) ? makePipe(1n, () => account.release(PIPE_CAPACITY)) : undefined) }
        } as unknown as SyscallContext
        return { c, fdTable }
      }
      // A spawn that fails gives them back (it always did).
      const failing = setup(() => fail(Errno.NOENT))
      yield* Effect.exit(processHandlers.proc_spawn(failing.c))
      yield* failing.fdTable.closeAll
      assert.strictEqual(account.used, 0)
      // One whose caller is killed meanwhile: its fiber is interrupted (the child's end leaked).
      const waiting = setup(() => Effect.never)
      const fiber = yield* Effect.fork(processHandlers.proc_spawn(waiting.c))
      yield* Effect.yieldNow()
      assert.strictEqual(account.used, PIPE_CAPACITY)
      yield* Fiber.interrupt(fiber)
      yield* waiting.fdTable.closeAll
      assert.strictEqual(account.used, 0)
    }))
})
