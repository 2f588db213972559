/**
 * What an instrumented guest module (see instrument.ts) expects of the worker that runs it, shared
 * by both ends: the names of the exports the instrumentation adds, and the wasm function the
 * worker puts in the added table so that the guest's `memory.grow` reaches the worker's JS.
 */

/** The added table: slot 0 holds the function every `memory.grow` of the guest calls. */
export const GROW_TABLE_EXPORT = "runsc:memory.grow"

/** The module's `start` function, when it had one: the worker calls it once the table is filled. */
export const START_EXPORT = "runsc:start"

/**
 * `(module (import "runsc" "grow" (func (param i32) (result i32))) (export "grow" (func 0)))`:
 * wraps a JS function as a wasm function, which a table can hold (a plain JS function cannot).
 */
export const GROW_HOOK_MODULE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  // type section: (func (param i32) (result i32))
  0x01, 0x06, 0x01, 0x60, 0x01, 0x7f, 0x01, 0x7f,
  // import section: "runsc" "grow" (func (type 0))
  0x02, 0x0e, 0x01, 0x05, 0x72, 0x75, 0x6e, 0x73, 0x63, 0x04, 0x67, 0x72, 0x6f, 0x77, 0x00, 0x00,
  // export section: "grow" (func 0)
  0x07, 0x08, 0x01, 0x04, 0x67, 0x72, 0x6f, 0x77, 0x00, 0x00
])
