/**
 * devfs: the devices a guest finds at /dev, served by the sentry (never host device nodes).
 * One instance per process, because stdin, stdout, stderr and tty name the caller's own.
 *
 * - null: reads end at once, writes vanish. zero: reads give zeros, writes vanish. full: reads
 *   give zeros, writes fail ENOSPC. random and urandom: reads give bytes of the host's CSPRNG,
 *   writes vanish (they would add entropy).
 * - stdin, stdout, stderr: the caller's fds 0-2 reopened, as opening /proc/self/fd/N does
 *   (the same pipe, file offset or terminal); ENOENT when that fd is closed, as Linux's
 *   dangling /proc/self/fd/N link gives.
 * - tty: the caller's controlling terminal, reopened from whichever of its fds refers to it;
 *   ENXIO without one, as Linux says.
 */
import { Errno, FileType, Whence } from "@runsc/abi"
import { Effect } from "effect"
import { randomFillSync } from "node:crypto"
import { fail, type SyscallError } from "../errors.js"
import type { ThreadGroup } from "../task/threadGroup.js"
import type { FileDescription, Inode, Stat } from "./inode.js"
import { notDirectory, syntheticDirectory, syntheticStat } from "./synthetic.js"

/** devfs's device number ("DEVF"). */
const DEV_DEV = 0x44455646n

/** What a device does with reads and writes; its offset is always 0 (like Linux's char devices). */
interface Behaviour {
  readonly read: (length: number) => Effect.Effect<Uint8Array, SyscallError>
  readonly write: (data: Uint8Array) => Effect.Effect<number, SyscallError>
}

const discard = (data: Uint8Array) => Effect.succeed(data.length)
const zeros = (length: number) => Effect.sync(() => new Uint8Array(length))
const randomBytes = (length: number) => Effect.sync(() => randomFillSync(new Uint8Array(length)))

const behaviours: ReadonlyArray<readonly [string, Behaviour]> = [
  ["null", { read: () => Effect.succeed(new Uint8Array(0)), write: discard }],
  ["zero", { read: zeros, write: discard }],
  ["full", { read: zeros, write: () => fail(Errno.NOSPC) }],
  ["random", { read: randomBytes, write: discard }],
  ["urandom", { read: randomBytes, write: discard }]
]

const characterStat = (ino: bigint): Effect.Effect<Stat> => syntheticStat(DEV_DEV, ino, FileType.CHARACTER_DEVICE, 0n, 0o666)

const device = (ino: bigint, behaviour: Behaviour): Inode => ({
  filetype: FileType.CHARACTER_DEVICE,
  stat: characterStat(ino),
  ...notDirectory,
  readlink: fail(Errno.INVAL),
  open: () =>
    Effect.succeed<FileDescription>({
      filetype: FileType.CHARACTER_DEVICE,
      read: (length) => behaviour.read(length),
      write: (data) => behaviour.write(data),
      seek: (_delta, whence) => (whence === Whence.SET || whence === Whence.CUR || whence === Whence.END ? Effect.succeed(0n) : fail(Errno.INVAL)),
      stat: characterStat(ino),
      close: Effect.void
    })
})

/** A name for what the caller reaches by `reopen` (one of its fds), looked up at each open. */
const reopening = (ino: bigint, filetype: () => FileType, reopen: () => Effect.Effect<FileDescription, SyscallError>): Inode => ({
  get filetype() {
    return filetype()
  },
  stat: syntheticStat(DEV_DEV, ino, FileType.CHARACTER_DEVICE, 0n, 0o666),
  ...notDirectory,
  readlink: fail(Errno.INVAL),
  open: () => reopen()
})

/** The /dev of `caller`. */
export const devfs = (caller: ThreadGroup): Inode => {
  const table = caller.fdTable
  const stdio = (["stdin", "stdout", "stderr"] as const).map((name, fd) =>
    [
      name,
      reopening(
        BigInt(16 + fd),
        () => table.lookup(fd)?.description.filetype ?? FileType.CHARACTER_DEVICE,
        () => Effect.catchTag(table.reopen(fd), "SyscallError", () => fail(Errno.NOENT))
      )
    ] as const
  )
  const tty = reopening(
    32n,
    () => FileType.CHARACTER_DEVICE,
    () => {
      const terminal = caller.group?.session.terminal
      const fd = terminal === undefined ? undefined : table.fds.find((n) => table.lookup(n)?.description.terminal === terminal)
      return fd === undefined ? fail(Errno.NXIO) : table.reopen(fd)
    }
  )
  const entries: ReadonlyArray<readonly [string, Inode]> = [
    ...behaviours.map(([name, behaviour], i) => [name, device(BigInt(2 + i), behaviour)] as const),
    ...stdio,
    ["tty", tty]
  ]
  return syntheticDirectory(DEV_DEV, 1n, () => entries)
}
