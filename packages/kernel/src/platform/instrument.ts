/**
 * Guest-module instrumentation: rewrites a module's binary before it is compiled so that
 *   - every `memory.grow` of the guest goes through its worker, which asks the sentry for the
 *     pages first (the sandbox's memory account: a grow past it returns -1, as on a full
 *     machine, and the worker can be killed there even though V8 does not interrupt a wasm
 *     loop of grows);
 *   - a guest that computes without syscalls still reaches its worker regularly (preemption
 *     points): every loop header, and the entry of every function that loops or calls, counts;
 *     when a count runs out, the worker's preemption hook runs, which enters the sentry if the
 *     task is flagged (pause, SIGSTOP), as a syscall would (see `insertsFor`).
 *
 * Why those points suffice: code between two of them is straight-line code of one body, or
 * calls of leaf functions without loops, each bounded by the size of the module; unbounded
 * work needs a loop or an unbounded number of calls, which pass through non-leaf entries.
 *
 * The rewrite adds, without renumbering anything the module already has:
 *   - two function types, (i32) -> (i32) and () -> (), after the module's own types;
 *   - a mutable i32 global (the entries' count), after the module's own globals;
 *   - an i32 local (the loops' countdown), after the own locals of each function that loops or calls;
 *   - a funcref table of two slots (GROW_SLOT, PREEMPT_SLOT), after its own tables, exported as
 *     HOOK_TABLE_EXPORT; the worker fills it after instantiation;
 *   - each `memory.grow 0` becomes `i32.const GROW_SLOT; call_indirect (type grow) (table N)`:
 *     the pages asked for stay the argument, the result stays the old size or -1;
 *   - at each function entry, a stack-neutral check closed within itself; at each loop header,
 *     a check that leaves the loop for the hook, for which the loop is wrapped in three blocks
 *     (`loopOpen`), every label that crosses it moved by three;
 *   - a `start` function becomes an export (START_EXPORT) that the worker calls once the table
 *     is filled, since a start function runs during instantiation, before that;
 *   - each table of the module gets a maximum of at most MAX_TABLE_GROWTH entries past its
 *     initial size (see GuestMemory.tableEntries).
 *
 * To find every `memory.grow`, loop and call, the whole code section is decoded, instruction by
 * instruction (MVP, sign extension, saturating conversions, bulk memory, reference types, SIMD,
 * threads, exception handling, tail calls, typed function references, GC). A module this decoder
 * cannot read is refused (UninstrumentableModule), never run uninstrumented. A module that uses
 * more than one memory, or a 64-bit one, is refused too: the sandbox accounts for one 32-bit
 * memory. Sections, types, imports and exports are read (and the result encoded) with
 * wasmBinary.ts; instructions are decoded here.
 */
import { ENTRY_WEIGHT, GROW_SLOT, HOOK_TABLE_EXPORT, PREEMPT_SLOT, PREEMPTION_INTERVAL, START_EXPORT } from "./guestHooks.js"
import {
  ExternalKind,
  type Limits,
  malformed,
  MalformedWasm,
  Reader,
  readerOf,
  readExportSection,
  readFunctionSection,
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
/** call, return_call, call_ref, return_call_ref: one LEB, and the body is not a leaf. */
const CALL = 4
/** br, br_if, rethrow, br_on_null, br_on_non_null: a label, which may cross a wrapped loop. */
const LABEL = 5
/**
 * local.get/set/tee and global.get/set: an index that must name one the module declared, not
 * one the rewrite adds (an invalid module made valid by the rewrite would reach its counters).
 */
const LOCAL = 6
const GLOBAL = 7

const IMMEDIATES = (() => {
  const kinds = new Uint8Array(256).fill(SPECIAL)
  for (let op = 0x45; op <= 0xc4; op++) kinds[op] = NO_IMMEDIATE // numeric
  for (let op = 0x28; op <= 0x3e; op++) kinds[op] = MEMARG // loads and stores
  for (const op of [0x00, 0x01, 0x05, 0x0a, 0x0f, 0x19, 0x1a, 0x1b, 0xd1, 0xd3, 0xd4]) kinds[op] = NO_IMMEDIATE
  // catch, throw, constants (their LEB's value does not matter here)
  for (const op of [0x07, 0x08, 0x41, 0x42, 0xd0, 0xd2]) kinds[op] = ONE_LEB
  for (const op of [0x20, 0x21, 0x22]) kinds[op] = LOCAL
  for (const op of [0x23, 0x24]) kinds[op] = GLOBAL
  for (const op of [0x10, 0x12, 0x14, 0x15]) kinds[op] = CALL
  for (const op of [0x09, 0x0c, 0x0d, 0xd5, 0xd6]) kinds[op] = LABEL
  return kinds
})()

/** Bytes [start, end) of a body become `bytes`. */
interface Edit {
  readonly start: number
  readonly end: number
  readonly bytes: Uint8Array
}

/** The code a body's edits insert (see the header; made per function, as its counter local is). */
interface Inserts {
  /** In place of `memory.grow 0`. */
  readonly grow: Uint8Array
  /** At a wrapped loop's header: counts, and leaves for the hook (br_if 1: to the block around the loop). */
  readonly loopCheck: Uint8Array
  /** At the header of a loop with parameters, which is not wrapped: counts, and calls the hook in place. */
  readonly loopCheckInPlace: Uint8Array
  /** In place of a wrapped loop's `end`: closes the loop and the wrapping (see `wrapLoop`). */
  readonly loopEnd: Uint8Array
}

/**
 * What decoding a body finds. A loop without parameters is wrapped so that the hook is called
 * outside it (a call inside a loop costs V8 its loop optimisations: 1.6× on a sieve), which moves
 * every label that crosses it by WRAPPING_BLOCKS; `wrapped` holds the block indices of the
 * wrapped loops open at this point.
 */
interface Decoding {
  depth: number
  /** The body's locals (parameters included) and the module's globals: the indices it may name. */
  locals: number
  globals: number
  /** Whether the body calls (it is not a leaf). */
  calls: boolean
  /** Whether it has a loop. */
  loops: boolean
  readonly wrapped: Array<number>
  readonly edits: Array<Edit>
  /** The module's types (a loop's block type may name one): whether each has parameters. */
  readonly typeHasParams: ReadonlyArray<boolean>
  inserts: Inserts | undefined
}

/** The blocks `wrapLoop` puts around a loop: what every label crossing it moves by. */
const WRAPPING_BLOCKS = 3

/**
 * A loop `loop bt … end` becomes
 *   block bt'                           ;; its exit (bt' = bt: a loop without parameters)
 *     loop                              ;; re-entry after the hook
 *       block                           ;; where the check leaves to
 *         loop bt  CHECK(br_if 1)  …    ;; the loop itself, labels inside moved
 *         end  br 2                     ;; its fall-through: out with its results
 *       end  refill  call hook  br 0    ;; the hook, then the loop again, from its header
 *     end  unreachable
 *   end
 * so that the loop body holds no call. Re-entering at the header is the loop going on: the
 * check comes first in it, and a loop without parameters starts with nothing on its stack.
 */
const loopOpen = (blockType: Uint8Array, check: Uint8Array): Uint8Array =>
  new Writer(16 + 2 * blockType.length + check.length)
    .byte(0x02).bytes(blockType).byte(0x03).byte(0x40).byte(0x02).byte(0x40).byte(0x03).bytes(blockType).bytes(check)
    .finished

/** A label's new value: moved past the wrapped loops it crosses (those at block index ≥ depth - label). */
const moved = (d: Decoding, label: number, depth = d.depth): number => {
  let crossed = 0
  for (let i = d.wrapped.length - 1; i >= 0 && d.wrapped[i]! >= depth - label; i--) crossed++
  return label + crossed * WRAPPING_BLOCKS
}

/** Reads a label at `r` and, if it crosses a wrapped loop, records its new value. */
const label = (r: Reader, d: Decoding, depth = d.depth): void => {
  const start = r.at
  const value = r.u32()
  if (d.wrapped.length === 0) return
  const to = moved(d, value, depth)
  if (to !== value) d.edits.push({ start, end: r.at, bytes: new Writer(5).leb(to).finished })
}

/**
 * Decodes one function body's (or constant expression's) instructions up to `r.end`, or up to
 * the `end` closing the outermost block when `constant`, into `d`; fails on a table index at or
 * past `tables`. The common opcodes take a fast path over the bytes; the others go through
 * `instruction`.
 */
const decodeInstructions = (r: Reader, tables: number, d: Decoding, constant = false): void => {
  const bytes = r.bytes
  const end = r.end
  d.depth = 0
  let at = r.at
  while (constant || at < end) {
    const op = bytes[at++]!
    const kind = IMMEDIATES[op]
    if (kind === ONE_LEB || kind === CALL) {
      if (kind === CALL) d.calls = true
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
    } else if (kind === LABEL) {
      r.at = at
      label(r, d)
      at = r.at
    } else if (kind === LOCAL || kind === GLOBAL) {
      r.at = at
      if (r.u32() >= (kind === LOCAL ? d.locals : d.globals)) malformed(kind === LOCAL ? "local index out of range" : "global index out of range")
      at = r.at
    } else if (kind === SPECIAL) {
      r.at = at
      if (instruction(r, op, at - 1, tables, d, constant)) return
      at = r.at
    }
    if (at > end) malformed("unexpected end of section")
  }
  if (d.depth !== -1) malformed("function body ends inside a block")
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
  d: Decoding,
  constant: boolean
): boolean => {
  switch (op) {
    case 0x02: case 0x04: case 0x06:
      skipBlockType(r)
      d.depth++
      return false
    case 0x03: { // loop: its header is a preemption point
      const typeAt = r.at
      skipBlockType(r)
      d.loops = true
      const inserts = d.inserts
      if (inserts !== undefined) {
        const blockType = r.bytes.subarray(typeAt, r.at)
        // A block type names a type when it is a positive s33 (a first byte below 0x40, or one
        // that continues); otherwise it is empty (0x40) or a value type (a reference type's
        // heap type included).
        const first = blockType[0]!
        const typeIndex = first < 0x40 || first >= 0x80 ? new Reader(blockType, 0, blockType.length).u32() : undefined
        if (typeIndex !== undefined && d.typeHasParams[typeIndex] !== false) {
          d.edits.push({ start: r.at, end: r.at, bytes: inserts.loopCheckInPlace })
        } else {
          d.edits.push({ start, end: r.at, bytes: loopOpen(blockType, inserts.loopCheck) })
          d.wrapped.push(d.depth)
        }
      }
      d.depth++
      return false
    }
    case 0x1f: { // try_table: its catch labels are outside it
      skipBlockType(r)
      for (let n = r.u32(); n > 0; n--) {
        const kind = r.byte()
        if (kind > 3) malformed("unknown catch clause")
        if (kind < 2) r.u32()
        label(r, d)
      }
      d.depth++
      return false
    }
    case 0x0b:
      if (constant && d.depth === 0) return true
      d.depth--
      if (d.wrapped.length > 0 && d.wrapped[d.wrapped.length - 1] === d.depth) {
        d.wrapped.pop()
        d.edits.push({ start, end: r.at, bytes: d.inserts!.loopEnd })
      }
      return false
    case 0x18: // delegate ends a try; its label is outside it
      d.depth--
      label(r, d)
      return false
    case 0x0e: // br_table
      for (let n = r.u32(); n >= 0; n--) label(r, d)
      return false
    case 0x11: case 0x13: // call_indirect, return_call_indirect
      r.u32()
      tableIndex(r, tables)
      d.calls = true
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
      d.edits.push({ start, end: r.at, bytes: d.inserts?.grow ?? new Uint8Array(0) })
      return false
    case 0x43:
      r.skip(4)
      return false
    case 0x44:
      r.skip(8)
      return false
    case 0xfb: {
      const sub = r.u32()
      if (sub === 24 || sub === 25) { // br_on_cast(_fail) flags label from to
        r.byte()
        label(r, d)
        r.leb()
        r.leb()
      } else skipGc(r, sub)
      return false
    }
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

const skipGc = (r: Reader, op: number): void => {
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
    default:
      malformed(`unknown opcode 0xfb ${op}`)
  }
}

const skipConstExpr = (r: Reader, tables: number, globals: number): void => {
  const d: Decoding = { depth: 0, locals: 0, globals: globals, calls: false, loops: false, wrapped: [], edits: [], typeHasParams: [], inserts: undefined }
  decodeInstructions(r, tables, d, true)
  if (d.edits.length > 0 || d.calls || d.loops) malformed("a constant expression with a call, loop or memory.grow")
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

/**
 * The code a function's edits insert (see the header). At the entry, the module's global counts
 * ENTRY_WEIGHT up (one memory load and store per call), and the hook is called in place when it
 * reaches a multiple of PREEMPTION_INTERVAL (a power of two); then the function's own counter
 * (a local added to it) is filled with PREEMPTION_INTERVAL. At a loop header that counter alone
 * counts down (a register in V8's compiled code: a decrement and a branch), and at zero the loop
 * is left for the hook, which is called outside it (`loopOpen`), the counter filled again.
 */
const insertsFor = (global: number, counter: number, growType: number, preemptType: number, hookTable: number) => {
  const callHook = (w: Writer) => w.byte(0x41).i32(PREEMPT_SLOT).byte(0x11).leb(preemptType).leb(hookTable) // call_indirect
  // i32.const interval; local.set
  const refill = (w: Writer) => w.byte(0x41).i32(PREEMPTION_INTERVAL).byte(0x21).leb(counter)
  // local.get; i32.const 1; i32.sub; local.tee; i32.eqz
  const countDown = (w: Writer) => w.byte(0x20).leb(counter).byte(0x41).byte(0x01).byte(0x6b).byte(0x22).leb(counter).byte(0x45)
  return {
    // global.get; i32.const weight; i32.add; local.tee; global.set; local.get; i32.const mask; i32.and; i32.eqz;
    // if hook end; refill
    entry: refill(callHook(new Writer(48).byte(0x23).leb(global).byte(0x41).i32(ENTRY_WEIGHT).byte(0x6a).byte(0x22).leb(counter).byte(0x24).leb(global)
      .byte(0x20).leb(counter).byte(0x41).i32(PREEMPTION_INTERVAL - 1).byte(0x71).byte(0x45).byte(0x04).byte(0x40)).byte(0x0b)).finished,
    inserts: {
      grow: new Writer(16).byte(0x41).i32(GROW_SLOT).byte(0x11).leb(growType).leb(hookTable).finished,
      loopCheck: countDown(new Writer(32)).byte(0x0d).byte(0x01).finished, // br_if 1
      // if refill hook end
      loopCheckInPlace: callHook(refill(countDown(new Writer(32)).byte(0x04).byte(0x40))).byte(0x0b).finished,
      // end; br 2; end; refill; hook; br 0; end; unreachable; end
      loopEnd: callHook(refill(new Writer(32).byte(0x0b).byte(0x0c).byte(0x02).byte(0x0b))).byte(0x0c).byte(0x00).byte(0x0b).byte(0x00).byte(0x0b).finished
    } satisfies Inserts
  }
}

/** A vector section's payload with `added` (`count` more entries) after its own entries. */
const appended = (bytes: Uint8Array, section: Section | undefined, count: number, added: Uint8Array): Uint8Array => {
  if (section === undefined) return new Writer(added.length + 8).leb(count).bytes(added).result
  const r = readerOf(bytes, section)
  const entries = r.u32()
  return new Writer(section.end - r.at + added.length + 8).leb(entries + count).bytes(bytes.subarray(r.at, section.end)).bytes(added).result
}

const rewrite = (bytes: Uint8Array): InstrumentedModule => {
  const sections = sectionsOf(bytes)
  const reader = (s: Section) => readerOf(bytes, s)
  const find = (id: number) => sections.find((s) => s.id === id)

  const typeSection = find(SectionId.type)
  const types = typeSection ? readTypeSection(reader(typeSection)).length : 0

  let importedTables = 0
  let importedGlobals = 0
  let memories = 0
  let memory: Limits | undefined
  const importSection = find(SectionId.import)
  for (const imported of importSection ? readImportSection(reader(importSection)) : []) {
    if (imported.kind === ExternalKind.table) importedTables++
    else if (imported.kind === ExternalKind.global) importedGlobals++
    else if (imported.kind === ExternalKind.memory) {
      memory = imported.limits
      memories++
    }
  }

  const globalSection = find(SectionId.global)
  const globals = importedGlobals + (globalSection ? reader(globalSection).u32() : 0)

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
      if (bytes[entry] === 0x40) skipConstExpr(r, importedTables + definedTables, globals)
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
    if (name === HOOK_TABLE_EXPORT || name === START_EXPORT) refuse(`exports ${name}, a name the sandbox reserves`)
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
      if ((flags & 1) === 0) skipConstExpr(r, tables, globals)
      const expressions = (flags & 4) !== 0
      if (flags & 3) {
        if (expressions) valueType(r)
        else r.byte()
      }
      for (let k = r.u32(); k > 0; k--) {
        if (expressions) skipConstExpr(r, tables, globals)
        else r.u32()
      }
    }
  }

  let start: number | undefined
  const startSection = find(SectionId.start)
  if (startSection) start = reader(startSection).u32()

  // What the rewrite adds after what the module has (see the header).
  const growType = types
  const preemptType = types + 1
  const hookTable = tables
  const counterGlobal = globals
  // Each defined function's parameter count: the local the rewrite adds comes after its own.
  const functionSection = find(SectionId.function)
  const functionTypes = functionSection ? readFunctionSection(reader(functionSection)) : []
  const typeList = typeSection ? readTypeSection(reader(typeSection)) : []
  const typeHasParams = typeList.map((type) => type === undefined || type.params.length > 0)
  const paramsOf = (defined: number): number => {
    const type = typeList[functionTypes[defined] ?? -1]
    return type === undefined ? malformed("function of an unknown type") : type.params.length
  }

  // The rewritten code section: bodies with a preemption point or a memory.grow re-encoded,
  // the others (leaves without loops) copied.
  const codeSection = find(SectionId.code)
  let code: Uint8Array | undefined
  if (codeSection) {
    const r = reader(codeSection)
    const out = new Writer(codeSection.end - codeSection.start + 1024)
    const count = r.u32()
    out.leb(count)
    const d: Decoding = { depth: 0, locals: 0, globals: counterGlobal, calls: false, loops: false, wrapped: [], edits: [], typeHasParams, inserts: undefined }
    const body = new Reader(bytes, 0, 0)
    // Bodies without edits are copied as they are, a run of them at a time.
    let unchangedFrom = r.at
    if (count !== functionTypes.length) malformed("function and code sections disagree")
    for (let defined = 0; defined < count; defined++) {
      const entry = r.at
      const size = r.u32()
      const bodyStart = r.at
      r.skip(size)
      body.at = bodyStart
      body.end = bodyStart + size
      const groups = body.u32()
      const groupsAt = body.at
      let locals = paramsOf(defined)
      for (let k = groups; k > 0; k--) {
        locals += body.u32()
        valueType(body)
      }
      const instructions = body.at
      const { entry: entryCheck, inserts } = insertsFor(counterGlobal, locals, growType, preemptType, hookTable)
      d.edits.length = 0
      d.calls = false
      d.loops = false
      d.locals = locals
      d.inserts = inserts
      decodeInstructions(body, tables, d)
      const edits = d.edits
      // A body that loops or calls is entered at a preemption point, and counts in a local of its own.
      const preempted = d.calls || d.loops
      if (!preempted && edits.length === 0) continue
      out.bytes(bytes.subarray(unchangedFrom, entry))
      unchangedFrom = r.at
      // The locals: the module's, then (when preempted) the counter, one i32.
      const header = new Writer(16).leb(preempted ? groups + 1 : groups).bytes(bytes.subarray(groupsAt, instructions))
      if (preempted) header.byte(0x01).byte(0x7f).bytes(entryCheck)
      let newSize = header.length + (bodyStart + size - instructions)
      for (const edit of edits) newSize += edit.bytes.length - (edit.end - edit.start)
      out.leb(newSize).bytes(header.result)
      let from = instructions
      for (const edit of edits) {
        out.bytes(bytes.subarray(from, edit.start)).bytes(edit.bytes)
        from = edit.end
      }
      out.bytes(bytes.subarray(from, bodyStart + size))
    }
    if (!r.done) malformed("code section too long")
    out.bytes(bytes.subarray(unchangedFrom, r.at))
    code = out.result
  }

  const replaced = new Map<number, Uint8Array | undefined>()
  // (i32) -> (i32), () -> ()
  const hookTypes = new Uint8Array([0x60, 0x01, 0x7f, 0x01, 0x7f, 0x60, 0x00, 0x00])
  replaced.set(SectionId.type, appended(bytes, typeSection, 2, hookTypes))
  // (mut i32) from 0
  replaced.set(SectionId.global, appended(bytes, globalSection, 1, new Uint8Array([0x7f, 0x01, 0x41, 0x00, 0x0b])))
  tablesOut.byte(0x70).byte(0x00).byte(0x02)
  replaced.set(SectionId.table, new Writer(tablesOut.length + 8).leb(definedTables + 1).bytes(tablesOut.result).result)
  const exportsOut = new Writer(exportSection ? exportSection.end - exportSection.start + 64 : 64)
  let exportCount = start === undefined ? 1 : 2
  let previousExports: Uint8Array = new Uint8Array(0)
  if (exportSection) {
    const r = reader(exportSection)
    exportCount += r.u32()
    previousExports = bytes.subarray(r.at, exportSection.end)
  }
  exportsOut.leb(exportCount).bytes(previousExports).name(HOOK_TABLE_EXPORT).byte(0x01).leb(hookTable)
  if (start !== undefined) exportsOut.name(START_EXPORT).byte(0x00).leb(start)
  replaced.set(SectionId.export, exportsOut.result)
  replaced.set(SectionId.start, undefined)
  if (code !== undefined) replaced.set(SectionId.code, code)

  // Reassemble: sections in their order, the added ones where their kind belongs.
  const out = new Writer(bytes.length + (code?.length ?? 0) - (codeSection ? codeSection.end - codeSection.start : 0) + 256)
  out.bytes(bytes.subarray(0, 8))
  const emit = (id: number, payload: Uint8Array) => out.byte(id).leb(payload.length).bytes(payload)
  const pending = new Set<number>([SectionId.type, SectionId.table, SectionId.global, SectionId.export].filter((id) => find(id) === undefined))
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
