/**
 * The kernel's instrumentation thread (platform/instrumenter.ts): a module is rewritten off the
 * sentry's thread, into exactly what the rewrite makes in place; what cannot be instrumented is
 * refused with the same reason; the kernel runs guests through it.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber } from "effect"
import { instrument, UninstrumentableModule } from "../src/platform/instrument.js"
import { IN_PLACE_BYTES, offThread } from "../src/platform/instrumenter.js"
import { Exited, fixture, kernelLayer, runGuest } from "./helpers.js"

/** A module of `functions` small functions, built by hand (no assembler needed for its size). */
const leb = (n: number): Array<number> => {
  const out: Array<number> = []
  do {
    let byte = n & 0x7f
    n >>>= 7
    if (n !== 0) byte |= 0x80
    out.push(byte)
  } while (n !== 0)
  return out
}

const manyFunctions = (functions: number): Uint8Array => {
  const section = (id: number, body: Array<number>) => [id, ...leb(body.length), ...body]
  // (func (param i32) (result i32) local.get 0 i32.const 1 i32.add memory.grow)
  const code = [0x00, 0x20, 0x00, 0x41, 0x01, 0x6a, 0x40, 0x00, 0x0b]
  const bodies: Array<number> = [...leb(functions)]
  for (let i = 0; i < functions; i++) bodies.push(...leb(code.length), ...code)
  const functionSection = [...leb(functions)]
  for (let i = 0; i < functions; i++) functionSection.push(0)
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [1, 0x60, 1, 0x7f, 1, 0x7f]),
    ...section(3, functionSection),
    ...section(5, [1, 0x00, 1]),
    ...section(10, bodies)
  ])
}

describe("the instrumentation thread", () => {
  it.scopedLive("rewrites a module off the caller's thread, into what the rewrite makes in place", () =>
    Effect.gen(function*() {
      const instrumenter = yield* offThread
      const bytes = manyFunctions(50_000)
      const fiber = Effect.runFork(instrumenter.instrument(bytes))
      // In place, the whole rewrite would be done before runFork returned.
      assert.isNull(fiber.unsafePoll(), "the rewrite did not run on this thread")
      const done = yield* Fiber.join(fiber)
      const expected = instrument(bytes)
      assert.deepStrictEqual(done.memory, expected.memory)
      assert.isTrue(Buffer.from(done.bytes).equals(Buffer.from(expected.bytes)), "the same bytes as in place")
      // The caller's bytes are its own still (a copy went to the thread).
      assert.strictEqual(bytes.length, manyFunctions(50_000).length)
    }))

  it.scopedLive("refuses what cannot be instrumented with the reason the rewrite gives, and goes on", () =>
    Effect.gen(function*() {
      const instrumenter = yield* offThread
      // Past IN_PLACE_BYTES (a custom section of padding), with a code section the rewrite cannot read.
      const padding = IN_PLACE_BYTES + 1000
      const broken = new Uint8Array([
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
        0x00, ...leb(padding + 4), 3, 0x70, 0x61, 0x64, ...new Array<number>(padding).fill(0),
        0x0a, 0x05, 0x01, 0x03, 0x00, 0xff, 0x0b
      ])
      const refused = yield* Effect.exit(instrumenter.instrument(broken))
      let inPlace = ""
      try {
        instrument(broken)
      } catch (e) {
        inPlace = (e as UninstrumentableModule).message
      }
      assert.isTrue(Exit.isFailure(refused))
      if (Exit.isFailure(refused)) {
        const error = refused.cause._tag === "Fail" ? refused.cause.error : undefined
        assert.instanceOf(error, UninstrumentableModule)
        assert.strictEqual(error?.message, inPlace)
      }
      const after = yield* instrumenter.instrument(manyFunctions(3))
      assert.isAbove(after.bytes.length, 0)
    }))

  it.scopedLive("rewrites a small module where it is asked, with no thread", () =>
    Effect.gen(function*() {
      const instrumenter = yield* offThread
      const bytes = manyFunctions(100)
      assert.isAtMost(bytes.length, IN_PLACE_BYTES)
      const fiber = Effect.runFork(instrumenter.instrument(bytes))
      const done = fiber.unsafePoll()
      assert.isNotNull(done, "done before runFork returned")
      assert.isTrue(done !== null && Exit.isSuccess(done) && Buffer.from(done.value.bytes).equals(Buffer.from(instrument(bytes).bytes)))
    }))

  it.live("the kernel runs guests through it", () =>
    Effect.gen(function*() {
      const r = yield* runGuest({ bytes: fixture("echo_args"), argv: ["echo_args", "hi"] })
      assert.deepStrictEqual(r.status, Exited(0))
      assert.strictEqual(r.stdout, "argv[0]=echo_args\nargv[1]=hi\n")
    }).pipe(Effect.provide(kernelLayer)))
})
