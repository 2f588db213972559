/**
 * The WebAssembly binary format, as far as the sandbox reads and writes modules: the header and
 * sections, LEB128 integers, names, value and function types (recursion groups and subtypes of
 * the GC proposal included), limits, and the import, function and export sections; and the
 * encoding the instrumentation writes with. Its two readers build on this: moduleTypes.ts (the
 * function types of a module's imports and exports) and instrument.ts (which also decodes
 * instructions, and rewrites).
 *
 * Whatever this cannot read — truncated bytes, an integer too long, a form it does not know —
 * throws MalformedWasm; each reader decides what that means for the module.
 */

/** Bytes this reader cannot read as a module (malformed, or a form it does not know). */
export class MalformedWasm extends Error {}

export const malformed = (what: string): never => {
  throw new MalformedWasm(what)
}

export const SectionId = {
  custom: 0,
  type: 1,
  import: 2,
  function: 3,
  table: 4,
  memory: 5,
  global: 6,
  export: 7,
  start: 8,
  element: 9,
  code: 10,
  data: 11,
  dataCount: 12,
  tag: 13
} as const

/** The order non-custom sections must appear in. */
export const SECTION_ORDER: ReadonlyArray<number> = [1, 2, 3, 4, 5, 13, 6, 7, 8, 9, 12, 10, 11]

/** What an import or export is (its kind byte). */
export const ExternalKind = { function: 0, table: 1, memory: 2, global: 3, tag: 4 } as const

const utf8Decoder = new TextDecoder()
const utf8Encoder = new TextEncoder()

/** Reads `bytes` from `at` up to `end` (a section's payload, a function body). */
export class Reader {
  constructor(readonly bytes: Uint8Array, public at: number, public end: number) {}

  get done(): boolean {
    return this.at >= this.end
  }

  byte(): number {
    if (this.at >= this.end) malformed("unexpected end of section")
    return this.bytes[this.at++]!
  }

  peek(): number {
    if (this.at >= this.end) malformed("unexpected end of section")
    return this.bytes[this.at]!
  }

  /** An unsigned LEB128 of at most 32 bits. */
  u32(): number {
    // Most are one byte.
    const first = this.bytes[this.at]!
    if (first < 0x80 && this.at < this.end) {
      this.at++
      return first
    }
    let result = 0
    for (let shift = 0; shift < 35; shift += 7) {
      const b = this.byte()
      result += (b & 0x7f) * 2 ** shift
      if ((b & 0x80) === 0) {
        if (result > 0xffffffff) malformed("integer too large")
        return result
      }
    }
    return malformed("integer too long")
  }

  /** Skips a LEB128 of up to 64 bits (signed or not). */
  leb(): void {
    for (let i = 0; i < 10; i++) if ((this.byte() & 0x80) === 0) return
    malformed("integer too long")
  }

  skip(n: number): void {
    if (n > this.end - this.at) malformed("unexpected end of section")
    this.at += n
  }

  name(): string {
    const length = this.u32()
    const start = this.at
    this.skip(length)
    return utf8Decoder.decode(this.bytes.subarray(start, start + length))
  }
}

export const encodeLeb = (value: number): Array<number> => {
  const out: Array<number> = []
  do {
    let b = value & 0x7f
    value = Math.floor(value / 128)
    if (value !== 0) b |= 0x80
    out.push(b)
  } while (value !== 0)
  return out
}

/** Bytes appended to a buffer that doubles as needed. */
export class Writer {
  private buffer: Uint8Array
  length = 0

  constructor(capacity: number) {
    this.buffer = new Uint8Array(Math.max(capacity, 64))
  }

  private room(n: number): void {
    if (this.length + n <= this.buffer.length) return
    const bigger = new Uint8Array(Math.max(this.buffer.length * 2, this.length + n))
    bigger.set(this.buffer.subarray(0, this.length))
    this.buffer = bigger
  }

  bytes(data: Uint8Array): this {
    this.room(data.length)
    this.buffer.set(data, this.length)
    this.length += data.length
    return this
  }

  byte(value: number): this {
    this.room(1)
    this.buffer[this.length++] = value
    return this
  }

  /** An unsigned LEB128. */
  leb(value: number): this {
    this.room(5)
    do {
      let b = value & 0x7f
      value = Math.floor(value / 128)
      if (value !== 0) b |= 0x80
      this.buffer[this.length++] = b
    } while (value !== 0)
    return this
  }

  /** A signed LEB128 of a 32-bit integer (an i32.const's immediate). */
  i32(value: number): this {
    this.room(5)
    for (;;) {
      const b = value & 0x7f
      value >>= 7
      if ((value === 0 && (b & 0x40) === 0) || (value === -1 && (b & 0x40) !== 0)) {
        this.buffer[this.length++] = b
        return this
      }
      this.buffer[this.length++] = b | 0x80
    }
  }

  name(name: string): this {
    const utf8 = utf8Encoder.encode(name)
    return this.leb(utf8.length).bytes(utf8)
  }

  /** The bytes written (a view of the buffer). */
  get result(): Uint8Array {
    return this.buffer.subarray(0, this.length)
  }

  /** The bytes written, in an array of their own (whose `buffer` holds nothing else). */
  get finished(): Uint8Array {
    return this.length === this.buffer.length ? this.buffer : this.buffer.slice(0, this.length)
  }
}

// ---- sections ------------------------------------------------------------------------------

export interface Section {
  readonly id: number
  /** Where the section begins (its id byte); its size may be a padded LEB128. */
  readonly header: number
  /** Its payload. */
  readonly start: number
  readonly end: number
}

/** The sections of a module, in the order they appear, after checking its header. */
export const sectionsOf = (bytes: Uint8Array): Array<Section> => {
  if (bytes.length < 8 || bytes[0] !== 0 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d) malformed("no \\0asm header")
  if (bytes[4] !== 1 || bytes[5] !== 0 || bytes[6] !== 0 || bytes[7] !== 0) malformed("unknown binary version")
  const r = new Reader(bytes, 8, bytes.length)
  const sections: Array<Section> = []
  while (!r.done) {
    const header = r.at
    const id = r.byte()
    const size = r.u32()
    const start = r.at
    r.skip(size)
    sections.push({ id, header, start, end: start + size })
  }
  return sections
}

/** A reader of `section`'s payload. */
export const readerOf = (bytes: Uint8Array, section: Section): Reader => new Reader(bytes, section.start, section.end)

// ---- types ---------------------------------------------------------------------------------

/** Value types by their one-byte code, in the text format's terms. */
const VALUE_TYPES: ReadonlyArray<string | undefined> = (() => {
  const names: Array<string | undefined> = new Array(256).fill(undefined)
  const known: ReadonlyArray<[number, string]> = [
    [0x7f, "i32"], [0x7e, "i64"], [0x7d, "f32"], [0x7c, "f64"], [0x7b, "v128"],
    [0x70, "funcref"], [0x6f, "externref"], [0x6e, "anyref"], [0x6d, "eqref"], [0x6c, "i31ref"],
    [0x6b, "structref"], [0x6a, "arrayref"], [0x69, "exnref"], [0x71, "nullref"],
    [0x72, "nullexternref"], [0x73, "nullfuncref"], [0x74, "nullexnref"]
  ]
  for (const [code, name] of known) names[code] = name
  return names
})()

/**
 * A value type: one byte, or (ref null? heaptype) from the typed function references and GC
 * proposals. A one-byte code this does not name is read as such (named by its code): the engine,
 * not this reader, decides whether it is valid.
 */
export const valueType = (r: Reader): string => {
  const code = r.byte()
  if (code === 0x63 || code === 0x64) {
    r.leb() // the heap type (s33)
    return code === 0x63 ? "(ref null)" : "(ref)"
  }
  return VALUE_TYPES[code] ?? `0x${code.toString(16)}`
}

/** A function type: what a function takes and returns. */
export interface FunctionType {
  readonly params: ReadonlyArray<string>
  readonly results: ReadonlyArray<string>
}

/** A struct or array field's type: a value type or a packed one (i8 0x78, i16 0x77, one byte), and its mutability. */
const skipFieldType = (r: Reader): void => {
  valueType(r)
  r.byte()
}

/** A composite type: a function type, or undefined for a struct or array type. */
const compositeType = (r: Reader): FunctionType | undefined => {
  switch (r.byte()) {
    case 0x60: {
      const params = Array.from({ length: r.u32() }, () => valueType(r))
      const results = Array.from({ length: r.u32() }, () => valueType(r))
      return { params, results }
    }
    case 0x5f:
      for (let n = r.u32(); n > 0; n--) skipFieldType(r)
      return undefined
    case 0x5e:
      skipFieldType(r)
      return undefined
    default:
      return malformed("unknown type form")
  }
}

/** A subtype (`sub`, `sub final`, with its supertypes) or a bare composite type. */
const subType = (r: Reader): FunctionType | undefined => {
  const b = r.peek()
  if (b === 0x50 || b === 0x4f) {
    r.byte()
    for (let n = r.u32(); n > 0; n--) r.u32()
  }
  return compositeType(r)
}

/**
 * Every type the type section defines, by type index (a recursion group defines several):
 * its function type, or undefined for a type that is not one (a struct, an array).
 */
export const readTypeSection = (r: Reader): Array<FunctionType | undefined> => {
  const types: Array<FunctionType | undefined> = []
  for (let n = r.u32(); n > 0; n--) {
    if (r.peek() === 0x4e) {
      r.byte()
      for (let k = r.u32(); k > 0; k--) types.push(subType(r))
    } else {
      types.push(subType(r))
    }
  }
  return types
}

// ---- limits, imports, functions, exports ---------------------------------------------------

export interface Limits {
  /** Bit 0: a maximum follows; bit 1: shared; bit 2: 64-bit (its numbers are not read: 0 here). */
  readonly flags: number
  readonly min: number
  readonly max: number | undefined
}

export const readLimits = (r: Reader): Limits => {
  const flags = r.byte()
  if (flags > 7) malformed("unknown limits")
  // 64-bit limits may not fit a u32; their readers refuse them.
  const read = () => (flags & 4 ? (r.leb(), 0) : r.u32())
  const min = read()
  const max = flags & 1 ? read() : undefined
  return { flags, min, max }
}

export const skipTableType = (r: Reader): void => {
  valueType(r)
  readLimits(r)
}

export type Import =
  & { readonly module: string; readonly name: string }
  & (
    | { readonly kind: typeof ExternalKind.function; readonly typeIndex: number }
    | { readonly kind: typeof ExternalKind.memory; readonly limits: Limits }
    | { readonly kind: typeof ExternalKind.table | typeof ExternalKind.global | typeof ExternalKind.tag }
  )

export const readImportSection = (r: Reader): Array<Import> => {
  const imports: Array<Import> = []
  for (let n = r.u32(); n > 0; n--) {
    const module = r.name()
    const name = r.name()
    const kind = r.byte()
    switch (kind) {
      case ExternalKind.function:
        imports.push({ module, name, kind, typeIndex: r.u32() })
        break
      case ExternalKind.table:
        skipTableType(r)
        imports.push({ module, name, kind })
        break
      case ExternalKind.memory:
        imports.push({ module, name, kind, limits: readLimits(r) })
        break
      case ExternalKind.global:
        valueType(r)
        r.byte() // mutability
        imports.push({ module, name, kind })
        break
      case ExternalKind.tag:
        r.byte() // attribute
        r.u32() // type index
        imports.push({ module, name, kind })
        break
      default:
        malformed("unknown import kind")
    }
  }
  return imports
}

/** The type index of each function the module defines (imported functions come before them). */
export const readFunctionSection = (r: Reader): Array<number> => Array.from({ length: r.u32() }, () => r.u32())

export interface Export {
  readonly name: string
  /** An ExternalKind. */
  readonly kind: number
  readonly index: number
}

export const readExportSection = (r: Reader): Array<Export> =>
  Array.from({ length: r.u32() }, () => {
    const name = r.name()
    const kind = r.byte()
    return { name, kind, index: r.u32() }
  })
