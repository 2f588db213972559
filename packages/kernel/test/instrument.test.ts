/**
 * Guest-module instrumentation (platform/instrument.ts): every memory.grow of a module goes to
 * the hook its worker puts in the added table, every loop header and every entry of a function
 * that calls is a preemption point, nothing else of the module changes, a start function waits
 * for the hooks, tables are bounded, and what cannot be accounted for is refused. wabt's decoder
 * is the reference for "every memory.grow" and "every loop" (the C fixtures, a module using
 * every instruction family whose immediates can hold memory.grow's bytes, random bodies).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, FastCheck } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { ENTRY_WEIGHT, GROW_SLOT, guestHooks, HOOK_TABLE_EXPORT, PREEMPT_SLOT, PREEMPTION_INTERVAL, START_EXPORT } from "../src/platform/guestHooks.js"
import { instrument, MAX_MEMORY_PAGES, MAX_TABLE_GROWTH, TABLE_ENTRY_BYTES, UninstrumentableModule } from "../src/platform/instrument.js"

const features = {
  simd: true,
  threads: true,
  exceptions: true,
  tail_call: true,
  reference_types: true,
  bulk_memory: true,
  multi_value: true,
  sat_float_to_int: true,
  sign_extension: true,
  memory64: true
}

type Wabt = Awaited<ReturnType<typeof import("wabt")>>
let wabt: Promise<Wabt> | undefined
const loadWabt = () => (wabt ??= import("wabt").then((m) => m.default()))

const assemble = (text: string, validate = true) =>
  Effect.promise(async () => {
    const module = (await loadWabt()).parseWat("test.wat", text, features)
    try {
      if (validate) module.validate()
      return new Uint8Array(module.toBinary({}).buffer)
    } finally {
      module.destroy()
    }
  })

/** The module's text as wabt decodes it. */
const disassemble = (bytes: Uint8Array) =>
  Effect.promise(async () => {
    const module = (await loadWabt()).readWasm(bytes, { readDebugNames: false, ...features })
    try {
      return module.toText({})
    } finally {
      module.destroy()
    }
  })

const occurrences = (text: string, what: RegExp) => text.split("\n").filter((line) => what.test(line)).length
/** A memory.grow instruction in wabt's text (not an export that names it). */
const GROW = /^\s*memory\.grow\b/
const CALL_INDIRECT = /^\s*call_indirect\b/
const LOOP = /^\s*loop\b/
const CALL = /^\s*(call|call_indirect|return_call|return_call_indirect|call_ref|return_call_ref)\b/

/** The function types a module declares (the hooks' types come right after them). */
const typesOf = (text: string) => occurrences(text, /^\s*\(type \(;\d+;\) \(func/)
/** Calls through the hook table with the given type (wabt: `call_indirect <table> (type <n>)`). */
const hookCalls = (text: string, type: number) => occurrences(text, new RegExp(`^\\s*call_indirect (\\d+ )?\\(type ${type}\\)`))
/** Functions of the module's text that loop or call (each gets a preemption point at its entry). */
const callers = (text: string) =>
  text.split(/^\s*\(func /m).slice(1).filter((body) => body.split("\n").some((line) => CALL.test(line) || LOOP.test(line))).length

const cFixtures = fileURLToPath(new URL("../../../test/fixtures/c/", import.meta.url))

/**
 * Instantiates an instrumented module with its hooks in place; counts the grow hook's calls and
 * the preemption hook's (which runs `onPreempt`, if given, as the worker's checkpoint would).
 */
const instantiate = (bytes: Uint8Array, onPreempt: () => void = () => {}) => {
  const hook = { calls: 0, preemptions: 0, memory: undefined as WebAssembly.Memory | undefined }
  const grow = (pages: number) => {
    hook.calls++
    try {
      return hook.memory!.grow(pages >>> 0)
    } catch {
      return -1
    }
  }
  const preempt = () => {
    hook.preemptions++
    onPreempt()
  }
  const hooks = guestHooks(grow, preempt)
  const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>), {})
  hook.memory = instance.exports["memory"] as WebAssembly.Memory
  // As installHooks does, but without running a start function: a test calls it itself.
  const table = instance.exports[HOOK_TABLE_EXPORT] as WebAssembly.Table
  table.set(GROW_SLOT, hooks.grow)
  table.set(PREEMPT_SLOT, hooks.preempt)
  return { instance, hook }
}

/**
 * Every instruction family whose immediates can hold the bytes 0x40 0x00 (memory.grow 0): a
 * block type 0x40 before `unreachable`, i32.const -64, local index 64, a memarg offset of 64,
 * f32/f64/v128 constants, lanes; plus memory.grow reached directly, through the module's own
 * table, in a try, and in a tail call.
 */
const everyFamily = `
(module
  (type $i2i (func (param i32) (result i32)))
  (memory (export "memory") 1 100)
  (table $own 2 funcref)
  (elem (table $own) (i32.const 0) func $double $grow)
  (global $g (mut i32) (i32.const 64))
  (tag $oops (param i32))
  (data (i32.const 0) "\\40\\00\\40\\00")
  (func $double (type $i2i) (i32.mul (local.get 0) (i32.const 2)))
  (func $grow (type $i2i) (memory.grow (local.get 0)))
  (func (export "immediates") (result i32)
    (local ${"i32 ".repeat(65)})
    (local.set 64 (i32.const 7))
    (if (i32.eqz (local.get 64)) (then
      (block (unreachable))
      (block (br 0) (i32.const -64) (unreachable))
      (block (br 0) (f64.const 2.0) (unreachable))
      (block (br 0) (local.get 64) (unreachable))))
    (i32.add
      (i32.add
        (i32.reinterpret_f32 (f32.const 0x1p-128))
        (i32x4.extract_lane 1 (v128.const i32x4 0 0x00400000 0 0)))
      (i32.add
        (i32.add (i32.load offset=64 (i32.const 0)) (i32.load8_u offset=1 (i32.const 0)))
        (i32.add
          (i32.atomic.rmw.add offset=64 (i32.const 0) (i32.const 64))
          (select (result i32) (local.get 64) (global.get $g) (i32.const 0))))))
  (func (export "grow_directly") (result i32)
    (i32.add (memory.grow (i32.const 1)) (memory.grow (i32.const 2))))
  (func (export "grow_through_own_table") (result i32)
    (i32.add
      (call_indirect $own (type $i2i) (i32.const 21) (i32.const 0))
      (call_indirect $own (type $i2i) (i32.const 1) (i32.const 1))))
  (func (export "grow_in_try") (result i32)
    (try (result i32)
      (do (throw $oops (memory.grow (i32.const 1))))
      (catch $oops)))
  (func (export "grow_in_tail_call") (result i32)
    (return_call $grow (i32.const 1)))
  (func (export "grow_past_maximum") (result i32)
    (memory.grow (i32.const 1000)))
  (func (export "_start")))
`

describe("instrument", () => {
  it.effect("routes every memory.grow of every C fixture through the hook and checks at every loop and caller's entry, as wabt decodes them; the result compiles", () =>
    Effect.gen(function*() {
      const names = Fs.readdirSync(cFixtures).filter((f) => f.endsWith(".wasm"))
      assert.isAbove(names.length, 20)
      let grows = 0
      for (const name of names) {
        const bytes = new Uint8Array(Fs.readFileSync(Path.join(cFixtures, name)))
        const before = yield* disassemble(bytes)
        const { bytes: after, memory } = instrument(bytes)
        const text = yield* disassemble(after)
        grows += occurrences(before, GROW)
        assert.strictEqual(occurrences(text, GROW), 0, name)
        const types = typesOf(before)
        assert.strictEqual(hookCalls(text, types), occurrences(before, GROW), name)
        assert.strictEqual(hookCalls(text, types + 1), occurrences(before, LOOP) + callers(before), name)
        assert.strictEqual(
          occurrences(text, CALL_INDIRECT),
          occurrences(before, CALL_INDIRECT) + occurrences(before, GROW) + occurrences(before, LOOP) + callers(before),
          name
        )
        assert.isTrue(WebAssembly.validate(after as Uint8Array<ArrayBuffer>), name)
        assert.isAbove(memory.initialPages, 0, name)
        assert.strictEqual(memory.maximumPages, MAX_MEMORY_PAGES, name)
      }
      assert.isAbove(grows, names.length / 2, "the fixtures that malloc grow their memory")
    }))

  it.effect("changes nothing but memory.grow: immediates holding its bytes stay, and each grow reached calls the hook once", () =>
    Effect.gen(function*() {
      const original = yield* assemble(everyFamily)
      const { bytes, memory } = instrument(original)
      assert.deepStrictEqual(memory, {
        initialPages: 1,
        maximumPages: 100,
        tableEntries: 2 + MAX_TABLE_GROWTH,
        tableBytes: (2 + MAX_TABLE_GROWTH) * TABLE_ENTRY_BYTES
      })
      const text = yield* disassemble(bytes)
      assert.strictEqual(occurrences(text, GROW), 0)

      const plain = new WebAssembly.Instance(new WebAssembly.Module(original), {}).exports as Record<string, () => number>
      const { hook, instance } = instantiate(bytes)
      const routed = instance.exports as Record<string, () => number>
      const calls: Array<[string, number]> = [
        ["immediates", 0],
        ["grow_directly", 2],
        ["grow_through_own_table", 1],
        ["grow_in_try", 1],
        ["grow_in_tail_call", 1],
        ["grow_past_maximum", 1]
      ]
      for (const [name, grows] of calls) {
        const before = hook.calls
        assert.strictEqual(routed[name]!(), plain[name]!(), name)
        assert.strictEqual(hook.calls - before, grows, name)
      }
      assert.strictEqual(plain["grow_past_maximum"]!(), -1)
      assert.strictEqual(
        (instance.exports["memory"] as WebAssembly.Memory).buffer.byteLength,
        (plain as unknown as { memory: WebAssembly.Memory }).memory.buffer.byteLength
      )
    }))

  // Random function bodies mixing memory.grow (live, dead, nested) with every immediate that
  // can hold its bytes: wabt finds no memory.grow left and one call per grow, and the module
  // computes the same memory as the original.
  const statement: FastCheck.Arbitrary<string> = FastCheck.letrec<{ statement: string; block: string }>((tie) => ({
    statement: FastCheck.oneof(
      { depthSize: "small", withCrossShrink: true },
      FastCheck.integer({ min: 0, max: 2 }).map((k) => `(drop (memory.grow (i32.const ${k})))`),
      FastCheck.integer().map((n) => `(drop (i32.const ${n}))`),
      FastCheck.bigInt({ min: -(1n << 63n), max: (1n << 63n) - 1n }).map((n) => `(drop (i64.const ${n}))`),
      FastCheck.constantFrom("2.0", "0x1p-128", "-0x1p-149", "1.5", "64").map((x) => `(drop (f32.const ${x})) (drop (f64.const ${x}))`),
      FastCheck.tuple(FastCheck.integer({ min: 0, max: 70 }), FastCheck.integer()).map(([l, n]) => `(local.set ${l} (i32.const ${n}))`),
      FastCheck.tuple(FastCheck.constantFrom(0, 1, 63, 64, 65, 128, 16384), FastCheck.integer({ min: 0, max: 70 }))
        .map(([o, l]) => `(i32.store offset=${o} (i32.const 0) (local.get ${l}))`),
      FastCheck.constantFrom(0, 64, 0x40, 1024).map((o) => `(drop (i32.load8_u offset=${o} (i32.const 0)))`),
      FastCheck.tuple(FastCheck.integer({ min: 0, max: 3 }), FastCheck.array(FastCheck.integer(), { minLength: 4, maxLength: 4 }))
        .map(([lane, v]) => `(drop (i32x4.extract_lane ${lane} (v128.const i32x4 ${v.join(" ")})))`),
      FastCheck.integer({ min: 0, max: 3 }).map((n) => `(block (block (br_table 0 1 0 (i32.const ${n}))))`),
      FastCheck.integer({ min: 0, max: 70 }).map((l) => `(block (br 0) (drop (local.get ${l})) (drop (memory.grow (i32.const 1))) (unreachable))`),
      tie("block")
    ),
    block: FastCheck.tuple(
      FastCheck.constantFrom("block", "loop", "if"),
      FastCheck.integer({ min: 0, max: 1 }),
      FastCheck.array(tie("statement"), { maxLength: 4 }),
      FastCheck.array(tie("statement"), { maxLength: 4 })
    ).map(([kind, cond, body, other]) =>
      kind === "if" ? `(if (i32.const ${cond}) (then ${body.join(" ")}) (else ${other.join(" ")}))` : `(${kind} ${body.join(" ")})`
    )
  })).statement

  it.effect.prop(
    "random bodies: no memory.grow is left, each became one call, and the module computes the same memory",
    [FastCheck.array(statement, { minLength: 1, maxLength: 40 })],
    ([statements]) =>
      Effect.gen(function*() {
        const original = yield* assemble(`
          (module
            (memory (export "memory") 1 1000)
            (func (export "_start") (local ${"i32 ".repeat(71)})
              ${statements.join("\n              ")}))`)
        const before = yield* disassemble(original)
        const { bytes } = instrument(original)
        const after = yield* disassemble(bytes)
        assert.strictEqual(occurrences(after, GROW), 0)
        assert.strictEqual(hookCalls(after, typesOf(before)), occurrences(before, GROW))
        assert.strictEqual(hookCalls(after, typesOf(before) + 1), occurrences(before, LOOP) + callers(before))
        const plain = new WebAssembly.Instance(new WebAssembly.Module(original as Uint8Array<ArrayBuffer>), {})
        ;(plain.exports["_start"] as () => void)()
        const { instance } = instantiate(bytes)
        ;(instance.exports["_start"] as () => void)()
        const memoryOf = (i: WebAssembly.Instance) => new Uint8Array((i.exports["memory"] as WebAssembly.Memory).buffer)
        assert.strictEqual(memoryOf(instance).length, memoryOf(plain).length)
        assert.deepStrictEqual(memoryOf(instance).subarray(0, 20000), memoryOf(plain).subarray(0, 20000))
      }),
    { fastCheck: { numRuns: 100 } }
  )

  it.effect("a guest that computes without syscalls calls the preemption hook: every PREEMPTION_INTERVAL loop passes, in recursion, in tail calls", () =>
    Effect.gen(function*() {
      const bytes = yield* assemble(`
        (module
          (memory (export "memory") 1)
          (global $n (mut i32) (i32.const 0))
          (func $leaf (result i32) (i32.const 1))
          (func (export "count") (param $k i32) (result i32) (local $i i32)
            (loop $again
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br_if $again (i32.lt_u (local.get $i) (local.get $k))))
            (local.get $i))
          (func $fib (export "fib") (param $n i32) (result i32)
            (if (result i32) (i32.lt_u (local.get $n) (i32.const 2))
              (then (local.get $n))
              (else (i32.add (call $fib (i32.sub (local.get $n) (i32.const 1))) (call $fib (i32.sub (local.get $n) (i32.const 2)))))))
          (func $down (export "down") (param $n i32) (result i32)
            (if (result i32) (i32.eqz (local.get $n))
              (then (call $leaf))
              (else (return_call $down (i32.sub (local.get $n) (i32.const 1))))))
          (func (export "leaves") (result i32) (i32.add (call $leaf) (call $leaf)))
          (func (export "_start")))`)
      const { hook, instance } = instantiate(instrument(bytes).bytes)
      const exports = instance.exports as Record<string, (n?: number) => number>
      // A loop counts down from PREEMPTION_INTERVAL, filled at its function's entry: the hook
      // runs at every INTERVAL-th pass. Entries count ENTRY_WEIGHT up in a global shared by the
      // module: the hook runs when it reaches a multiple of INTERVAL.
      assert.strictEqual(exports["count"]!(PREEMPTION_INTERVAL - 1), PREEMPTION_INTERVAL - 1)
      assert.strictEqual(hook.preemptions, 0)
      assert.strictEqual(exports["count"]!(PREEMPTION_INTERVAL), PREEMPTION_INTERVAL)
      assert.strictEqual(hook.preemptions, 1)
      assert.strictEqual(exports["count"]!(2 * PREEMPTION_INTERVAL + 1), 2 * PREEMPTION_INTERVAL + 1)
      assert.strictEqual(hook.preemptions, 3)
      // fib(25): 242785 entries of a function that calls, no loop; `leaves` calls only leaves.
      assert.strictEqual(exports["fib"]!(25), 75025)
      assert.strictEqual(hook.preemptions, 3 + Math.floor(((3 + 242785) * ENTRY_WEIGHT) / PREEMPTION_INTERVAL))
      assert.strictEqual(exports["leaves"]!(), 2)
      const tail = hook.preemptions
      assert.strictEqual(exports["down"]!(5 * PREEMPTION_INTERVAL), 1)
      assert.isAtLeast(hook.preemptions - tail, 4, "a tail-recursive loop passes a point at each entry")
    }))

  it.effect("a loop left for the hook goes on where it was: every label that crosses a loop is moved, loops with results and parameters compute the same", () =>
    Effect.gen(function*() {
      // Each export runs its loops past PREEMPTION_INTERVAL passes, so that the hook is reached
      // and each loop is re-entered, and leaves them by a different kind of label (wabt has
      // no typed function references: br_on_null and br_on_cast are moved by the same code as
      // br, `label`).
      const bytes = yield* assemble(`
        (module
          (memory (export "memory") 1)
          (tag $e (param i32))
          (func (export "br_if_out") (param $n i32) (result i32) (local $i i32) (local $s i32)
            (block $done
              (loop $l
                (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
                (local.set $s (i32.add (local.get $s) (local.get $i)))
                (local.set $i (i32.add (local.get $i) (i32.const 1)))
                (br $l)))
            (local.get $s))
          (func (export "br_table_nested") (param $n i32) (result i32) (local $i i32) (local $j i32) (local $s i32)
            (block $out
              (loop $outer
                (local.set $j (i32.const 0))
                (loop $inner
                  (local.set $s (i32.add (local.get $s) (i32.mul (local.get $i) (local.get $j))))
                  (local.set $j (i32.add (local.get $j) (i32.const 1)))
                  (if (i32.ge_u (local.get $j) (i32.const 1000)) (then (local.set $i (i32.add (local.get $i) (i32.const 1)))))
                  (br_table $inner $outer $out
                    (i32.add (i32.ge_u (local.get $j) (i32.const 1000)) (i32.ge_u (local.get $i) (local.get $n)))))))
            (local.get $s))
          (func (export "return_from_loop") (param $n i32) (result i32) (local $i i32)
            (loop $l
              (local.set $i (i32.add (local.get $i) (i32.const 3)))
              (if (i32.ge_u (local.get $i) (local.get $n)) (then (return (local.get $i))))
              (br $l))
            (i32.const -1))
          (func (export "loop_result") (param $n i32) (result i32) (local $i i32)
            (loop $l (result i32)
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br_if $l (i32.lt_u (local.get $i) (local.get $n)))
              (i32.mul (local.get $i) (i32.const 2))))
          (func (export "loop_ref_result") (param $n i32) (result i32) (local $i i32)
            (drop (loop $l (result externref)
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br_if $l (i32.lt_u (local.get $i) (local.get $n)))
              (ref.null extern)))
            (local.get $i))
          (func (export "loop_params") (param $n i32) (result i32) (local $x i32)
            (i32.const 0)
            (loop $l (param i32) (result i32)
              (i32.add (i32.const 1))
              (local.tee $x)
              (br_if $l (i32.lt_u (local.get $x) (local.get $n)))))
          (func (export "delegate_out") (param $n i32) (result i32) (local $i i32)
            (try $t (result i32)
              (do
                (loop $l
                  (local.set $i (i32.add (local.get $i) (i32.const 1)))
                  (try (do (if (i32.ge_u (local.get $i) (local.get $n)) (then (throw $e (local.get $i))))) (delegate $t))
                  (br $l))
                (i32.const -1))
              (catch $e)))
          (func (export "rethrow_out") (param $n i32) (result i32) (local $i i32)
            (try (result i32)
              (do
                (try
                  (do (throw $e (i32.const 7)))
                  (catch $e
                    (drop)
                    (loop $l
                      (local.set $i (i32.add (local.get $i) (i32.const 1)))
                      (br_if $l (i32.lt_u (local.get $i) (local.get $n)))
                      (rethrow 1))))
                (i32.const -1))
              (catch $e (i32.add (local.get $i)))))
          (func (export "_start")))`)
      const plain = new WebAssembly.Instance(new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>), {}).exports as Record<string, (n: number) => number>
      const { hook, instance } = instantiate(instrument(bytes).bytes)
      const routed = instance.exports as Record<string, (n: number) => number>
      const n = 3 * PREEMPTION_INTERVAL + 7
      for (const name of ["br_if_out", "br_table_nested", "return_from_loop", "loop_result", "loop_ref_result", "loop_params", "delegate_out", "rethrow_out"]) {
        const before = hook.preemptions
        const arg = name === "br_table_nested" ? 200 : n
        assert.strictEqual(routed[name]!(arg), plain[name]!(arg), name)
        assert.isAtLeast(hook.preemptions - before, 1, `${name} reached the hook`)
      }
      const text = yield* disassemble(instrument(bytes).bytes)
      assert.strictEqual(occurrences(text, LOOP), occurrences(yield* disassemble(bytes), LOOP) * 2 - 1, "each loop wrapped, but the one with parameters")
    }))

  it.effect("the preemption hook can end a guest that never returns: what it throws unwinds the guest, as the worker's Killed does", () =>
    Effect.gen(function*() {
      const bytes = yield* assemble(`
        (module
          (memory (export "memory") 1)
          (func (export "_start") (local $x i32)
            (loop $forever
              (local.set $x (i32.add (i32.mul (local.get $x) (i32.const 1103515245)) (i32.const 12345)))
              (br $forever))))`)
      class Stop extends Error {}
      let checks = 0
      const { hook, instance } = instantiate(instrument(bytes).bytes, () => {
        if (++checks === 100) throw new Stop()
      })
      assert.throws(() => (instance.exports["_start"] as () => void)(), Stop)
      assert.strictEqual(hook.preemptions, 100)
    }))

  it.effect("a start function runs when the worker calls it, after the hook is in place, not during instantiation", () =>
    Effect.gen(function*() {
      const bytes = yield* assemble(`
        (module
          (memory (export "memory") 1)
          (func $init (i32.store (i32.const 0) (memory.grow (i32.const 1))))
          (start $init)
          (func (export "_start")))`)
      const { bytes: routed } = instrument(bytes)
      const { hook, instance } = instantiate(routed)
      const memory = instance.exports["memory"] as WebAssembly.Memory
      assert.strictEqual(new Int32Array(memory.buffer)[0], 0)
      assert.strictEqual(hook.calls, 0)
      ;(instance.exports[START_EXPORT] as () => void)()
      assert.strictEqual(hook.calls, 1)
      assert.strictEqual(new Int32Array(memory.buffer)[0], 1, "the old size, as memory.grow returns")
    }))

  it.effect("a table grows by at most MAX_TABLE_GROWTH past its initial size; its entries are counted", () =>
    Effect.gen(function*() {
      const bytes = yield* assemble(`
        (module
          (memory (export "memory") 1)
          (table $small 3 5 funcref)
          (table $open 10 externref)
          (func (export "grow_open") (param i32) (result i32) (table.grow $open (ref.null extern) (local.get 0)))
          (func (export "grow_small") (param i32) (result i32) (table.grow $small (ref.null func) (local.get 0)))
          (func (export "_start")))`)
      const { bytes: routed, memory } = instrument(bytes)
      assert.strictEqual(memory.tableEntries, 5 + 10 + MAX_TABLE_GROWTH)
      const plain = new WebAssembly.Instance(new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>), {}).exports as Record<string, (n: number) => number>
      const exports = instantiate(routed).instance.exports as Record<string, (n: number) => number>
      assert.strictEqual(plain["grow_open"]!(MAX_TABLE_GROWTH + 1), 10, "uninstrumented, the table grows past the bound")
      assert.strictEqual(exports["grow_open"]!(MAX_TABLE_GROWTH + 1), -1)
      assert.strictEqual(exports["grow_open"]!(MAX_TABLE_GROWTH), 10)
      assert.strictEqual(exports["grow_open"]!(1), -1)
      assert.strictEqual(exports["grow_small"]!(2), 3, "a declared maximum below the bound stays")
      assert.strictEqual(exports["grow_small"]!(1), -1)
    }))

  it.effect("refuses what the sandbox cannot account for: a 64-bit memory, two memories, the names it reserves, a reference to the table, local or global it adds", () =>
    Effect.gen(function*() {
      const refused: Array<[string, Uint8Array, RegExp]> = [
        ["64-bit memory", yield* assemble(`(module (memory i64 1) (func (export "_start")))`), /64-bit memory/],
        ["reserved name", yield* assemble(`(module (memory (export "memory") 1) (func (export "${START_EXPORT}")))`), /reserves/],
        [
          "the added table",
          yield* assemble(
            `(module (type $t (func)) (memory 1) (table 1 funcref) (func (export "_start") (call_indirect 1 (type $t) (i32.const 0))))`,
            false
          ),
          /table index/
        ],
        // Invalid as given, but naming the local or global the rewrite adds would make them valid
        // and hand the guest its preemption counters.
        [
          "the added local",
          yield* assemble(`(module (memory 1) (func (export "_start") (param i32) (local i32) (loop (local.set 2 (i32.const 7)))))`, false),
          /local index/
        ],
        [
          "the added global",
          yield* assemble(`(module (memory 1) (global (mut i32) (i32.const 0)) (func (export "_start") (loop (global.set 1 (i32.const 7)))))`, false),
          /global index/
        ],
        ["garbage", new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x0a, 0xff, 0xff]), /end/],
        ["not wasm", new Uint8Array([0x7f, 0x45, 0x4c, 0x46]), /asm/]
      ]
      // Two memories: wabt has no multi-memory text; the second memory section entry is added by hand.
      const one = yield* assemble(`(module (memory 1) (func (export "_start")))`)
      const at = one.findIndex((b, i) => b === 0x05 && one[i + 1] === 0x03 && one[i + 2] === 0x01)
      refused.push(["two memories", new Uint8Array([...one.subarray(0, at), 0x05, 0x05, 0x02, 0x00, 0x01, 0x00, 0x01, ...one.subarray(at + 5)]), /more than one memory/])
      for (const [name, bytes, reason] of refused) {
        let error: unknown
        try {
          instrument(bytes)
        } catch (e) {
          error = e
        }
        assert.instanceOf(error, UninstrumentableModule, name)
        assert.match((error as Error).message, reason, name)
      }
    }))
})
