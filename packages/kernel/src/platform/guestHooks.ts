/**
 * What an instrumented guest module (see instrument.ts) expects of the worker that runs it, shared
 * by both ends: the names of the exports the instrumentation adds, the slots of the table it
 * adds, and the wasm functions the worker puts there so that the guest reaches the worker's JS.
 */

/** The added table, which the worker fills once the module is instantiated. */
export const HOOK_TABLE_EXPORT = "runsc:hooks"

/** Slot of the function every `memory.grow` of the guest calls: (pages) -> old size, or -1. */
export const GROW_SLOT = 0

/**
 * Slot of the function the guest calls at every PREEMPTION_INTERVAL-th preemption point (a loop
 * header, or the entry of a function that calls): () -> (); where a guest that computes without
 * syscalls still stops, pauses and dies as at a syscall boundary.
 */
export const PREEMPT_SLOT = 1

/**
 * How often a guest calls the preemption hook (a power of two; see instrument.ts): a loop every
 * PREEMPTION_INTERVAL passes (its countdown), function entries when their shared count, up by
 * ENTRY_WEIGHT at each, reaches a multiple of it. The hook is a JS call and an atomic load
 * (~0.1 µs); a tight loop passes a point every ns or so, so it runs there every ~100 µs.
 */
export const PREEMPTION_INTERVAL = 65536

/**
 * What a function entry counts. A loop's countdown is filled at its function's entry and not
 * carried back, so a function that loops fewer than PREEMPTION_INTERVAL times, called again and
 * again, is preempted through its entries: every PREEMPTION_INTERVAL / ENTRY_WEIGHT (1,024)
 * calls, at most ~67 M loop passes between two hooks in the worst such pattern (tens of ms).
 */
export const ENTRY_WEIGHT = 64

/** The module's `start` function, when it had one: the worker calls it once the table is filled. */
export const START_EXPORT = "runsc:start"

/**
 * `(module (import "runsc" "grow" (func (param i32) (result i32))) (import "runsc" "preempt" (func))
 * (export "grow" (func 0)) (export "preempt" (func 1)))`: wraps JS functions as wasm functions,
 * which a table can hold (a plain JS function cannot).
 */
export const HOOKS_MODULE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  // type section: (func (param i32) (result i32)), (func)
  0x01, 0x09, 0x02, 0x60, 0x01, 0x7f, 0x01, 0x7f, 0x60, 0x00, 0x00,
  // import section: "runsc" "grow" (func (type 0)), "runsc" "preempt" (func (type 1))
  0x02, 0x1e, 0x02,
  0x05, 0x72, 0x75, 0x6e, 0x73, 0x63, 0x04, 0x67, 0x72, 0x6f, 0x77, 0x00, 0x00,
  0x05, 0x72, 0x75, 0x6e, 0x73, 0x63, 0x07, 0x70, 0x72, 0x65, 0x65, 0x6d, 0x70, 0x74, 0x00, 0x01,
  // export section: "grow" (func 0), "preempt" (func 1)
  0x07, 0x12, 0x02, 0x04, 0x67, 0x72, 0x6f, 0x77, 0x00, 0x00, 0x07, 0x70, 0x72, 0x65, 0x65, 0x6d, 0x70, 0x74, 0x00, 0x01
])

/** The functions an instrumented guest calls, as wasm functions (which a table can hold). */
export interface GuestHooks {
  readonly grow: WebAssembly.ExportValue
  readonly preempt: WebAssembly.ExportValue
}

/** Wraps `grow` ((pages) -> old size, or -1) and `preempt` as the hooks an instrumented guest calls. */
export const guestHooks = (grow: (pages: number) => number, preempt: () => void): GuestHooks => {
  const { exports } = new WebAssembly.Instance(new WebAssembly.Module(HOOKS_MODULE), { runsc: { grow, preempt } })
  return { grow: exports["grow"]!, preempt: exports["preempt"]! }
}

/**
 * Puts `hooks` in an instrumented instance's table, then runs its start function if it had one
 * (START_EXPORT): what must happen before its first export is called.
 */
export const installHooks = (instance: WebAssembly.Instance, hooks: GuestHooks): void => {
  const table = instance.exports[HOOK_TABLE_EXPORT] as WebAssembly.Table
  table.set(GROW_SLOT, hooks.grow)
  table.set(PREEMPT_SLOT, hooks.preempt)
  ;(instance.exports[START_EXPORT] as (() => void) | undefined)?.()
}

