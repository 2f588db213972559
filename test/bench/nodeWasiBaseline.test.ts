/**
 * The benchmarks' node:wasi baseline (bench/src/nodeWasi.ts) must not take its process down.
 * Node's node:wasi makes its WASI calls as V8 fast API calls, and uvwasi's allocations inside
 * them report external memory to V8; past V8's external-memory limit that report runs a full GC
 * inside the fast call, which leaves the JS frames below the guest pointing at moved objects
 * (nodejs/node#46777). The suite's file rows crashed so (SIGSEGV in most runs): the runsc kernel
 * in the same process holds tens of MiB of ArrayBuffers. Here a child process runs a guest that
 * calls path_open 2000 times per run through the bench's runNodeWasi, while the parent holds
 * ArrayBuffers churning 16 MiB at a time, and checks the objects its own frame holds across each
 * run. Before runNodeWasi made sure of its headroom below V8's limit (a full GC when the process
 * holds 32 MiB or more of external memory), the child died with SIGSEGV within a few runs.
 */
import { assert, describe, it } from "@effect/vitest"
import { spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { afterAll } from "vitest"
import { assembleWat, makeTempDir, removeDir, repoRoot } from "../e2e/helpers.js"

const RUNS = 100

/** path_open("f", O_CREAT) in the preopen (fd 3) and fd_close, 2000 times; exits 100+errno on failure. */
const openCloseWat = `(module
  (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "f")
  (func (export "_start") (local $i i32) (local $err i32)
    (block $done
      (loop $again
        (br_if $done (i32.ge_u (local.get $i) (i32.const 2000)))
        (local.set $err (call $path_open (i32.const 3) (i32.const 0) (i32.const 16) (i32.const 1) (i32.const 1)
                                         (i64.const 0x42) (i64.const 0) (i32.const 0) (i32.const 32)))
        (if (local.get $err) (then (call $exit (i32.add (i32.const 100) (local.get $err)))))
        (drop (call $fd_close (i32.load (i32.const 32))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $again)))
    (call $exit (i32.const 0))))`

/** The child: RUNS baseline runs under external-memory pressure; prints "ok N" at the end. */
const child = (nodeWasi: string, wasm: string, dir: string) => `
import * as Fs from "node:fs"
const { runNodeWasi } = await import(${JSON.stringify(nodeWasi)})
const module = await WebAssembly.compile(Fs.readFileSync(${JSON.stringify(wasm)}))
const held = []
const devNull = Fs.openSync("/dev/null", "w")
const run = (i) => {
  const mine = { i, tag: "run " + i, list: [i, i + 1], nested: { a: i } }
  const r = runNodeWasi({ module, args: ["open_close"], stdout: devNull, preopens: { "/": ${JSON.stringify(dir)} } })
  if (r.code !== 0) throw new Error("guest exited with " + r.code)
  if (mine.nested.a !== i || mine.list[1] !== i + 1 || mine.tag !== "run " + i) throw new Error("objects held across run " + i + " changed")
  return mine
}
for (let i = 0; i < ${RUNS}; i++) {
  held.push(new ArrayBuffer(16 * 1024 * 1024))
  if (held.length > 8) held.shift()
  held.push(run(i))
}
console.log("ok", ${RUNS})
`

const cleanup: Array<string> = []
afterAll(async () => {
  for (const dir of cleanup) await removeDir(dir)
})

describe("node:wasi baseline", () => {
  it("survives uvwasi allocations while the process's external memory is past V8's limit", async () => {
    const dir = await makeTempDir("runsc-bench-nodewasi-")
    cleanup.push(dir)
    const wasm = Path.join(dir, "open_close.wasm")
    Fs.writeFileSync(wasm, await assembleWat(openCloseWat, "open_close.wat"))
    const preopen = Path.join(dir, "root")
    Fs.mkdirSync(preopen)
    const script = Path.join(dir, "child.mjs")
    Fs.writeFileSync(script, child(Path.join(repoRoot, "bench", "dist", "nodeWasi.js"), wasm, preopen))
    const result = await new Promise<{ code: number | null; signal: string | null; out: string }>((resolve) => {
      let out = ""
      const p = spawn(process.execPath, [script], { stdio: ["ignore", "pipe", "pipe"] })
      p.stdout.on("data", (chunk) => (out += chunk))
      p.stderr.on("data", (chunk) => (out += chunk))
      p.once("close", (code, signal) => resolve({ code, signal, out }))
    })
    assert.deepStrictEqual({ code: result.code, signal: result.signal }, { code: 0, signal: null }, result.out)
    assert.include(result.out, `ok ${RUNS}`)
  }, 120_000)
})
