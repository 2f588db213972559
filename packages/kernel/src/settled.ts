/**
 * Sync-first effects: an operation that never waits answers with an effect that is already
 * settled (an `Exit`: `Effect.succeed`, `Effect.void`, `fail`), which a caller on a hot path
 * reads in plain JS instead of running a fiber step; one that may wait answers with an effect
 * to run. The syscall server reads its handlers' answers this way (syscalls/serve.ts).
 *
 * `fnNow` is `Effect.fn` for such code: `fnNow(function*(a, b) { ... })` is a function whose
 * call runs the body at once, as far as every effect it yields is settled, and whose result is
 * then settled too; from the first effect that is not, the rest of the body runs as an effect.
 * So a handler or a path walk is written once, and is synchronous exactly when everything under
 * it is. Unlike `Effect.gen` the body runs when the function is called, not when its effect is
 * run: call it where the effect is run at once, or wrap the call in `Effect.suspend`.
 *
 * Why a function made once and not `gen(function*() { ... })` inside each call: V8 (Node 20)
 * gives every generator *closure* it creates its own prototype and object map, which costs about
 * 3 µs, more than a whole syscall round trip. A generator function made once, at module load,
 * costs ~0.1 µs a call. So on a hot path a generator is never written inline in a function that
 * runs per call.
 */
import { Effect, Either, Exit } from "effect"
import { type YieldWrap, yieldWrapGet } from "effect/Utils"

type Yielded = YieldWrap<Effect.Effect<any, any, any>>
type ErrorOf<Eff> = [Eff] extends [never] ? never : [Eff] extends [YieldWrap<Effect.Effect<infer _A, infer E, infer _R>>] ? E : never
type ContextOf<Eff> = [Eff] extends [never] ? never : [Eff] extends [YieldWrap<Effect.Effect<infer _A, infer _E, infer R>>] ? R : never

/** Whether `self` is settled: an Exit, read without running it. */
export const isSettled = <A, E, R>(self: Effect.Effect<A, E, R>): self is Exit.Exit<A, E> => Exit.isExit(self)

const step = (body: Iterator<Yielded, unknown, unknown>, input: unknown): Effect.Effect<unknown, unknown, unknown> => {
  for (;;) {
    const next = body.next(input)
    if (next.done === true) return Exit.succeed(next.value)
    const effect = yieldWrapGet(next.value)
    if (!Exit.isExit(effect)) return Effect.flatMap(effect, (value) => step(body, value))
    // A failure ends the body, as in Effect.gen.
    if (effect._tag === "Failure") return effect
    input = effect.value
  }
}

/**
 * `Effect.fn` run at once as far as what it yields is settled (see the module's comment). Call
 * it once, where the function is defined, never per call.
 */
export const fnNow = <Args extends ReadonlyArray<any>, Eff extends Yielded, A>(
  body: (...args: Args) => Generator<Eff, A, never>
): (...args: Args) => Effect.Effect<A, ErrorOf<Eff>, ContextOf<Eff>> =>
(...args) => step(body(...args), undefined) as Effect.Effect<A, ErrorOf<Eff>, ContextOf<Eff>>

/** `Effect.map` that stays settled on a settled effect. */
export const mapNow = <A, E, R, B>(self: Effect.Effect<A, E, R>, f: (a: A) => B): Effect.Effect<B, E, R> =>
  isSettled(self) ? (self._tag === "Success" ? Exit.succeed(f(self.value)) : self as Exit.Exit<never, E>) : Effect.map(self, f)

/** `Effect.flatMap` that runs `f` at once on a settled success. */
export const flatMapNow = <A, E, R, B, E2, R2>(
  self: Effect.Effect<A, E, R>,
  f: (a: A) => Effect.Effect<B, E2, R2>
): Effect.Effect<B, E | E2, R | R2> =>
  isSettled(self) ? (self._tag === "Success" ? f(self.value) : self as Exit.Exit<never, E>) : Effect.flatMap(self, f)

/** `Effect.either` that stays settled on a settled effect (a defect stays a defect). */
export const eitherNow = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<Either.Either<A, E>, never, R> => {
  if (!isSettled(self)) return Effect.either(self)
  if (self._tag === "Success") return Exit.succeed(Either.right(self.value))
  const failure = self.cause._tag === "Fail" ? self.cause.error : undefined
  return failure === undefined ? Effect.either(self) : Exit.succeed(Either.left(failure))
}

const toVoid = (): void => undefined

/** `Effect.asVoid` that stays settled on a settled effect. */
export const asVoidNow = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<void, E, R> => mapNow(self, toVoid)
