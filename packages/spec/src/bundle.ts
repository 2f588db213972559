/**
 * Loading an OCI bundle: `<dir>/config.json` read, parsed and decoded into a `Spec`, with every
 * decoding failure collapsed into ONE `InvalidSpec` that names the JSON path of the first problem,
 * because the CLI reports exactly one line and a user fixes one field at a time.
 */
import { Effect, ParseResult, Schema } from "effect"
import * as path from "node:path"
import { BundleNotFound, InvalidSpec } from "./errors.js"
import { readRegularFile } from "./regularFile.js"
import { isBindMount, isReadOnlyMount, Process, Spec } from "./schema.js"

export interface Bundle {
  /** Absolute path of the bundle directory. */
  readonly dir: string
  readonly spec: Spec
  /** Absolute host path of the root filesystem (`root.path` resolved against `dir`). */
  readonly rootPath: string
}

/** The OCI default for a bundle whose spec has no `root`. */
export const defaultRootPath = "rootfs"

const identifier = /^[A-Za-z_$][\w$]*$/

/** Renders a schema path as `process.args[0]`; keys that are not identifiers are quoted (`annotations["a.b"]`). */
export const formatJsonPath = (segments: ReadonlyArray<PropertyKey>): string =>
  segments.reduce<string>((acc, seg) => {
    if (typeof seg === "number") return `${acc}[${seg}]`
    if (typeof seg === "string" && identifier.test(seg)) return acc === "" ? seg : `${acc}.${seg}`
    return `${acc}[${typeof seg === "string" ? JSON.stringify(seg) : String(seg)}]`
  }, "")

// Fallback for messages no annotation in schema.ts rewrote: keep the house style "expected X, got Y".
const restyle = (message: string): string => {
  const m = /^Expected ([\s\S]*), actual ([\s\S]*)$/.exec(message)
  return m === null ? message : `expected ${m[1]}, got ${m[2]}`
}

/** Collapses a decoding failure into the `InvalidSpec` of its first problem. */
export const toInvalidSpec = (error: ParseResult.ParseError): InvalidSpec => {
  const first = ParseResult.ArrayFormatter.formatErrorSync(error)[0]
  if (first === undefined) return new InvalidSpec({ path: "", reason: restyle(error.message) })
  const reason = first._tag === "Missing" ? "required field is missing" : restyle(first.message)
  return new InvalidSpec({ path: formatJsonPath(first.path), reason })
}

const decode = Schema.decodeUnknown(Spec, { errors: "first", onExcessProperty: "ignore" })

/** Decodes an already-parsed `config.json` value. */
export const decodeSpec = (json: unknown): Effect.Effect<Spec, InvalidSpec> =>
  decode(json).pipe(Effect.mapError(toInvalidSpec))

const parseJson = (text: string): Effect.Effect<unknown, InvalidSpec> =>
  Effect.try({
    try: (): unknown => JSON.parse(text),
    catch: (e) => new InvalidSpec({ path: "", reason: `malformed JSON: ${e instanceof Error ? e.message : String(e)}` })
  })

/** Parses and decodes the text of a `config.json`. */
export const parseSpec = (text: string): Effect.Effect<Spec, InvalidSpec> => Effect.flatMap(parseJson(text), decodeSpec)

const decodeProcess = Schema.decodeUnknown(Process, { errors: "first", onExcessProperty: "ignore" })

/**
 * Parses and decodes a process JSON, as `runc exec --process FILE` takes it: one OCI `process`
 * object (args, env, cwd, user, terminal, ...), validated as config.json's `process` is.
 */
export const parseProcess = (text: string): Effect.Effect<Process, InvalidSpec> =>
  Effect.flatMap(parseJson(text), (json) => Effect.mapError(decodeProcess(json), toInvalidSpec))

/**
 * The text of `<dir>/config.json`, which the user may have made a symlink (runc follows it too);
 * a FIFO or a device in its place is refused at once, never waited on.
 */
const readConfig = (dir: string): Effect.Effect<string, InvalidSpec | BundleNotFound> =>
  readRegularFile(path.join(dir, "config.json"), { followSymlinks: true }).pipe(
    Effect.mapError((e): InvalidSpec | BundleNotFound => {
      if (e.code === "ENOENT" || e.code === "ENOTDIR") return new BundleNotFound({ bundle: dir })
      // Present but unreadable (EACCES, not a regular file, ...): the user must fix the file, so
      // it is a spec problem they can act on rather than a defect.
      return new InvalidSpec({ path: "", reason: `cannot read config.json: ${e.reason}` })
    })
  )

/** Reads `<dir>/config.json` of a container to run (it must have a process); `dir` may be relative to the process cwd. */
export const loadBundle = (dir: string): Effect.Effect<Bundle, InvalidSpec | BundleNotFound> =>
  Effect.gen(function*() {
    const abs = path.resolve(dir)
    const text = yield* readConfig(abs)
    const spec = yield* parseSpec(text)
    // Optional in the OCI schema, but a container is run for its process (runc refuses too).
    if (spec.process === undefined) return yield* new InvalidSpec({ path: "process", reason: "required field is missing" })
    return { dir: abs, spec, rootPath: path.resolve(abs, spec.root?.path ?? defaultRootPath) }
  })

/** A host tree a container mounts: its root filesystem, or the source of one of its bind mounts. */
export interface HostTreeSource {
  /** Absolute host path. */
  readonly path: string
  /** Where the container sees it ("/" for the root). */
  readonly destination: string
  readonly writable: boolean
}

/**
 * The host trees a container of `bundle` mounts, in the order the sandbox mounts them: its root
 * filesystem, then the source of each bind mount that names one (relative to the bundle), in
 * the spec's order. A tree donated to a sandbox is known by its place in this list.
 */
export const hostTreesOf = (bundle: Bundle): ReadonlyArray<HostTreeSource> => [
  // Never written: the container's changes to its root stay in the sandbox's overlay.
  { path: bundle.rootPath, destination: "/", writable: false },
  ...(bundle.spec.mounts ?? []).flatMap((mount) =>
    mount.source !== undefined && isBindMount(mount)
      ? [{ path: path.resolve(bundle.dir, mount.source), destination: mount.destination, writable: !isReadOnlyMount(mount) }]
      : []
  )
]
