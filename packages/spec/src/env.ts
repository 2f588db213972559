/**
 * Process environment lists (`KEY=VALUE` strings, as in `process.env` of the spec and `exec --env`).
 * Linux passes duplicates through and libc's getenv takes the first; runsc instead resolves
 * duplicates last-wins, as runc/gVisor do, so that a later `--env` overrides the spec's value.
 */
import { Either } from "effect"

export const defaultPath = "/usr/local/bin:/usr/bin:/bin"

export interface EnvAssignment {
  readonly key: string
  readonly value: string
}

const split = (entry: string): EnvAssignment | undefined => {
  const eq = entry.indexOf("=")
  return eq <= 0 ? undefined : { key: entry.slice(0, eq), value: entry.slice(eq + 1) }
}

/**
 * Resolves duplicates last-wins while keeping each key at the position of its first occurrence;
 * entries without `=` or with an empty key cannot be expressed as an environment variable and are dropped.
 */
export const resolveEnv = (env: ReadonlyArray<string>): ReadonlyArray<string> => {
  const values = new Map<string, string>() // Map iterates in first-insertion order
  for (const entry of env) {
    const kv = split(entry)
    if (kv !== undefined) values.set(kv.key, kv.value)
  }
  return Array.from(values, ([k, v]) => `${k}=${v}`)
}

/** `env` with `overrides` applied on top (last-wins). */
export const mergeEnv = (env: ReadonlyArray<string>, overrides: ReadonlyArray<string>): ReadonlyArray<string> =>
  resolveEnv([...env, ...overrides])

/** The value of `key`, with the same last-wins rule as `resolveEnv`. */
export const getEnv = (env: ReadonlyArray<string>, key: string): string | undefined => {
  for (let i = env.length - 1; i >= 0; i--) {
    const kv = split(env[i]!)
    if (kv !== undefined && kv.key === key) return kv.value
  }
  return undefined
}

/** Validates a CLI `--env K=V` argument; the left side is a human-readable reason. */
export const parseEnvAssignment = (arg: string): Either.Either<EnvAssignment, string> => {
  const eq = arg.indexOf("=")
  if (eq < 0) return Either.left(`invalid environment variable ${JSON.stringify(arg)}: expected KEY=VALUE`)
  if (eq === 0) return Either.left(`invalid environment variable ${JSON.stringify(arg)}: empty key`)
  return Either.right({ key: arg.slice(0, eq), value: arg.slice(eq + 1) })
}
