/**
 * strace: entry and exit lines for every syscall the sentry serves (with strace on, writes no
 * longer take the in-worker fast path), filtering by syscall name, and buffers cut at logSize.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { Kernel } from "../src/index.js"
import { Exited, fixture, rootOf, runGuest, tempDir } from "./helpers.js"

const withStrace = (options: { syscalls?: ReadonlySet<string>; logSize?: number }) => {
  const lines: Array<string> = []
  const layer = Kernel.layer({
    warmWorkers: 1,
    strace: { logSize: options.logSize ?? 32, emit: (line) => void lines.push(line), ...(options.syscalls ? { syscalls: options.syscalls } : {}) }
  })
  return { lines, layer }
}

describe("strace", () => {
  it.live("echo_args shows an entry and an exit line for each fd_write, with the byte count", () => {
    const { layer, lines } = withStrace({})
    return Effect.gen(function*() {
      const long = "a-long-argument-of-more-than-32-bytes"
      const r = yield* runGuest({ bytes: fixture("echo_args"), argv: ["echo_args", long] })
      assert.deepStrictEqual(r.status, Exited(0))
      const expected = `argv[0]=echo_args\nargv[1]=${long}\n`
      assert.strictEqual(r.stdout, expected)
      const entry = /^\[\s*\d+:\s*\d+\] echo_args E fd_write\(1 host:\[\d+\], "((?:[^"\\]|\\.)*)"(\.\.\.)?, (\d+)\)$/
      const enter = lines.filter((l) => / E fd_write\(/.test(l))
      const exit = lines.filter((l) => / X fd_write\(/.test(l))
      assert.isAtLeast(enter.length, 1, lines.join("\n"))
      assert.strictEqual(exit.length, enter.length)
      let total = 0
      enter.forEach((line, i) => {
        const m = entry.exec(line)
        assert.isNotNull(m, line)
        const [, shown, cut, size] = m!
        const written = expected.slice(total, total + Number(size))
        const escaped = written.slice(0, 32).replaceAll("\n", "\\n")
        assert.strictEqual(shown, escaped, "the buffer, escaped and cut at logSize")
        assert.strictEqual(cut !== undefined, written.length > 32)
        assert.match(exit[i]!, new RegExp(`X fd_write\\(.*\\) = ${size} \\(\\d+\\.\\dµs\\)$`))
        total += Number(size)
      })
      assert.strictEqual(total, expected.length)
      assert.isTrue(enter.some((l) => l.includes(`"...`)), "a write over logSize is cut")
      // Every line is an entry or an exit, in pairs.
      for (const l of lines) assert.match(l, /^\[\s*\d+:\s*\d+\] echo_args [EX] [a-z_0-9]+\(/)
      assert.strictEqual(lines.filter((l) => / E /.test(l)).length, lines.filter((l) => / X /.test(l)).length)
    }).pipe(Effect.provide(layer))
  })

  it.live("process calls: proc_spawn shows the path and argv and returns the pid; proc_join the joined pid", () => {
    const { layer, lines } = withStrace({ syscalls: new Set(["proc_spawn", "proc_join"]) })
    return Effect.gen(function*() {
      const dir = yield* tempDir()
      Fs.mkdirSync(Path.join(dir, "bin"))
      for (const name of ["reaper"]) Fs.writeFileSync(Path.join(dir, "bin", name), fixture(name), { mode: 0o755 })
      const r = yield* runGuest({ bytes: fixture("reaper"), argv: ["/bin/reaper", "1"], env: ["PATH=/bin"], root: yield* rootOf(dir) })
      assert.deepStrictEqual(r.status, Exited(0))
      const spawn = lines.find((l) => / X proc_spawn\(/.test(l))
      assert.match(spawn ?? "", /X proc_spawn\("\/bin\/reaper", \["\/bin\/reaper", "--child", "0"\], nfds 0, pgid -1, flags 0x1\) = \d+ /, lines.join("\n"))
      assert.isTrue(lines.some((l) => / X proc_join\(.*\) = \d+ /.test(l)), lines.join("\n"))
    }).pipe(Effect.scoped, Effect.provide(layer))
  })

  it.live("with strace on, every write goes through the sentry and is seen", () => {
    const { layer, lines } = withStrace({ syscalls: new Set(["fd_write"]) })
    return Effect.gen(function*() {
      const r = yield* runGuest({ bytes: fixture("write_many"), argv: ["write_many", "5"] })
      assert.deepStrictEqual(r.status, Exited(0))
      assert.strictEqual(r.stdout, "xxxxx")
      assert.lengthOf(lines.filter((l) => / E fd_write\(1 host:\[\d+\], "x", 1\)$/.test(l)), 5, lines.join("\n"))
      assert.lengthOf(lines.filter((l) => / X fd_write\(.*\) = 1 /.test(l)), 5)
    }).pipe(Effect.provide(layer))
  })

  it.live("a write larger than the channel's data area arrives whole, in several requests", () => {
    const { layer, lines } = withStrace({ syscalls: new Set(["fd_write"]) })
    return Effect.gen(function*() {
      const big = "y".repeat(300_000)
      const r = yield* runGuest({ bytes: fixture("echo_args"), argv: ["echo_args", big] })
      assert.deepStrictEqual(r.status, Exited(0))
      assert.strictEqual(r.stdout, `argv[0]=echo_args\nargv[1]=${big}\n`)
      const counts = lines.filter((l) => / X fd_write/.test(l)).map((l) => Number(/ = (\d+) /.exec(l)![1]))
      assert.isAtLeast(counts.length, 2)
      assert.strictEqual(counts.reduce((a, b) => a + b, 0), r.stdout.length)
      for (const l of lines) assert.isBelow(l.length, 200, "buffers are cut at logSize")
    }).pipe(Effect.provide(layer))
  })

  it.live("a syscall filter shows only those syscalls, with paths and results (and errors by name)", () => {
    const { layer, lines } = withStrace({ syscalls: new Set(["path_open"]) })
    return Effect.gen(function*() {
      const dir = yield* tempDir()
      Fs.writeFileSync(Path.join(dir, "hello.txt"), "hi\n")
      const r = yield* runGuest({ bytes: fixture("cat"), argv: ["cat", "/hello.txt", "/missing"], root: yield* rootOf(dir) })
      assert.deepStrictEqual(r.status, Exited(1))
      assert.strictEqual(r.stdout, "hi\n")
      assert.isAbove(lines.length, 0)
      for (const l of lines) assert.match(l, / [EX] path_open\(/, l)
      assert.isTrue(lines.some((l) => /E path_open\(3 \/, "hello\.txt", /.test(l)), lines.join("\n"))
      assert.isTrue(lines.some((l) => /X path_open\(3 \/, "hello\.txt", .*\) = \d+ \(/.test(l)))
      assert.isTrue(lines.some((l) => /X path_open\(3 \/, "missing", .*\) = -1 ENOENT/.test(l)))
    }).pipe(Effect.scoped, Effect.provide(layer))
  })
})
