/** Guests written in WAT, assembled with wabt (a root devDependency). */

type Wabt = Awaited<ReturnType<typeof import("wabt")>>
let wabt: Promise<Wabt> | undefined

export const assemble = async (name: string, text: string): Promise<Uint8Array> => {
  wabt ??= import("wabt").then((m) => m.default())
  const module = (await wabt).parseWat(name, text)
  try {
    return new Uint8Array(module.toBinary({}).buffer)
  } finally {
    module.destroy()
  }
}

/** The smallest WASI command: exits 0 at once. */
export const trivialWat = `(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") i32.const 0 call $exit))`

/**
 * `n` calls of fd_fdstat_get(1) in a loop: a syscall that runsc serves in the sentry (a channel
 * round trip per call) and node:wasi serves from uvwasi's fd table. Exits 100+errno on failure.
 */
export const fdstatLoopWat = (n: number): string => `(module
  (import "wasi_snapshot_preview1" "fd_fdstat_get" (func $fdstat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (local $i i32) (local $err i32)
    (block $done
      (loop $again
        (br_if $done (i32.ge_u (local.get $i) (i32.const ${n})))
        (local.set $err (call $fdstat_get (i32.const 1) (i32.const 64)))
        (if (local.get $err) (then (call $exit (i32.add (i32.const 100) (local.get $err)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $again)))
    (call $exit (i32.const 0))))`
