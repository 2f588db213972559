/**
 * How a socket call waits when SO_RCVTIMEO or SO_SNDTIMEO limits it: at most the limit, counted
 * from its first wait (a call that never waits never looks at the clock, so the calls that
 * answer at once stay settled).
 */
import { Clock, Duration, Effect } from "effect"

/** `wait(next)`: true when `next` came, false when the call's time ran out first. */
export type LimitedWait = (next: Effect.Effect<void>) => Effect.Effect<boolean>

const forever: LimitedWait = (next) => Effect.as(next, true)

/** A call's waits, limited to `milliseconds` in all (undefined: no limit). */
export const limitedWait = (milliseconds: number | undefined): LimitedWait => {
  if (milliseconds === undefined) return forever
  let deadline: number | undefined
  return (next) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      deadline ??= now + milliseconds
      const left = deadline - now
      return left <= 0 ? Effect.succeed(false) : Effect.raceFirst(Effect.as(next, true), Effect.as(Effect.sleep(Duration.millis(left)), false))
    })
}
