/**
 * Container id validation. Ids become directory and socket names under the state root, so besides
 * the runsc pattern they must not be `.`/`..` (which the pattern allows) and must fit a file name.
 */
import { Effect } from "effect"
import { InvalidContainerId } from "./errors.js"

export const containerIdPattern = /^[\w+\-.]+$/

/** NAME_MAX on Linux. */
export const maxContainerIdLength = 255

export const isValidContainerId = (id: string): boolean =>
  id !== "." && id !== ".." && id.length <= maxContainerIdLength && containerIdPattern.test(id)

export const validateContainerId = (id: string): Effect.Effect<string, InvalidContainerId> =>
  isValidContainerId(id) ? Effect.succeed(id) : Effect.fail(new InvalidContainerId({ id }))
