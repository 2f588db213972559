/**
 * The syscall ABI of the channel, declared once: for every syscall, what crosses the channel
 * and where it sits. Both ends are derived from this module, so they cannot disagree:
 *
 * - the guest worker's stub: a `generic` declaration IS the stub (`compileGuestStub` writes it
 *   out once, at worker start, as straight-line JS that checks the guest's pointers, copies its
 *   arguments in and the answer out); a `worker` stub is written
 *   by hand in the worker (iovec chunking, readdir's cookie loop, the fast paths) and sets the
 *   words this module names (`plan(name).at`);
 * - the sentry's decoder: `args[name]` and `results[name]` hold, per syscall, one accessor per
 *   field, built once at module load (plain closures over precomputed indices: no allocation
 *   and no lookup per call).
 *
 * A declaration is the ordered list of the syscall's fields. For a `generic` stub the order is
 * the guest's parameter order (checked at load against `importSignatures`); channel places are
 * handed out in that order, each kind from its own pool:
 *
 *   u32, s32        one request word (ARG0, ARG0 + 1, …); s32 is read back signed
 *   u64             one request i64 slot (0, 1, …, below I64_RESULT_SLOT)
 *   bytes           guest (ptr, len): the bytes are packed into the data area after those of
 *                   earlier `bytes`/`iovecsIn` fields; a request word holds the length
 *   structIn(n)     guest pointer to n bytes (a fixed-size struct): packed as `bytes` are
 *   capacity        guest (ptr, len) of an output buffer: a request word holds min(len,
 *                   DATA_SIZE); the response payload (RESULT_LENGTH bytes) is copied to ptr.
 *                   capacityOf(n): len counts n-byte elements (an array), the word bytes
 *   u32Out          guest pointer; the first is RESULT0, the second RESULT1
 *   u64Out          guest pointer; the u64 result slot (I64_RESULT_SLOT)
 *   structOut(n)    guest pointer to n bytes; the response payload is copied there
 *
 * and, for hand-written stubs only (they describe the channel, not the guest's parameters):
 *
 *   iovecsIn        gathered bytes in the data area at 0; a request word holds their length
 *   iovecsOut       a request word holds how many bytes the sentry may answer (in the data
 *                   area at 0, counted by the call's u32Out)
 *   data            bytes the stub placed in the data area (their length follows from other
 *                   fields), at the offset after earlier `bytes` fields
 *   payloadOut      a response payload the stub copies out itself
 *
 * `served` syscalls are answered in the worker (clocks, randomness, argv/environ, proc_exit);
 * the only one that crosses the channel is sched_yield, with no fields, which is how a task
 * with a pending stop enters the sentry.
 *
 * Adding a syscall: its name in @runsc/abi (`syscallNames`, `importSignatures`), one
 * declaration here, one handler in its family's module under syscalls/.
 *
 * This module is bundled into the guest worker: it imports nothing but @runsc/abi and the
 * channel layout.
 */
import { Addr, AddressFamily, AddrPort, Errno, OptionTimestamp, importModules, importSignatures, Layout, type SyscallName, syscallNames, syscallNumber } from "@runsc/abi"
import { type ChannelViews, DATA_SIZE, I64_SLOT_COUNT, Word, ARG_COUNT } from "./channel.js"

/**
 * Where sock_recv_from's answer puts the sender's addr_port: the end of the data area, so the
 * bytes received (at most this many) come first.
 */
export const RECV_FROM_ADDRESS_AT = DATA_SIZE - AddrPort.unixSizeOf

/** The i64 slot of a u64 result (fd_seek's, fd_tell's new offset); request u64 args use the slots below it. */
export const I64_RESULT_SLOT = 4

/** The response words of u32 results, in the order a declaration's u32Out fields take them. */
const RESULT_WORDS = [Word.RESULT0, Word.RESULT1] as const

// ---- the declaration language ---------------------------------------------------------------

export type ArgKind = "u32" | "s32" | "u64" | "bytes" | "structIn" | "capacity" | "iovecsIn" | "iovecsOut" | "data"
export type ResultKind = "u32Out" | "u64Out" | "structOut" | "payloadOut"
export type FieldKind = ArgKind | ResultKind

export interface Field<N extends string = string, K extends FieldKind = FieldKind> {
  readonly name: N
  readonly kind: K
  /** structIn, structOut: the struct's size in bytes. */
  readonly size: number
  /** An addr_port (structIn, structOut): its size when its tag is UNIX (AddrPort). */
  readonly unixSize?: number
}

const field = <K extends FieldKind>(kind: K) => <const N extends string>(name: N): Field<N, K> => ({ name, kind, size: 0 })

const u32 = field("u32")
const s32 = field("s32")
const u64 = field("u64")
const bytes = field("bytes")
const capacity = field("capacity")
const capacityOf = <const N extends string>(name: N, elementSize: number): Field<N, "capacity"> => ({ name, kind: "capacity", size: elementSize })
const iovecsIn = field("iovecsIn")
const iovecsOut = field("iovecsOut")
const data = field("data")
const u32Out = field("u32Out")
const u64Out = field("u64Out")
const payloadOut = field("payloadOut")
const structOut = <const N extends string>(name: N, size: number): Field<N, "structOut"> => ({ name, kind: "structOut", size })
const structIn = <const N extends string>(name: N, size: number): Field<N, "structIn"> => ({ name, kind: "structIn", size })
/** A WASIX addr_port: 20 bytes for an IP address, 110 for a Unix one (its tag says which). */
const addrPortIn = <const N extends string>(name: N): Field<N, "structIn"> => ({ name, kind: "structIn", size: AddrPort.sizeOf, unixSize: AddrPort.unixSizeOf })
const addrPortOut = <const N extends string>(name: N): Field<N, "structOut"> => ({ name, kind: "structOut", size: AddrPort.sizeOf, unixSize: AddrPort.unixSizeOf })

/** Who writes the guest-side stub. */
export type Stub = "generic" | "worker" | "served"

export interface Declaration<F extends ReadonlyArray<Field> = ReadonlyArray<Field>> {
  readonly stub: Stub
  readonly fields: F
}

const generic = <const F extends ReadonlyArray<Field>>(...fields: F): Declaration<F> => ({ stub: "generic", fields })
const worker = <const F extends ReadonlyArray<Field>>(...fields: F): Declaration<F> => ({ stub: "worker", fields })
const served = (): Declaration<readonly []> => ({ stub: "served", fields: [] })

// ---- the declarations -----------------------------------------------------------------------

export const declarations = {
  // served in the worker
  args_get: served(),
  args_sizes_get: served(),
  environ_get: served(),
  environ_sizes_get: served(),
  clock_res_get: served(),
  clock_time_get: served(),
  proc_exit: served(),
  sched_yield: served(),
  random_get: served(),
  // fd
  fd_advise: generic(u32("fd"), u64("offset"), u64("length"), u32("advice")),
  fd_allocate: generic(u32("fd"), u64("offset"), u64("length")),
  fd_close: generic(u32("fd")),
  fd_datasync: generic(u32("fd")),
  fd_fdstat_get: generic(u32("fd"), structOut("stat", Layout.fdstat.sizeOf)),
  fd_fdstat_set_flags: generic(u32("fd"), u32("flags")),
  fd_fdstat_set_rights: generic(u32("fd"), u64("rightsBase"), u64("rightsInheriting")),
  fd_filestat_get: generic(u32("fd"), structOut("stat", Layout.filestat.sizeOf)),
  fd_filestat_set_size: generic(u32("fd"), u64("size")),
  fd_filestat_set_times: generic(u32("fd"), u64("atim"), u64("mtim"), u32("fstFlags")),
  fd_pread: worker(u32("fd"), iovecsOut("iovs"), u64("offset"), u32Out("nread")),
  fd_prestat_get: generic(u32("fd"), structOut("prestat", Layout.prestat.sizeOf)),
  fd_prestat_dir_name: generic(u32("fd"), capacity("name")),
  fd_pwrite: worker(u32("fd"), iovecsIn("iovs"), u64("offset"), u32Out("nwritten")),
  fd_read: worker(u32("fd"), iovecsOut("iovs"), u32Out("nread")),
  fd_readdir: worker(u32("fd"), iovecsOut("buf"), u64("cookie"), u32Out("bufused")),
  fd_renumber: generic(u32("fd"), u32("to")),
  fd_seek: generic(u32("fd"), u64("offset"), u32("whence"), u64Out("newOffset")),
  fd_sync: generic(u32("fd")),
  fd_tell: generic(u32("fd"), u64Out("offset")),
  fd_write: worker(u32("fd"), iovecsIn("iovs"), u32Out("nwritten")),
  // path
  path_create_directory: generic(u32("fd"), bytes("path")),
  path_filestat_get: generic(u32("fd"), u32("flags"), bytes("path"), structOut("stat", Layout.filestat.sizeOf)),
  path_filestat_set_times: generic(u32("fd"), u32("flags"), bytes("path"), u64("atim"), u64("mtim"), u32("fstFlags")),
  path_link: generic(u32("oldFd"), u32("oldFlags"), bytes("oldPath"), u32("newFd"), bytes("newPath")),
  path_open: generic(
    u32("fd"),
    u32("dirflags"),
    bytes("path"),
    u32("oflags"),
    u64("rightsBase"),
    u64("rightsInheriting"),
    u32("fdflags"),
    u32Out("opened")
  ),
  path_readlink: generic(u32("fd"), bytes("path"), capacity("buf"), u32Out("bufused")),
  path_remove_directory: generic(u32("fd"), bytes("path")),
  path_rename: generic(u32("fd"), bytes("oldPath"), u32("newFd"), bytes("newPath")),
  path_symlink: generic(bytes("oldPath"), u32("fd"), bytes("newPath")),
  path_unlink_file: generic(u32("fd"), bytes("path")),
  // poll
  poll_oneoff: worker(u32("nsubs"), data("subscriptions"), payloadOut("events"), u32Out("nevents")),
  // process
  proc_raise: generic(u32("signal")),
  proc_id: generic(u32Out("pid")),
  proc_parent: generic(u32("pid"), u32Out("parent")),
  proc_signal: generic(s32("pid"), u32("signal")),
  proc_join: worker(u32("tag"), u32("pid"), u32("flags"), u32Out("pid"), structOut("status", Layout.joinStatus.sizeOf)),
  fd_pipe: generic(u32Out("readFd"), u32Out("writeFd")),
  fd_dup: generic(u32("fd"), u32Out("copy")),
  proc_spawn: worker(
    bytes("path"),
    bytes("argv"),
    bytes("envp"),
    u64("fd0"),
    u64("fd1"),
    u64("fd2"),
    u32("nfds"),
    s32("pgid"),
    u32("flags"),
    u32Out("pid"),
    payloadOut("fds")
  ),
  proc_setpgid: generic(s32("pid"), s32("pgid")),
  proc_getpgid: generic(s32("pid"), u32Out("pgid")),
  proc_setsid: generic(u32Out("sid")),
  proc_getsid: generic(s32("pid"), u32Out("sid")),
  tty_getpgrp: generic(u32("fd"), u32Out("pgid")),
  tty_setpgrp: generic(u32("fd"), s32("pgid")),
  proc_sigignore: generic(u32("signal"), u32("ignore")),
  // sockets (docs/socket-api.md): preview1's, then WASIX's
  sock_accept: generic(u32("fd"), u32("flags"), u32Out("accepted")),
  sock_recv: worker(u32("fd"), iovecsOut("iovs"), u32("flags"), u32Out("nread"), u32Out("roFlags")),
  sock_send: worker(u32("fd"), iovecsIn("iovs"), u32("flags"), u32Out("nsent")),
  sock_shutdown: generic(u32("fd"), u32("how")),
  sock_open: generic(u32("family"), u32("type"), u32("protocol"), u32Out("fd")),
  sock_bind: generic(u32("fd"), addrPortIn("addr")),
  sock_listen: generic(u32("fd"), u32("backlog")),
  sock_connect: generic(u32("fd"), addrPortIn("addr")),
  sock_accept_v2: generic(u32("fd"), u32("flags"), u32Out("accepted"), addrPortOut("addr")),
  sock_addr_local: generic(u32("fd"), addrPortOut("addr")),
  sock_addr_peer: generic(u32("fd"), addrPortOut("addr")),
  // The sender's addr_port comes back at RECV_FROM_ADDRESS_AT, after the bytes received.
  sock_recv_from: worker(u32("fd"), iovecsOut("iovs"), u32("flags"), u32Out("nread"), u32Out("roFlags")),
  sock_send_to: worker(u32("fd"), iovecsIn("iovs"), u32("flags"), data("addr"), u32Out("nsent")),
  sock_set_opt_flag: generic(u32("fd"), u32("option"), u32("flag")),
  sock_get_opt_flag: generic(u32("fd"), u32("option"), structOut("flag", 1)),
  sock_set_opt_size: generic(u32("fd"), u32("option"), u64("size")),
  sock_get_opt_size: generic(u32("fd"), u32("option"), u64Out("size")),
  sock_status: generic(u32("fd"), structOut("status", 1)),
  resolve: generic(bytes("host"), u32("port"), capacityOf("addrs", Addr.sizeOf), u32Out("naddrs")),
  sock_pair: generic(u32("family"), u32("type"), u32("protocol"), u32Out("fd1"), u32Out("fd2")),
  sock_set_opt_time: generic(u32("fd"), u32("option"), structIn("time", OptionTimestamp.sizeOf)),
  sock_get_opt_time: generic(u32("fd"), u32("option"), structOut("time", OptionTimestamp.sizeOf)),
  // the sentry's own (the worker's memory.grow hook)
  memory_grow: worker(u32("current"), u32("pages"))
} as const satisfies { readonly [K in SyscallName]: Declaration }

export type Declarations = typeof declarations
type FieldsOf<N extends SyscallName> = Declarations[N]["fields"][number]

// ---- plans: the declaration with channel places assigned --------------------------------------

export interface SyscallPlan {
  readonly name: SyscallName
  readonly number: number
  readonly stub: Stub
  readonly fields: ReadonlyArray<Field>
  /** Request words in use (NARGS). */
  readonly nargs: number
  /**
   * Per field, its channel place: the word (an absolute index into `words`: request words,
   * length words of bytes/capacity/iovecs, RESULT0/1 of u32Out), the i64 slot (u64, u64Out),
   * the size (structOut), or the data offset index (-1 where none).
   */
  readonly place: Int32Array
  /** Per field: the length words of the data-area fields packed before it (bytes, data). */
  readonly before: ReadonlyArray<ReadonlyArray<number>>
  /** The place of each field by name (argument and result names are separate). */
  readonly at: { readonly [name: string]: number }
  readonly resultAt: { readonly [name: string]: number }
}

const guestParams: { readonly [Kind in FieldKind]: ReadonlyArray<"i32" | "i64"> } = {
  u32: ["i32"],
  s32: ["i32"],
  u64: ["i64"],
  bytes: ["i32", "i32"],
  structIn: ["i32"],
  capacity: ["i32", "i32"],
  u32Out: ["i32"],
  u64Out: ["i32"],
  structOut: ["i32"],
  iovecsIn: [],
  iovecsOut: [],
  data: [],
  payloadOut: []
}

const makePlan = (name: SyscallName, declaration: Declaration): SyscallPlan => {
  const fields = declaration.fields
  const place = new Int32Array(fields.length).fill(-1)
  const before: Array<ReadonlyArray<number>> = []
  const at: Record<string, number> = {}
  const resultAt: Record<string, number> = {}
  let word = 0
  let slot = 0
  let resultWord = 0
  let payloads = 0
  const packed: Array<number> = []
  const fail = (why: string): never => {
    throw new Error(`syscall ABI: ${name}: ${why}`)
  }
  fields.forEach((f, i) => {
    before.push([...packed])
    switch (f.kind) {
      case "u32":
      case "s32":
      case "capacity":
      case "iovecsOut":
        place[i] = Word.ARG0 + word++
        break
      case "bytes":
      case "structIn":
      case "iovecsIn":
        place[i] = Word.ARG0 + word++
        if (f.kind === "iovecsIn" && packed.length > 0) fail("iovecsIn must be the first data in the data area")
        packed.push(place[i]!)
        break
      case "u64":
        place[i] = slot++
        break
      case "u32Out":
        if (resultWord >= RESULT_WORDS.length) fail("more u32 results than result words")
        place[i] = RESULT_WORDS[resultWord++]!
        break
      case "u64Out":
        place[i] = I64_RESULT_SLOT
        break
      case "structOut":
        place[i] = f.size
        payloads++
        break
      case "payloadOut":
        payloads++
        break
      case "data":
        break
    }
    if (f.kind === "capacity" || f.kind === "iovecsOut") payloads++
    if (f.kind.endsWith("Out") && f.kind !== "iovecsOut") {
      if (f.name in resultAt) fail(`two results named ${f.name}`)
      resultAt[f.name] = place[i]!
    } else {
      if (f.name in at) fail(`two arguments named ${f.name}`)
      at[f.name] = place[i]!
    }
  })
  if (word > ARG_COUNT) fail(`${word} request words, more than ${ARG_COUNT}`)
  if (slot > I64_RESULT_SLOT || I64_RESULT_SLOT >= I64_SLOT_COUNT) fail(`${slot} u64 arguments overlap the u64 result slot`)
  if (payloads > 1) fail("more than one response payload")
  if (declaration.stub === "generic") {
    const wanted = importSignatures[name as keyof typeof importSignatures]?.params
    const given = fields.flatMap((f) => guestParams[f.kind])
    if (wanted === undefined) fail("a generic stub for a call no guest imports")
    if (fields.some((f) => guestParams[f.kind].length === 0)) fail("a generic stub with a worker-only field")
    if (wanted!.join(" ") !== given.join(" ")) fail(`guest parameters (${given.join(" ")}) are not its import's (${wanted!.join(" ")})`)
  }
  return { name, number: syscallNumber[name], stub: declaration.stub, fields, nargs: word, place, before, at, resultAt }
}

/** Every syscall's plan, by syscall number; checked at module load (a bad declaration throws). */
export const plans: ReadonlyArray<SyscallPlan> = syscallNames.map((name) => makePlan(name, declarations[name]))

export const plan = (name: SyscallName): SyscallPlan => plans[syscallNumber[name]]!

// ---- the sentry's side: decoders --------------------------------------------------------------

/** Anything that holds a task's channel (the sentry's SyscallContext). */
export interface OnChannel {
  readonly channel: ChannelViews
}

/** A `bytes` argument: where its bytes are in the data area. */
export interface BytesArg {
  readonly at: (c: OnChannel) => number
  readonly length: (c: OnChannel) => number
}

type ArgAccessor<Kind> = Kind extends "u32" | "s32" | "capacity" | "iovecsOut" ? (c: OnChannel) => number
  : Kind extends "u64" ? (c: OnChannel) => bigint
  : Kind extends "bytes" | "structIn" | "iovecsIn" ? BytesArg
  : Kind extends "data" ? { readonly at: (c: OnChannel) => number }
  : never

type ResultSetter<Kind> = Kind extends "u32Out" ? (c: OnChannel, value: number) => void
  : Kind extends "u64Out" ? (c: OnChannel, value: bigint) => void
  : never

export type ArgsOf<N extends SyscallName> = {
  readonly [F in FieldsOf<N> as F["kind"] extends ResultKind ? never : F["name"]]: ArgAccessor<F["kind"]>
}
export type ResultsOf<N extends SyscallName> = {
  readonly [F in FieldsOf<N> as F["kind"] extends "u32Out" | "u64Out" ? F["name"] : never]: ResultSetter<F["kind"]>
}

const wordU32 = (w: number) => (c: OnChannel): number => c.channel.words[w]! >>> 0
const wordS32 = (w: number) => (c: OnChannel): number => c.channel.words[w]! | 0
const slotU64 = (s: number) => (c: OnChannel): bigint => c.channel.i64[s]!

/** The data offset after the bytes whose lengths are in `words`. */
const packedAt = (words: ReadonlyArray<number>): ((c: OnChannel) => number) => {
  if (words.length === 0) return () => 0
  if (words.length === 1) {
    const w = words[0]!
    return (c) => c.channel.words[w]! >>> 0
  }
  if (words.length === 2) {
    const [w0, w1] = words as [number, number]
    return (c) => (c.channel.words[w0]! >>> 0) + (c.channel.words[w1]! >>> 0)
  }
  return (c) => {
    let at = 0
    for (const w of words) at += c.channel.words[w]! >>> 0
    return at
  }
}

const makeArgs = (p: SyscallPlan): Record<string, unknown> => {
  const out: Record<string, unknown> = {}
  p.fields.forEach((f, i) => {
    const where = p.place[i]!
    switch (f.kind) {
      case "u32":
      case "capacity":
      case "iovecsOut":
        out[f.name] = wordU32(where)
        break
      case "s32":
        out[f.name] = wordS32(where)
        break
      case "u64":
        out[f.name] = slotU64(where)
        break
      case "bytes":
      case "structIn":
      case "iovecsIn":
        out[f.name] = { at: packedAt(p.before[i]!), length: wordU32(where) }
        break
      case "data":
        out[f.name] = { at: packedAt(p.before[i]!) }
        break
      default:
        break
    }
  })
  return out
}

const makeResults = (p: SyscallPlan): Record<string, unknown> => {
  const out: Record<string, unknown> = {}
  p.fields.forEach((f, i) => {
    const where = p.place[i]!
    if (f.kind === "u32Out") {
      out[f.name] = (c: OnChannel, value: number) => {
        c.channel.words[where] = value
      }
    } else if (f.kind === "u64Out") {
      out[f.name] = (c: OnChannel, value: bigint) => {
        c.channel.i64[where] = value
      }
    }
  })
  return out
}

/** Per syscall, the sentry's accessor of each argument (`args.fd_seek.offset(c)`). */
export const args = Object.fromEntries(plans.map((p) => [p.name, makeArgs(p)])) as unknown as {
  readonly [N in SyscallName]: ArgsOf<N>
}

/** Per syscall, the sentry's setter of each u32/u64 result (`results.fd_seek.newOffset(c, v)`). */
export const results = Object.fromEntries(plans.map((p) => [p.name, makeResults(p)])) as unknown as {
  readonly [N in SyscallName]: ResultsOf<N>
}

/** The u64 result of the request now in `channel` (strace). */
export const u64Result = (channel: ChannelViews): bigint => channel.i64[I64_RESULT_SLOT]!

// ---- the guest's side: the generic stub ---------------------------------------------------------

/** What a generic stub needs of the worker it runs in. */
export interface GuestSide {
  readonly channel: ChannelViews
  /** A syscall boundary (a pending stop enters the sentry here), then the memory views' refresh. */
  readonly enter: () => void
  /** Refreshes the memory views (memory.grow may have replaced the buffer). */
  readonly refresh: () => void
  /** Guest memory, as of the last refresh. */
  readonly memory: () => Uint8Array
  readonly view: () => DataView
  /** Publishes the request of syscall `n`, waits for the answer; its errno. */
  readonly roundTrip: (n: number) => number
}

/**
 * The source of a `generic` syscall's stub: straight-line JS written from the declaration
 * (no loop over fields, no array of arguments), taking the guest's wasm values in import order.
 * Fields are handled in parameter order, so the first bad one decides: a pointer outside guest
 * memory is EFAULT, a `bytes` field past the data area ENAMETOOLONG. After a successful call
 * the answer is copied to the guest's pointers: u32/u64 results, and the payload of a
 * capacity or structOut field.
 */
export const stubSource = (p: SyscallPlan): string => {
  const params: Array<string> = []
  const encode: Array<string> = []
  const copy: Array<string> = []
  let packed = false
  p.fields.forEach((f, i) => {
    const where = p.place[i]!
    const a = `a${params.length}`
    switch (f.kind) {
      case "u32":
      case "s32":
        params.push(a)
        encode.push(`words[${where}] = ${a}`)
        break
      case "u64":
        params.push(a)
        encode.push(`i64[${where}] = ${a}`)
        break
      case "bytes": {
        const b = `a${params.length + 1}`
        params.push(a, b)
        packed = true
        encode.push(
          `{ const ptr = ${a} >>> 0, len = ${b} >>> 0`,
          `  if (ptr + len > size) return ${Errno.FAULT}`,
          `  if (at + len > ${DATA_SIZE}) return ${Errno.NAMETOOLONG}`,
          `  data.set(mem.subarray(ptr, ptr + len), at)`,
          `  at += len`,
          `  words[${where}] = len }`
        )
        break
      }
      case "structIn": {
        params.push(a)
        packed = true
        // An addr_port is longer when its tag says it holds a Unix path.
        const n = f.unixSize === undefined ? `${f.size}` : `(ptr < size && mem[ptr] === ${AddressFamily.UNIX} ? ${f.unixSize} : ${f.size})`
        encode.push(
          `{ const ptr = ${a} >>> 0, n = ${n}`,
          `  if (ptr + n > size) return ${Errno.FAULT}`,
          `  data.set(mem.subarray(ptr, ptr + n), at)`,
          `  at += n`,
          `  words[${where}] = n }`
        )
        break
      }
      case "capacity": {
        const b = `a${params.length + 1}`
        params.push(a, b)
        encode.push(
          `{ const ptr = ${a} >>> 0, len = (${b} >>> 0) * ${f.size || 1}`,
          `  if (ptr + len > size) return ${Errno.FAULT}`,
          `  words[${where}] = len < ${DATA_SIZE} ? len : ${DATA_SIZE} }`
        )
        copy.push(`side.memory().set(data.subarray(0, words[${Word.RESULT_LENGTH}]), ${a} >>> 0)`)
        break
      }
      case "u32Out":
        params.push(a)
        encode.push(`if ((${a} >>> 0) + 4 > size) return ${Errno.FAULT}`)
        copy.push(`side.view().setUint32(${a} >>> 0, words[${where}] >>> 0, true)`)
        break
      case "u64Out":
        params.push(a)
        encode.push(`if ((${a} >>> 0) + 8 > size) return ${Errno.FAULT}`)
        copy.push(`side.view().setBigUint64(${a} >>> 0, BigInt.asUintN(64, i64[${where}]), true)`)
        break
      case "structOut":
        params.push(a)
        // An addr_port may be answered with a Unix address: room for the whole C struct is
        // checked before the call, so that no answer (an accepted fd) is made and then lost.
        encode.push(`if ((${a} >>> 0) + ${f.unixSize ?? f.size} > size) return ${Errno.FAULT}`)
        // A struct is a few dozen bytes: copied by hand, with no view made per call.
        copy.push(`{ const m = side.memory(), n = Math.min(words[${Word.RESULT_LENGTH}], ${f.unixSize ?? f.size}), p = ${a} >>> 0; for (let i = 0; i < n; i++) m[p + i] = data[i] }`)
        break
      default:
        throw new Error(`syscall ABI: ${p.name}: ${f.kind} in a generic stub`)
    }
  })
  return [
    `return function ${p.name}(${params.join(", ")}) {`,
    `  side.enter()`,
    `  const mem = side.memory()`,
    `  const size = mem.length`,
    ...(packed ? [`  let at = 0`] : []),
    ...encode.map((line) => `  ${line}`),
    `  words[${Word.NARGS}] = ${p.nargs}`,
    `  const errno = side.roundTrip(${p.number})`,
    `  if (errno !== ${Errno.SUCCESS}) return errno`,
    ...(copy.length > 0 ? [`  side.refresh()`, ...copy.map((line) => `  ${line}`)] : []),
    `  return ${Errno.SUCCESS}`,
    `}`
  ].join("\n")
}

/**
 * The stub of a `generic` syscall, compiled once (at worker start) from `stubSource`: the
 * declaration is the stub, written out as the plain JS a hand-written one would be.
 */
export const compileGuestStub = (p: SyscallPlan, side: GuestSide): (...params: Array<number | bigint>) => number => {
  const { words, i64, data } = side.channel
  // The source is made from the declaration alone (numbers and fixed text), never from input.
  return new Function("side", "words", "i64", "data", stubSource(p))(side, words, i64, data)
}

/**
 * The guest-facing import object of each module, from the declarations: a `generic` syscall's
 * stub is made by `genericStub`; every `worker` or `served` one that a guest may import must
 * be in `written`, and nothing else may be (a stub for an undeclared call, or a second stub for
 * a generic one, throws). So the worker provides exactly the declared imports.
 */
export const guestImports = <F>(
  genericStub: (p: SyscallPlan) => F,
  written: { readonly [name: string]: F }
): { readonly [module: string]: { readonly [name: string]: F } } => {
  const used = new Set<string>()
  const modules: Record<string, Record<string, F>> = {}
  // A call two modules provide (preview1's sockets in wasix_32v1 too) gets one import function, made once.
  const generics = new Map<SyscallName, F>()
  for (const [module, names] of Object.entries(importModules)) {
    const table: Record<string, F> = {}
    for (const name of names) {
      const p = plan(name)
      const stub = written[name]
      if (p.stub === "generic") {
        if (stub !== undefined) throw new Error(`syscall ABI: ${name} is generic but the worker also writes a stub`)
        const made = generics.get(name) ?? genericStub(p)
        generics.set(name, made)
        table[name] = made
      } else {
        if (stub === undefined) throw new Error(`syscall ABI: ${name} is declared ${p.stub} but the worker has no stub`)
        table[name] = stub
        used.add(name)
      }
    }
    modules[module] = table
  }
  for (const name of Object.keys(written)) {
    if (!used.has(name)) throw new Error(`syscall ABI: the worker writes a stub for ${name}, which no guest imports as a ${name in declarations ? "non-generic call" : "declared call"}`)
  }
  return modules
}

/** The channel place (word index or i64 slot) of argument `field` of `name`, for a hand-written stub. */
export const argPlace = <N extends SyscallName>(name: N, field: keyof ArgsOf<N> & string): number => placeIn(plan(name).at, name, field)

/** The channel place (result word or i64 slot) of u32/u64 result `field` of `name`, for a hand-written stub. */
export const resultPlace = <N extends SyscallName>(name: N, field: keyof ResultsOf<N> & string): number =>
  placeIn(plan(name).resultAt, name, field)

const placeIn = (places: { readonly [name: string]: number }, name: string, field: string): number => {
  const where = places[field]
  if (where === undefined || where < 0) throw new Error(`syscall ABI: ${name} has no field ${field} with a channel place`)
  return where
}
