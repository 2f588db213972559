/**
 * The function types of a module's imports and exports, read from its binary:
 * `WebAssembly.Module.imports`/`exports` give only names and kinds, and JS functions take and
 * are called with any type, so the sentry reads the type section itself to hold a command to
 * the `_start: () -> ()` it must have and to the declared type of each syscall it imports.
 *
 * Only modules that `WebAssembly.compile` accepted are read, so the binary is well formed; a
 * construct this reader does not know (a future type form) makes it answer undefined ("cannot
 * tell") rather than reject a module the engine runs.
 */

import type { WasmSignature } from "@runsc/abi"

export type FunctionType = WasmSignature

/** A function type in the text format's terms: `(param i32) (result i32)`, or `() -> ()`. */
export const describeFunctionType = (type: FunctionType): string =>
  [
    ...(type.params.length > 0 ? [`(param ${type.params.join(" ")})`] : []),
    ...(type.results.length > 0 ? [`(result ${type.results.join(" ")})`] : [])
  ].join(" ") || "() -> ()"

class Unreadable extends Error {}

const utf8 = new TextDecoder()

const VALUE_TYPES: { readonly [code: number]: string } = {
  0x7f: "i32",
  0x7e: "i64",
  0x7d: "f32",
  0x7c: "f64",
  0x7b: "v128",
  0x70: "funcref",
  0x6f: "externref"
}

const SECTION = { type: 1, import: 2, function: 3, export: 7 } as const

class Reader {
  at = 0
  constructor(readonly bytes: Uint8Array, readonly end = bytes.length) {}

  byte(): number {
    if (this.at >= this.end) throw new Unreadable("truncated")
    return this.bytes[this.at++]!
  }

  /** An unsigned LEB128 (u32 or u64, as a number: only counts and indices are used). */
  leb(): number {
    let result = 0
    let shift = 0
    for (;;) {
      const b = this.byte()
      result += (b & 0x7f) * 2 ** shift
      if ((b & 0x80) === 0) return result
      shift += 7
      if (shift > 63) throw new Unreadable("LEB128 too long")
    }
  }

  skip(n: number): void {
    if (this.at + n > this.end) throw new Unreadable("truncated")
    this.at += n
  }

  name(): string {
    const length = this.leb()
    const start = this.at
    this.skip(length)
    return utf8.decode(this.bytes.subarray(start, start + length))
  }

  valueType(): string {
    const code = this.byte()
    const known = VALUE_TYPES[code]
    if (known !== undefined) return known
    // (ref null? heaptype), from the typed function references and GC proposals.
    if (code === 0x63 || code === 0x64) {
      this.leb()
      return code === 0x63 ? "(ref null)" : "(ref)"
    }
    throw new Unreadable(`value type 0x${code.toString(16)}`)
  }

  limits(): void {
    const flags = this.byte()
    this.leb()
    if ((flags & 1) !== 0) this.leb()
  }
}

export interface FunctionImport {
  readonly module: string
  readonly name: string
  readonly type: FunctionType
}

export const sameFunctionType = (a: FunctionType, b: FunctionType): boolean =>
  a.params.length === b.params.length && a.results.length === b.results.length &&
  a.params.every((t, i) => t === b.params[i]) && a.results.every((t, i) => t === b.results[i])

/**
 * The types of the functions a module imports (in order) and exports (by name); undefined when
 * the binary uses a form this reader does not know.
 */
export const functionTypes = (
  bytes: Uint8Array
): { readonly imports: ReadonlyArray<FunctionImport>; readonly exports: ReadonlyMap<string, FunctionType> } | undefined => {
  try {
    const r = new Reader(bytes)
    r.skip(8) // magic and version
    const types: Array<FunctionType | undefined> = []
    const functions: Array<number> = [] // type index of each function, imports first
    const imported: Array<{ readonly module: string; readonly name: string; readonly typeIndex: number }> = []
    const exports = new Map<string, number>()
    while (r.at < bytes.length) {
      const id = r.byte()
      const size = r.leb()
      const s = new Reader(bytes, r.at + size)
      s.at = r.at
      r.skip(size)
      if (id === SECTION.type) {
        for (let n = s.leb(); n > 0; n--) {
          // Only plain function types are expected from a WASI command; anything else (a
          // recursive group, a struct) stops the reading: the answer is "cannot tell".
          if (s.byte() !== 0x60) throw new Unreadable("a type that is not a plain function type")
          const params = Array.from({ length: s.leb() }, () => s.valueType())
          const results = Array.from({ length: s.leb() }, () => s.valueType())
          types.push({ params, results })
        }
      } else if (id === SECTION.import) {
        for (let n = s.leb(); n > 0; n--) {
          const module = s.name()
          const name = s.name()
          const kind = s.byte()
          if (kind === 0x00) {
            const typeIndex = s.leb()
            functions.push(typeIndex)
            imported.push({ module, name, typeIndex })
          } else if (kind === 0x01) {
            s.valueType()
            s.limits()
          } else if (kind === 0x02) s.limits()
          else if (kind === 0x03) {
            s.valueType()
            s.byte()
          } else if (kind === 0x04) {
            s.byte()
            s.leb()
          } else throw new Unreadable(`import kind 0x${kind.toString(16)}`)
        }
      } else if (id === SECTION.function) {
        for (let n = s.leb(); n > 0; n--) functions.push(s.leb())
      } else if (id === SECTION.export) {
        for (let n = s.leb(); n > 0; n--) {
          const name = s.name()
          const kind = s.byte()
          const index = s.leb()
          if (kind === 0x00) exports.set(name, index)
        }
      }
    }
    const typeOf = (typeIndex: number | undefined) => {
      const type = typeIndex === undefined ? undefined : types[typeIndex]
      if (type === undefined) throw new Unreadable("a function of no known type")
      return type
    }
    return {
      imports: imported.map(({ module, name, typeIndex }) => ({ module, name, type: typeOf(typeIndex) })),
      exports: new Map([...exports].map(([name, index]) => [name, typeOf(functions[index])] as const))
    }
  } catch (e) {
    if (e instanceof Unreadable) return undefined
    throw e
  }
}
