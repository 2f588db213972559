/**
 * Compiled modules, once per sandbox: keyed by the SHA-256 of the module bytes, compiled once
 * (concurrent requests share one compilation) and handed to workers as `WebAssembly.Module`,
 * which V8 shares between threads instead of recompiling.
 */
import { importModules, importSignatures, type SyscallName } from "@runsc/abi"
import { Deferred, Effect, FiberId } from "effect"
import { createHash } from "node:crypto"
import { InvalidModule } from "../errors.js"
import { describeFunctionType, functionTypes, sameFunctionType } from "./moduleTypes.js"

const provided = new Set(Object.entries(importModules).flatMap(([module, names]) => names.map((name) => `${module}.${name}`)))

/**
 * Checks what the sandbox can run: a WASI command (`_start: () -> ()`, a memory) that imports
 * only functions we provide (importModules), each with its declared type (importSignatures).
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
    const declared = importSignatures[imp.name as SyscallName]
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

export class ModuleCache {
  private readonly compiled = new Map<string, Deferred.Deferred<WebAssembly.Module, InvalidModule>>()
  /** Digests of byte arrays already seen (the content cache hands out the same array again). */
  private readonly digests = new WeakMap<Uint8Array, string>()

  /** `path` only names the module in errors. */
  compile(path: string, bytes: Uint8Array): Effect.Effect<WebAssembly.Module, InvalidModule> {
    return Effect.suspend(() => {
      let key = this.digests.get(bytes)
      if (key === undefined) {
        key = createHash("sha256").update(bytes).digest("hex")
        this.digests.set(bytes, key)
      }
      const existing = this.compiled.get(key)
      if (existing) return Deferred.await(existing)
      const slot = Deferred.unsafeMake<WebAssembly.Module, InvalidModule>(FiberId.none)
      this.compiled.set(key, slot)
      const compile = Effect.tryPromise({
        try: () => WebAssembly.compile(bytes as Uint8Array<ArrayBuffer>),
        catch: (e) => new InvalidModule({ path, reason: e instanceof Error ? e.message : String(e) })
      }).pipe(
        Effect.flatMap((m) => {
          const problem = checkInterface(m, bytes)
          return problem === undefined ? Effect.succeed(m) : Effect.fail(new InvalidModule({ path, reason: problem }))
        }),
        // A failed compilation is not cached: the next attempt may bring different bytes for the same path.
        Effect.tapError(() => Effect.sync(() => this.compiled.delete(key)))
      )
      return Effect.flatMap(Deferred.complete(slot, compile), () => Deferred.await(slot))
    })
  }

  get size(): number {
    return this.compiled.size
  }
}
