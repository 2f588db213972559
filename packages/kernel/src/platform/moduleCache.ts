/**
 * Compiled modules, once per sandbox: keyed by the SHA-256 of the module bytes, instrumented
 * (instrument.ts) and compiled once (concurrent requests share one compilation) and handed to
 * workers as `WebAssembly.Module`, which V8 shares between threads instead of recompiling.
 *
 * Invariants: a module is held for each process that uses it (`acquire` … `release`) and is never
 * evicted while one does. Modules no process uses stay cached while the cache holds at most
 * `maxBytes` (each module counted by its size in bytes, a proxy for the wire bytes and code V8
 * keeps for it); past that the least recently used of them are evicted.
 */
import { type ImportableSyscall, importModules, importSignatures } from "@runsc/abi"
import { Deferred, Effect, Either, Exit, FiberId } from "effect"
import { createHash } from "node:crypto"
import { InvalidModule } from "../errors.js"
import type { GuestMemory } from "./instrument.js"
import { inThread, type Instrumenter } from "./instrumenter.js"
import { describeFunctionType, functionTypes, sameFunctionType } from "./moduleTypes.js"

const provided = new Set(Object.entries(importModules).flatMap(([module, names]) => names.map((name) => `${module}.${name}`)))

/**
 * Checks what the sandbox can run: a WASI command (`_start: () -> ()`, a memory) that imports
 * only functions we provide (importModules), each with its declared type (importSignatures).
 * `bytes` are the module as its author gave it.
 */
const checkInterface = (module: WebAssembly.Module, bytes: Uint8Array): string | undefined => {
  for (const imp of WebAssembly.Module.imports(module)) {
    if (imp.kind !== "function" || !provided.has(`${imp.module}.${imp.name}`)) {
      return `imports ${imp.module}.${imp.name} (${imp.kind}), which the sandbox does not provide`
    }
  }
  const exports = new Map(WebAssembly.Module.exports(module).map((e) => [e.name, e.kind]))
  if (exports.get("_start") !== "function") return "exports no _start function (not a WASI command)"
  if (exports.get("memory") !== "memory") return "exports no memory"
  const types = functionTypes(bytes)
  if (types === undefined) return undefined
  for (const imp of types.imports) {
    const declared = importSignatures[imp.name as ImportableSyscall]
    if (!sameFunctionType(imp.type, declared)) {
      return `imports ${imp.module}.${imp.name} as ${describeFunctionType(imp.type)}, not ${describeFunctionType(declared)}`
    }
  }
  const start = types.exports.get("_start")
  if (start !== undefined && (start.params.length > 0 || start.results.length > 0)) {
    return `exports _start as ${describeFunctionType(start)}: a WASI command's entry point takes and returns nothing`
  }
  return undefined
}

/** What a failed compilation says: V8's complaint about the module as given, else the instrumentation's. */
const reasonOf = (error: unknown) => (error instanceof Error ? error.message : String(error))

/**
 * Instruments and compiles `bytes`. Whatever is wrong with the module as its author gave it is
 * reported as V8 says it; a module V8 accepts but the sandbox cannot instrument is refused.
 */
const compileGuest = (path: string, bytes: Uint8Array, instrumenter: Instrumenter): Effect.Effect<CompiledGuest, InvalidModule> =>
  Effect.gen(function*() {
    const original = bytes as Uint8Array<ArrayBuffer>
    const rewritten = yield* Effect.either(instrumenter.instrument(bytes))
    if (Either.isLeft(rewritten)) {
      // Malformed modules get V8's message; well-formed ones the instrumentation cannot read, its own.
      yield* Effect.tryPromise({ try: () => WebAssembly.compile(original), catch: (e) => new InvalidModule({ path, reason: reasonOf(e) }) })
      return yield* new InvalidModule({ path, reason: `the sandbox cannot account for its memory: ${rewritten.left.message}` })
    }
    const instrumented = rewritten.right
    const module = yield* Effect.tryPromise({
      try: () => WebAssembly.compile(instrumented.bytes as Uint8Array<ArrayBuffer>),
      catch: (e) => e
    }).pipe(Effect.catchAll((e) =>
      // The original at fault is reported in its own words. A valid original made invalid by
      // the rewrite is one at V8's limits (its largest function's size or locals, which the
      // preemption points add to): refused, never run uninstrumented.
      Effect.flatMap(
        Effect.tryPromise({ try: () => WebAssembly.compile(original), catch: (e) => new InvalidModule({ path, reason: reasonOf(e) }) }),
        () => Effect.fail(new InvalidModule({ path, reason: `too close to V8's limits to be instrumented: ${reasonOf(e)}` }))
      )
    ))
    const problem = checkInterface(module, bytes)
    if (problem !== undefined) return yield* new InvalidModule({ path, reason: problem })
    return { module, memory: instrumented.memory, size: bytes.length }
  })

interface CompiledGuest {
  readonly module: WebAssembly.Module
  readonly memory: GuestMemory
  readonly size: number
}

/** A compiled program, held for one process until `release`. */
export interface CachedModule {
  readonly module: WebAssembly.Module
  readonly memory: GuestMemory
  /** Lets the cache evict the module once no process uses it (idempotent). */
  readonly release: () => void
}

export interface ModuleCacheStats {
  /** Modules cached (compiled or being compiled). */
  readonly modules: number
  /** Their sizes together, in bytes. */
  readonly bytes: number
  /** How many of them a live process uses. */
  readonly inUse: number
}

interface Entry {
  readonly key: string
  readonly compiled: Deferred.Deferred<CompiledGuest, InvalidModule>
  /** Whether a compilation was started (its result goes to `compiled`). */
  started: boolean
  /** Its size once compiled (0 before). */
  size: number
  /** Processes (and acquires waiting for the compilation) that hold it. */
  users: number
}

/** Bytes of modules no process uses that the cache keeps by default. */
export const DEFAULT_MODULE_CACHE_BYTES = 128 * 1024 * 1024

export class ModuleCache {
  /** In order of last use, least recent first (an entry moves to the end when acquired). */
  private readonly entries = new Map<string, Entry>()
  private bytes = 0
  /** Digests of byte arrays already seen (the content cache hands out the same array again). */
  private readonly digests = new WeakMap<Uint8Array, string>()

  /** `instrumenter`: where modules are rewritten; the kernel's is a thread of its own (instrumenter.ts). */
  constructor(private readonly maxBytes = DEFAULT_MODULE_CACHE_BYTES, private readonly instrumenter: Instrumenter = inThread) {}

  /** The compiled module of `bytes`, held until its `release`; `path` only names it in errors. */
  acquire(path: string, bytes: Uint8Array): Effect.Effect<CachedModule, InvalidModule> {
    // Uninterruptible up to the wait: an acquirer interrupted at any point has either not
    // counted itself, or counted itself and started (or found) the compilation, and releases.
    return Effect.uninterruptibleMask((restore) =>
      Effect.suspend(() => {
        const entry = this.touch(this.keyOf(bytes))
        entry.users++
        let released = false
        const release = () => {
          if (released) return
          released = true
          entry.users--
          this.evict()
        }
        const started = entry.started ? Effect.void : this.compile(entry, path, bytes)
        return Effect.zipRight(started, restore(Deferred.await(entry.compiled))).pipe(
          Effect.onExit((exit) => (Exit.isSuccess(exit) ? Effect.void : Effect.sync(release))),
          Effect.map((guest): CachedModule => ({ module: guest.module, memory: guest.memory, release }))
        )
      })
    )
  }

  get stats(): ModuleCacheStats {
    let inUse = 0
    for (const entry of this.entries.values()) if (entry.users > 0) inUse++
    return { modules: this.entries.size, bytes: this.bytes, inUse }
  }

  private keyOf(bytes: Uint8Array): string {
    let key = this.digests.get(bytes)
    if (key === undefined) {
      key = createHash("sha256").update(bytes).digest("hex")
      this.digests.set(bytes, key)
    }
    return key
  }

  /** The entry of `key` (a new one if none), now the most recently used. */
  private touch(key: string): Entry {
    const entry = this.entries.get(key) ?? { key, compiled: Deferred.unsafeMake(FiberId.none), started: false, size: 0, users: 0 }
    this.entries.delete(key)
    this.entries.set(key, entry)
    return entry
  }

  /**
   * Starts compiling `bytes` into `entry` (run uninterruptibly). The compilation is the cache's, not its first
   * acquirer's: it runs to its end whoever stops waiting for it, so that it is never left half
   * done, or cached as an interruption, for those who wait.
   */
  private compile(entry: Entry, path: string, bytes: Uint8Array): Effect.Effect<void> {
    entry.started = true
    const compilation = compileGuest(path, bytes, this.instrumenter).pipe(
      Effect.tap((guest) =>
        Effect.sync(() => {
          entry.size = guest.size
          this.bytes += guest.size
          this.evict()
        })
      ),
      // A failed compilation is not cached: each attempt reports its own failure.
      Effect.tapErrorCause(() => Effect.sync(() => this.entries.get(entry.key) === entry && this.entries.delete(entry.key)))
    )
    return Effect.asVoid(Effect.forkDaemon(Deferred.complete(entry.compiled, compilation)))
  }

  /** Evicts least recently used modules no process holds until the cache is within its bytes. */
  private evict(): void {
    for (const entry of this.entries.values()) {
      if (this.bytes <= this.maxBytes) return
      if (entry.users > 0 || entry.size === 0) continue
      this.entries.delete(entry.key)
      this.bytes -= entry.size
    }
  }
}
