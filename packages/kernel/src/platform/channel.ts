/**
 * The syscall channel: the layout of one task's SharedArrayBuffer and the handshake on it.
 *
 * Shared by both ends: the guest worker (which fills a request, publishes it and parks in
 * `Atomics.wait`) and the sentry (which wakes on `Atomics.waitAsync`, serves the request and
 * publishes the response). Exactly one request is outstanding per task, so the words below are
 * never written by both sides at once: the STATE word hands ownership of the rest back and forth.
 *
 * Layout (byte offsets):
 *   0    i32 words (see Word)                          ┐ control
 *   128  i64 slots: request i64 args, response i64     ┘
 *   192  fast-write table: guest fd → host fd + 1 (0 = go through the sentry)
 *   320  fast-read table: guest fd → host fd + 1; 448: the offset each is read at
 *   1024 data area: request payloads (paths, iovec bytes, subscriptions) and response payloads
 */

export const Word = {
  /** Who owns the channel: IDLE/RESPONSE → the worker, REQUEST → the sentry. */
  STATE: 0,
  /** Syscall number (index into `syscallNames`) of the pending request. */
  SYSCALL: 1,
  /** Set by the sentry when the task must enter the sentry at its next syscall (pending stop). */
  ATTENTION: 2,
  /** Response errno. */
  ERRNO: 3,
  /** Number of i32 args in use. */
  NARGS: 4,
  /** Response i32 results. */
  RESULT0: 5,
  RESULT1: 6,
  /** Bytes of response payload in the data area. */
  RESULT_LENGTH: 7,
  /** First of ARG_COUNT i32 request args. */
  ARG0: 8,
  /** 1 while the worker is parked in Atomics.wait for a response (see `publish`). */
  WORKER_PARKED: 16,
  /** 1 while the sentry has an Atomics.waitAsync armed for a request (see `publish`). */
  SENTRY_PARKED: 17
} as const

export const WORD_COUNT = 32

export const ARG_COUNT = 8
export const I64_SLOT_OFFSET = WORD_COUNT * 4
export const I64_SLOT_COUNT = 8
export const FAST_WRITE_OFFSET = I64_SLOT_OFFSET + I64_SLOT_COUNT * 8
/** Guest fds below this may take the in-worker write path to a host fd. */
export const FAST_WRITE_FDS = 32
/**
 * Set in a fast-write or fast-read entry (besides hostFd + 1) when the guest's fd is
 * O_NONBLOCK: a write is one attempt, short or EAGAIN, instead of going in whole; a read of an
 * empty stream fails EAGAIN at once.
 */
export const FAST_NONBLOCK = 1 << 30
/**
 * Per guest fd below FAST_WRITE_FDS: a host file lent to the worker (hostFd + 1, or 0), with
 * the `Lent` bits of what the worker may do with it itself, and FAST_NONBLOCK.
 */
export const FAST_READ_OFFSET = FAST_WRITE_OFFSET + FAST_WRITE_FDS * 4
/**
 * What a lent file's entry allows the worker, each bit granted only where the fd has the right
 * the sentry would check: READ (fd_read, and with SEEK fd_pread), WRITE (fd_write at the
 * file's offset, and with SEEK fd_pwrite; never on an APPEND fd), SEEK (fd_seek), TELL
 * (fd_tell, fd_seek by 0 from the current offset), STAT (fd_filestat_get). A stream (host
 * stdio) is lent for READ only.
 */
export const Lent = { READ: 1 << 29, WRITE: 1 << 28, SEEK: 1 << 27, TELL: 1 << 26, STAT: 1 << 25 } as const
/** The hostFd + 1 part of a lent entry; a host fd at or past it is not lent. */
export const LENT_HOST_FD = (1 << 25) - 1
/**
 * Per guest fd below FAST_WRITE_FDS: that file's offset, which the worker owns while it reads
 * it; or the mark below.
 */
export const FAST_READ_POSITION_OFFSET = FAST_READ_OFFSET + FAST_WRITE_FDS * 4
/**
 * The worker reads at the host fd's own offset (host stdio: a regular file whose offset other
 * host processes may share, or a pipe or terminal the sentry opened non-blocking, which fails
 * EAGAIN instead of waiting; then the call goes to the sentry, which waits).
 */
export const READ_AT_HOST_OFFSET = -1n
export const DATA_OFFSET = 1024
/** Payload capacity; larger reads and writes are split into several requests by the worker. */
export const DATA_SIZE = 256 * 1024
export const CHANNEL_BYTES = DATA_OFFSET + DATA_SIZE

export const State = { IDLE: 0, REQUEST: 1, RESPONSE: 2 } as const

/**
 * Hands the channel to the other end: STATE = `state`, and a wake-up only if that end is parked
 * (`parked` is its *_PARKED word). An Atomics.notify costs ~50 ns with no one waiting (V8 takes
 * its futex lock) and several µs with a waiter, so each end notifies only when the other has
 * said it parks. No wake-up is lost: a parking end stores its flag before the wait re-checks
 * STATE, and the publishing end stores STATE before it reads the flag; all four accesses are
 * sequentially consistent, so either the waiter sees the new STATE and does not sleep, or the
 * publisher sees the flag and notifies. A stale flag only costs a needless notify.
 */
export const publish = (words: Int32Array, state: number, parked: number): void => {
  Atomics.store(words, Word.STATE, state)
  if (Atomics.load(words, parked) !== 0) Atomics.notify(words, Word.STATE)
}

/**
 * The answer to a syscall whose task was killed while the sentry served it: the worker unwinds
 * the guest instead of returning to it. Not an errno (those are u16).
 */
export const KILLED = -1

/** Typed views over one task's channel; both ends build the same views over the same buffer. */
export class ChannelViews {
  readonly words: Int32Array
  readonly i64: BigInt64Array
  readonly fastWrite: Int32Array
  readonly fastRead: Int32Array
  readonly fastReadPosition: BigInt64Array
  readonly data: Uint8Array
  readonly dataView: DataView

  constructor(readonly buffer: SharedArrayBuffer) {
    this.words = new Int32Array(buffer, 0, WORD_COUNT)
    this.i64 = new BigInt64Array(buffer, I64_SLOT_OFFSET, I64_SLOT_COUNT)
    this.fastWrite = new Int32Array(buffer, FAST_WRITE_OFFSET, FAST_WRITE_FDS)
    this.fastRead = new Int32Array(buffer, FAST_READ_OFFSET, FAST_WRITE_FDS)
    this.fastReadPosition = new BigInt64Array(buffer, FAST_READ_POSITION_OFFSET, FAST_WRITE_FDS)
    this.data = new Uint8Array(buffer, DATA_OFFSET, DATA_SIZE)
    this.dataView = new DataView(buffer, DATA_OFFSET, DATA_SIZE)
  }

  static allocate(): ChannelViews {
    return new ChannelViews(new SharedArrayBuffer(CHANNEL_BYTES))
  }
}

/**
 * How long one end of the channel polls the STATE word before it parks (worker: Atomics.wait;
 * sentry: Atomics.waitAsync). A wake-up from a park costs tens of µs on this kind of machine;
 * polling costs a core. The budget doubles when polling caught the other end; every
 * PROBE_EVERY-th wait polls with the full budget, so that a task whose calls became quick again
 * is noticed (from a small budget, polling would never catch anything and never grow). On the
 * bench machine one poll (a sequentially consistent load) costs 10–18 ns, so MIN is ~0.2 µs and
 * MAX ~80–150 µs, against ~25 µs for a park and wake-up.
 *
 * The budget halves on every miss, so a task whose calls block (sleeps, reads) or whose sentry
 * is slow (a loaded machine) soon stops burning its CPU. The worker keeps one budget per
 * syscall, so that a call that blocks does not shrink the budget of the quick ones after it.
 * Budgets start small: a budget that starts full gets the poll loop optimized by V8 in every
 * idle worker's isolate (~0.1 MB each, measured), and a quick call's budget grows within a few
 * calls, a slow one's at its first full probe.
 */
export class AdaptiveSpin {
  static readonly MIN = 16
  static readonly MAX = 8192
  static readonly PROBE_EVERY = 64
  private waits = 0

  private budget: number = AdaptiveSpin.MIN

  /** Polls until `words[STATE] === expected` or the budget runs out; true when it got there. */
  poll(words: Int32Array, expected: number): boolean {
    if (++this.waits % AdaptiveSpin.PROBE_EVERY === 0) this.budget = AdaptiveSpin.MAX
    for (let i = 0; i < this.budget; i++) {
      if (Atomics.load(words, Word.STATE) === expected) {
        this.budget = Math.min(AdaptiveSpin.MAX, this.budget * 2)
        return true
      }
    }
    this.budget = Math.max(AdaptiveSpin.MIN, this.budget >> 1)
    return false
  }
}

/** Messages the sentry posts to a worker. */
export type ToWorker = {
  readonly _tag: "Run"
  readonly module: WebAssembly.Module
  readonly args: ReadonlyArray<string>
  readonly env: ReadonlyArray<string>
  /** When false every syscall goes through the sentry (strace must see them all). */
  readonly fastPaths: boolean
}

/** How a guest run ended, as the worker saw it. */
export type GuestEnd =
  | { readonly _tag: "Returned" }
  | { readonly _tag: "ProcExit"; readonly code: number }
  | { readonly _tag: "Trap"; readonly kind: TrapKind; readonly message: string }
  | { readonly _tag: "Crash"; readonly message: string }
  /** Unwound because the sentry answered a syscall with KILLED. */
  | { readonly _tag: "Killed" }

export type TrapKind = "unreachable" | "memory" | "stack" | "divide" | "other"

/** Messages a worker posts to the sentry. */
export type FromWorker =
  /** `tid`: the worker thread's Linux thread id (0 when unknown), for its CPU time in /proc. */
  | { readonly _tag: "Ready"; readonly tid: number }
  | { readonly _tag: "Ended"; readonly end: GuestEnd }
