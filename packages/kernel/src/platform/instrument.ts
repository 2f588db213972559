/**
 * Guest-module instrumentation: rewrites a module's binary before it is compiled so that every
 * `memory.grow` of the guest goes through its worker, which asks the sentry for the pages first
 * (the sandbox's memory account: a grow past it returns -1, as on a full machine, and the
 * worker can be killed there even though V8 does not interrupt a wasm loop of grows).
 *
 * The rewrite adds, without renumbering anything the module already has:
 *   - a function type (i32) -> (i32), after the module's own types;
 *   - a funcref table of one slot, after its own tables, exported as GROW_TABLE_EXPORT; the
 *     worker puts its grow function in slot 0 after instantiation;
 *   - each `memory.grow 0` becomes `i32.const 0; call_indirect (type T) (table N)`: the pages
 *     asked for stay the argument, the result stays the old size or -1;
 *   - a `start` function becomes an export (START_EXPORT) that the worker calls once the table
 *     is filled, since a start function runs during instantiation, before that;
 *   - each table of the module gets a maximum of at most MAX_TABLE_GROWTH entries past its
 *     initial size (see GuestMemory.tableEntries).
 *
 * To find every `memory.grow` the whole code section is decoded, instruction by instruction
 * (MVP, sign extension, saturating conversions, bulk memory, reference types, SIMD, threads,
 * exception handling, tail calls, typed function references, GC). A module this decoder cannot
 * read is refused (UninstrumentableModule), never run uninstrumented. A module that uses more than
 * one memory, or a 64-bit one, is refused too: the sandbox accounts for one 32-bit memory.
 * Sections, types, imports and exports are read (and the result encoded) with wasmBinary.ts;
 * instructions are decoded here.
 */
import { GROW_TABLE_EXPORT, START_EXPORT } from "./guestHooks.js"
import {
  encodeLeb,
  ExternalKind,
  type Limits,
  malformed,
  MalformedWasm,
  Reader,
  readerOf,
  readExportSection,
  readImportSection,
  readLimits,
  readTypeSection,
  type Section,
  SECTION_ORDER,
  SectionId,
  sectionsOf,
  valueType,
  Writer
} from "./wasmBinary.js"

/** What the sandbox needs to know of a guest's memory. */
export interface GuestMemory {
  /** 64 KiB pages the memory starts with. */
  readonly initialPages: number
  /** Pages it may grow to: its declared maximum, within what V8 gives a 32-bit memory. */
  readonly maximumPages: number
  /**
   * Entries its tables may hold together (each table's maximum, which the instrumentation sets
   * to at most MAX_TABLE_GROWTH past its initial size): V8 keeps tables on the worker's heap, at
   * up to TABLE_ENTRY_BYTES an entry, and a growth past that heap's limit aborts the whole
   * sandbox process, so tables are bounded and charged whole when the process starts.
   */
  readonly tableEntries: number
  /**
   * What V8 may hold for those entries (tableEntries × TABLE_ENTRY_BYTES): the tables' part of
   * the memory a process of this module is charged, beside its linear memory.
   */
  readonly tableBytes: number
}

export interface InstrumentedModule {
  readonly bytes: Uint8Array
  readonly memory: GuestMemory
}

/** Why a module could not be instrumented (malformed, or something the decoder does not know). */
export class UninstrumentableModule extends Error {}

/** The most pages V8 gives a 32-bit memory (4 GiB). */
export const MAX_MEMORY_PAGES = 65536

/** Entries a table may grow by past its initial size (table.grow past it returns -1). */
export const MAX_TABLE_GROWTH = 65536

/** What V8 holds for a table entry (measured: 10 million entries took ~500 MiB). */
export const TABLE_ENTRY_BYTES = 64

/** A module the sandbox will not run, though it may be valid (see the header). */
const refuse = (what: string): never => {
  throw new UninstrumentableModule(what)
}

/** A table index, which must be below `tables`. */
const tableIndex = (r: Reader, tables: number): void => {
  if (r.u32() >= tables) malformed("table index out of range")
}

// ---- instructions --------------------------------------------------------------------------

const skipBlockType = (r: Reader): void => {
  const b = r.peek()
  if (b === 0x63 || b === 0x64) valueType(r)
  else r.leb() // 0x40 (empty), a one-byte value type, or a type index (s33)
}

const skipMemarg = (r: Reader): void => {
  const align = r.u32()
  // Bit 6 of the alignment says a memory index follows (multi-memory).
  if (align & 0x40) {
    if (r.u32() !== 0) refuse("more than one memory")
  }
  r.leb()
}

const memoryIndex = (r: Reader): void => {
  if (r.u32() !== 0) refuse("more than one memory")
}

/** How the decoder's fast path reads an opcode's immediates (SPECIAL: the switch in `instruction`). */
const NO_IMMEDIATE = 0
const ONE_LEB = 1
const MEMARG = 2
const SPECIAL = 3

const IMMEDIATES = (() => {
  const kinds = new Uint8Array(256).fill(SPECIAL)
  for (let op = 0x45; op <= 0xc4; op++) kinds[op] = NO_IMMEDIATE // numeric
  for (let op = 0x28; op <= 0x3e; op++) kinds[op] = MEMARG // loads and stores
  for (const op of [0x00, 0x01, 0x05, 0x0a, 0x0f, 0x19, 0x1a, 0x1b, 0xd1, 0xd3, 0xd4]) kinds[op] = NO_IMMEDIATE
  // branches, calls, locals, globals, constants (their LEB's value does not matter here)
  for (const op of [0x07, 0x08, 0x09, 0x0c, 0x0d, 0x10, 0x12, 0x14, 0x15, 0x20, 0x21, 0x22, 0x23, 0x24, 0x41, 0x42, 0xd0, 0xd2, 0xd5, 0xd6]) {
    kinds[op] = ONE_LEB
  }
  return kinds
})()

/**
 * Decodes one function body's (or constant expression's) instructions up to `r.end`, or up to
 * the `end` closing the outermost block when `constant`; appends to `grows` where each
 * `memory.grow` begins and ends; fails on a table index at or past `tables`. The common opcodes
 * take a fast path over the bytes; the others go through `instruction`.
 */
const decodeInstructions = (r: Reader, tables: number, grows: Array<number>, constant = false): void => {
  const bytes = r.bytes
  const end = r.end
  const depth = { value: 0 }
  let at = r.at
  while (constant || at < end) {
    const op = bytes[at++]!
    const kind = IMMEDIATES[op]
    if (kind === ONE_LEB) {
      while (bytes[at++]! & 0x80) if (at >= end) malformed("unexpected end of section")
    } else if (kind === MEMARG) {
      // Alignment (one byte unless it carries a memory index), then the offset.
      if (bytes[at]! < 0x40) at++
      else {
        r.at = at
        skipMemarg(r)
        at = r.at
        continue
      }
      while (bytes[at++]! & 0x80) if (at >= end) malformed("unexpected end of section")
    } else if (kind === SPECIAL) {
      r.at = at
      if (instruction(r, op, at - 1, tables, grows, depth, constant)) return
      at = r.at
    }
    if (at > end) malformed("unexpected end of section")
  }
  if (depth.value !== -1) malformed("function body ends inside a block")
}

/**
 * The opcodes off the fast path, with `r` after the opcode (at `start`); true at the `end` of a
 * constant expression.
 */
const instruction = (
  r: Reader,
  op: number,
  start: number,
  tables: number,
  grows: Array<number>,
  depth: { value: number },
  constant: boolean
): boolean => {
  switch (op) {
    case 0x02: case 0x03: case 0x04: case 0x06:
      skipBlockType(r)
      depth.value++
      return false
    case 0x1f: // try_table
      skipBlockType(r)
      for (let n = r.u32(); n > 0; n--) {
        const kind = r.byte()
        if (kind > 3) malformed("unknown catch clause")
        if (kind < 2) r.u32()
        r.u32()
      }
      depth.value++
      return false
    case 0x0b:
      if (constant && depth.value === 0) return true
      depth.value--
      return false
    case 0x18: // delegate ends a try
      r.u32()
      depth.value--
      return false
    case 0x0e:
      for (let n = r.u32(); n >= 0; n--) r.u32()
      return false
    case 0x11: case 0x13:
      r.u32()
      tableIndex(r, tables)
      return false
    case 0x1c:
      for (let n = r.u32(); n > 0; n--) valueType(r)
      return false
    case 0x25: case 0x26:
      tableIndex(r, tables)
      return false
    case 0x3f:
      memoryIndex(r)
      return false
    case 0x40:
      memoryIndex(r)
      grows.push(start, r.at)
      return false
    case 0x43:
      r.skip(4)
      return false
    case 0x44:
      r.skip(8)
      return false
    case 0xfb:
      skipGc(r)
      return false
    case 0xfc:
      skipMisc(r, tables)
      return false
    case 0xfd:
      skipSimd(r)
      return false
    case 0xfe:
      skipAtomic(r)
      return false
    default:
      return malformed(`unknown opcode 0x${op.toString(16)}`)
  }
}

const skipMisc = (r: Reader, tables: number): void => {
  const op = r.u32()
  if (op <= 7) return
  switch (op) {
    case 8: // memory.init data memory
      r.u32()
      memoryIndex(r)
      return
    case 9: // data.drop
    case 13: // elem.drop
      r.u32()
      return
    case 10: // memory.copy
      memoryIndex(r)
      memoryIndex(r)
      return
    case 11: // memory.fill
      memoryIndex(r)
      return
    case 12: // table.init elem table
      r.u32()
      tableIndex(r, tables)
      return
    case 14: // table.copy
      tableIndex(r, tables)
      tableIndex(r, tables)
      return
    case 15: case 16: case 17: // table.grow, table.size, table.fill
      tableIndex(r, tables)
      return
    default:
      malformed(`unknown opcode 0xfc ${op}`)
  }
}

const skipSimd = (r: Reader): void => {
  const op = r.u32()
  if (op <= 11 || op === 92 || op === 93) skipMemarg(r)
  else if (op === 12 || op === 13) r.skip(16)
  else if (op >= 21 && op <= 34) r.skip(1)
  else if (op >= 84 && op <= 91) {
    skipMemarg(r)
    r.skip(1)
  } else if (op > 0x113) malformed(`unknown opcode 0xfd ${op}`)
}

const skipAtomic = (r: Reader): void => {
  const op = r.u32()
  if (op === 3) r.skip(1)
  else if (op <= 2 || (op >= 0x10 && op <= 0x4e)) skipMemarg(r)
  else malformed(`unknown opcode 0xfe ${op}`)
}

const skipGc = (r: Reader): void => {
  const op = r.u32()
  switch (op) {
    case 0: case 1: case 6: case 7: case 11: case 12: case 13: case 14: case 16:
      r.u32()
      return
    case 2: case 3: case 4: case 5: case 8: case 9: case 10: case 17: case 18: case 19:
      r.u32()
      r.u32()
      return
    case 15: case 26: case 27: case 28: case 29: case 30:
      return
    case 20: case 21: case 22: case 23:
      r.leb()
      return
    case 24: case 25: // br_on_cast(_fail) flags label from to
      r.byte()
      r.u32()
      r.leb()
      r.leb()
      return
    default:
      malformed(`unknown opcode 0xfb ${op}`)
  }
}

const skipConstExpr = (r: Reader, tables: number): void => {
  const grows: Array<number> = []
  decodeInstructions(r, tables, grows, true)
  if (grows.length > 0) malformed("memory.grow in a constant")
}

// ---- the rewrite ---------------------------------------------------------------------------

/**
 * The module with every `memory.grow` routed through its worker (see the header), and what
 * the sandbox must know of its memory. Throws UninstrumentableModule.
 */
export const instrument = (bytes: Uint8Array): InstrumentedModule => {
  try {
    return rewrite(bytes)
  } catch (e) {
    if (e instanceof MalformedWasm) throw new UninstrumentableModule(e.message)
    throw e
  }
}

const rewrite = (bytes: Uint8Array): InstrumentedModule => {
  const sections = sectionsOf(bytes)
  const reader = (s: Section) => readerOf(bytes, s)
  const find = (id: number) => sections.find((s) => s.id === id)

  const typeSection = find(SectionId.type)
  const types = typeSection ? readTypeSection(reader(typeSection)).length : 0

  let importedTables = 0
  let memories = 0
  let memory: Limits | undefined
  const importSection = find(SectionId.import)
  for (const imported of importSection ? readImportSection(reader(importSection)) : []) {
    if (imported.kind === ExternalKind.table) importedTables++
    else if (imported.kind === ExternalKind.memory) {
      memory = imported.limits
      memories++
    }
  }

  // Each table's limits are rewritten so that it can grow by at most MAX_TABLE_GROWTH entries.
  let definedTables = 0
  let tableEntries = 0
  const tableSection = find(SectionId.table)
  const tablesOut = new Writer(tableSection ? tableSection.end - tableSection.start + 16 : 16)
  if (tableSection) {
    const r = reader(tableSection)
    for (let n = r.u32(); n > 0; n--, definedTables++) {
      const entry = r.at
      if (r.peek() === 0x40) {
        r.byte()
        r.byte()
      }
      valueType(r)
      const limitsAt = r.at
      const limits = readLimits(r)
      if (limits.flags & 4) refuse("a 64-bit table")
      const maximum = Math.min(limits.max ?? Infinity, limits.min + MAX_TABLE_GROWTH)
      tableEntries += maximum
      tablesOut.bytes(bytes.subarray(entry, limitsAt)).byte(limits.flags | 1).leb(limits.min).leb(maximum)
      const rest = r.at
      if (bytes[entry] === 0x40) skipConstExpr(r, importedTables + definedTables)
      tablesOut.bytes(bytes.subarray(rest, r.at))
    }
  }
  const tables = importedTables + definedTables

  const memorySection = find(SectionId.memory)
  if (memorySection) {
    const r = reader(memorySection)
    for (let n = r.u32(); n > 0; n--) {
      memory = readLimits(r)
      memories++
    }
  }
  if (memories > 1) refuse("more than one memory")
  if (memory !== undefined && memory.flags & 4) refuse("a 64-bit memory")

  const exportSection = find(SectionId.export)
  for (const { name, kind, index } of exportSection ? readExportSection(reader(exportSection)) : []) {
    if (name === GROW_TABLE_EXPORT || name === START_EXPORT) refuse(`exports ${name}, a name the sandbox reserves`)
    if (kind === ExternalKind.table && index >= tables) malformed("table index out of range")
  }

  const elementSection = find(SectionId.element)
  if (elementSection) {
    const r = reader(elementSection)
    for (let n = r.u32(); n > 0; n--) {
      const flags = r.u32()
      if (flags > 7) malformed("unknown element segment")
      if (flags === 2 || flags === 6) {
        if (r.u32() >= tables) malformed("table index out of range")
      }
      if ((flags & 1) === 0) skipConstExpr(r, tables)
      const expressions = (flags & 4) !== 0
      if (flags & 3) {
        if (expressions) valueType(r)
        else r.byte()
      }
      for (let k = r.u32(); k > 0; k--) {
        if (expressions) skipConstExpr(r, tables)
        else r.u32()
      }
    }
  }

  let start: number | undefined
  const startSection = find(SectionId.start)
  if (startSection) start = reader(startSection).u32()

  // The rewritten code section: bodies with memory.grow re-encoded, the others copied.
  const growType = types
  const growTable = tables
  const growCall = new Uint8Array([0x41, 0x00, 0x11, ...encodeLeb(growType), ...encodeLeb(growTable)])
  const codeSection = find(SectionId.code)
  let code: Uint8Array | undefined
  if (codeSection) {
    const r = reader(codeSection)
    const out = new Writer(codeSection.end - codeSection.start + 1024)
    const count = r.u32()
    out.leb(count)
    const grows: Array<number> = []
    const body = new Reader(bytes, 0, 0)
    // Bodies without memory.grow are copied as they are, a run of them at a time.
    let unchangedFrom = r.at
    for (let n = count; n > 0; n--) {
      const entry = r.at
      const size = r.u32()
      const bodyStart = r.at
      r.skip(size)
      body.at = bodyStart
      body.end = bodyStart + size
      for (let locals = body.u32(); locals > 0; locals--) {
        body.u32()
        valueType(body)
      }
      grows.length = 0
      decodeInstructions(body, tables, grows)
      if (grows.length === 0) continue
      out.bytes(bytes.subarray(unchangedFrom, entry))
      unchangedFrom = r.at
      let newSize = size
      for (let i = 0; i < grows.length; i += 2) newSize += growCall.length - (grows[i + 1]! - grows[i]!)
      out.leb(newSize)
      let from = bodyStart
      for (let i = 0; i < grows.length; i += 2) {
        out.bytes(bytes.subarray(from, grows[i]!)).bytes(growCall)
        from = grows[i + 1]!
      }
      out.bytes(bytes.subarray(from, bodyStart + size))
    }
    if (!r.done) malformed("code section too long")
    out.bytes(bytes.subarray(unchangedFrom, r.at))
    code = out.result
  }

  const replaced = new Map<number, Uint8Array | undefined>()
  const growFunctionType = new Uint8Array([0x60, 0x01, 0x7f, 0x01, 0x7f])
  if (typeSection === undefined) replaced.set(SectionId.type, new Writer(8).leb(1).bytes(growFunctionType).result)
  else {
    const r = reader(typeSection)
    const entries = r.u32()
    replaced.set(SectionId.type, new Writer(typeSection.end - r.at + 16).leb(entries + 1).bytes(bytes.subarray(r.at, typeSection.end)).bytes(growFunctionType).result)
  }
  tablesOut.byte(0x70).byte(0x00).byte(0x01)
  replaced.set(SectionId.table, new Writer(tablesOut.length + 8).leb(definedTables + 1).bytes(tablesOut.result).result)
  const exportsOut = new Writer(exportSection ? exportSection.end - exportSection.start + 64 : 64)
  let exportCount = start === undefined ? 1 : 2
  let previousExports: Uint8Array = new Uint8Array(0)
  if (exportSection) {
    const r = reader(exportSection)
    exportCount += r.u32()
    previousExports = bytes.subarray(r.at, exportSection.end)
  }
  exportsOut.leb(exportCount).bytes(previousExports).name(GROW_TABLE_EXPORT).byte(0x01).leb(growTable)
  if (start !== undefined) exportsOut.name(START_EXPORT).byte(0x00).leb(start)
  replaced.set(SectionId.export, exportsOut.result)
  replaced.set(SectionId.start, undefined)
  if (code !== undefined) replaced.set(SectionId.code, code)

  // Reassemble: sections in their order, the added ones where their kind belongs.
  const out = new Writer(bytes.length + (code?.length ?? 0) - (codeSection ? codeSection.end - codeSection.start : 0) + 256)
  out.bytes(bytes.subarray(0, 8))
  const emit = (id: number, payload: Uint8Array) => out.byte(id).leb(payload.length).bytes(payload)
  const pending = new Set<number>([SectionId.type, SectionId.table, SectionId.export].filter((id) => find(id) === undefined))
  const flushBefore = (id: number) => {
    for (const missing of [...pending]) {
      if (SECTION_ORDER.indexOf(missing) < SECTION_ORDER.indexOf(id)) {
        emit(missing, replaced.get(missing)!)
        pending.delete(missing)
      }
    }
  }
  for (const s of sections) {
    if (s.id !== SectionId.custom) flushBefore(s.id)
    if (s.id !== SectionId.custom && replaced.has(s.id)) {
      const payload = replaced.get(s.id)
      if (payload !== undefined) emit(s.id, payload)
      continue
    }
    out.bytes(bytes.subarray(s.header, s.end))
  }
  for (const missing of SECTION_ORDER.filter((id) => pending.has(id))) emit(missing, replaced.get(missing)!)

  return {
    bytes: out.finished,
    memory: {
      initialPages: memory?.min ?? 0,
      maximumPages: Math.min(memory?.max ?? MAX_MEMORY_PAGES, MAX_MEMORY_PAGES),
      tableEntries,
      tableBytes: tableEntries * TABLE_ENTRY_BYTES
    }
  }
}
