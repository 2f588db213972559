/**
 * The OCI runtime-spec `config.json`, as far as runsc uses it, as Effect Schema.
 *
 * Real config.json files carry many fields we do not model (hooks, seccomp, most cgroup resources, ...);
 * they must decode anyway, so decoding relies on the default `onExcessProperty: "ignore"` and
 * unknown keys are dropped. `linux` is the exception: its unmodelled fields are kept as `unknown`
 * so that later consumers (more resources, sysctl) can read them without changing this schema.
 *
 * Every schema that can reject a value carries a `message` annotation so that the single error
 * line the CLI prints reads "expected X, got Y" instead of a TypeScript-ish type dump.
 */
import * as Net from "node:net"
import type { ParseResult } from "effect"
import { Schema } from "effect"

/** Renders a rejected value briefly: scalars literally, containers by kind only (they can be huge). */
export const describeValue = (u: unknown): string => {
  if (u === undefined) return "undefined"
  if (u === null) return "null"
  if (Array.isArray(u)) return "an array"
  switch (typeof u) {
    case "string":
      return JSON.stringify(u)
    case "number":
    case "boolean":
    case "bigint":
      return String(u)
    case "object":
      return "an object"
    default:
      return typeof u
  }
}

// `override: true` makes the message replace the inner ones of refinement chains (e.g. Int), whose
// defaults name the internal step ("Expected an integer") rather than what the field wants.
const expecting = (what: string) => ({
  message: (issue: ParseResult.ParseIssue) => ({
    message: `expected ${what}, got ${describeValue(issue.actual)}`,
    override: true
  })
})

// For containers the message only applies when the value itself has the wrong kind; problems
// inside it keep their own, more precise, message and path.
const containerOf = (what: string) => ({
  message: (issue: ParseResult.ParseIssue) => `expected ${what}, got ${describeValue(issue.actual)}`
})

const opt = <S extends Schema.Schema.All>(schema: S) => Schema.optionalWith(schema, { exact: true })

const Str = Schema.String.annotations(expecting("string"))
const Bool = Schema.Boolean.annotations(expecting("boolean"))
const Uint = Schema.NonNegativeInt.annotations(expecting("a non-negative integer"))
/** A user or group id: Linux's are 32-bit (uid_t), so 2^32 names nobody. */
const Id = Schema.NonNegativeInt.pipe(Schema.lessThanOrEqualTo(0xffffffff)).annotations(expecting("a 32-bit id (0 to 4294967295)"))
const Strings = Schema.Array(Str).annotations(containerOf("an array of strings"))

/** An absolute path inside the container: the guest has no cwd to resolve a relative one against. */
export const AbsolutePath = Schema.String.pipe(
  Schema.filter((s) => s.startsWith("/"))
).annotations(expecting("an absolute path (starting with \"/\")"))

const isNonEmpty = <A>(as: ReadonlyArray<A>): as is readonly [A, ...Array<A>] => as.length > 0

/** `process.args`: argv[0] names the wasm module to run, so an empty argv is meaningless. */
export const Args = Strings.pipe(
  Schema.filter(isNonEmpty, { message: () => ({ message: "must contain at least one element", override: false }) })
)

export const User = Schema.Struct({
  uid: Id,
  gid: Id,
  additionalGids: opt(Schema.Array(Id).annotations(containerOf("an array of 32-bit ids"))),
  umask: opt(Uint)
}).annotations(containerOf("an object"))
export interface User extends Schema.Schema.Type<typeof User> {}

export const Capabilities = Schema.Struct({
  bounding: opt(Strings),
  effective: opt(Strings),
  inheritable: opt(Strings),
  permitted: opt(Strings),
  ambient: opt(Strings)
}).annotations(containerOf("an object"))
export interface Capabilities extends Schema.Schema.Type<typeof Capabilities> {}

/** The most RLIMIT_NOFILE Linux allows unless fs.nr_open is raised: setrlimit refuses more, so runc does. */
export const NOFILE_MAX = 1_048_576

export const Rlimit = Schema.Struct({
  type: Str,
  hard: Uint,
  soft: Uint
}).annotations(containerOf("an object")).pipe(
  Schema.filter((r) => r.soft <= r.hard || `the soft limit ${r.soft} is above the hard limit ${r.hard}`),
  Schema.filter((r) => r.type !== "RLIMIT_NOFILE" || r.hard <= NOFILE_MAX || `RLIMIT_NOFILE ${r.hard} is above ${NOFILE_MAX}, the most Linux allows (fs.nr_open)`)
)
export interface Rlimit extends Schema.Schema.Type<typeof Rlimit> {}

export const Process = Schema.Struct({
  terminal: opt(Bool),
  user: opt(User),
  args: Args,
  env: opt(Strings),
  cwd: AbsolutePath,
  capabilities: opt(Capabilities),
  rlimits: opt(Schema.Array(Rlimit).annotations(containerOf("an array"))),
  noNewPrivileges: opt(Bool)
}).annotations(containerOf("an object"))
export interface Process extends Schema.Schema.Type<typeof Process> {}

export const Root = Schema.Struct({
  /** Host path of the root filesystem; relative paths are relative to the bundle directory. */
  path: Str,
  readonly: opt(Bool)
}).annotations(containerOf("an object"))
export interface Root extends Schema.Schema.Type<typeof Root> {}

export const Mount = Schema.Struct({
  destination: AbsolutePath,
  type: opt(Str),
  source: opt(Str),
  options: opt(Strings)
}).annotations(containerOf("an object"))
export interface Mount extends Schema.Schema.Type<typeof Mount> {}

/** Whether `mount` binds a host path in (type "bind", or the "bind"/"rbind" option, as runc reads it). */
export const isBindMount = (mount: Mount): boolean =>
  mount.type === "bind" || (mount.options ?? []).some((o) => o === "bind" || o === "rbind")

/** Whether a mount is read-only (`ro` among its options; the last of `ro`/`rw` wins, as mount(8) reads them). */
export const isReadOnlyMount = (mount: Mount): boolean =>
  (mount.options ?? []).filter((o) => o === "ro" || o === "rw").at(-1) === "ro"

export const namespaceTypes = ["pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time"] as const
export const NamespaceType = Schema.Literal(...namespaceTypes).annotations(
  expecting(`one of ${namespaceTypes.map((t) => JSON.stringify(t)).join(", ")}`)
)
export type NamespaceType = typeof NamespaceType.Type

export const Namespace = Schema.Struct({
  type: NamespaceType,
  /** A namespace to join (`/proc/<pid>/ns/<type>` on Linux); absent means "create a new one". */
  path: opt(Str)
}).annotations(containerOf("an object"))
export interface Namespace extends Schema.Schema.Type<typeof Namespace> {}

const firstDuplicateType = (nss: ReadonlyArray<Namespace>): string | undefined => {
  const seen = new Set<string>()
  for (const ns of nss) {
    if (seen.has(ns.type)) return ns.type
    seen.add(ns.type)
  }
  return undefined
}

// As in runc, a namespace type may appear once: lookups such as `pidNamespace` rely on it.
export const Namespaces = Schema.Array(Namespace).annotations(containerOf("an array")).pipe(
  Schema.filter((nss) => {
    const dup = firstDuplicateType(nss)
    return dup === undefined || `duplicate namespace type ${JSON.stringify(dup)}`
  })
)

/**
 * `linux.resources.memory`: `limit` in bytes, absent for none; the rest is kept unmodelled.
 * A limit is a positive number of bytes: -1 (cgroup v1's "unlimited") and 0 would leave the
 * sandbox with no memory of its own to bound, so they are refused rather than read as none.
 */
export const MemoryResources = Schema.Struct(
  { limit: opt(Schema.Int.pipe(Schema.positive()).annotations(expecting("a positive number of bytes"))) },
  Schema.Record({ key: Schema.String, value: Schema.Unknown })
).annotations(containerOf("an object"))

/**
 * `linux.resources.cpu`: a CFS `quota` (µs per `period`; -1 or absent: none) and a relative
 * `shares` weight, as runc applies them to the container's cgroup.
 */
export const CpuResources = Schema.Struct(
  {
    quota: opt(Schema.Int.pipe(Schema.greaterThanOrEqualTo(-1)).annotations(expecting("-1 or a number of microseconds"))),
    period: opt(Schema.Int.pipe(Schema.positive()).annotations(expecting("a positive number of microseconds"))),
    shares: opt(Schema.Int.pipe(Schema.nonNegative()).annotations(expecting("a non-negative weight")))
  },
  Schema.Record({ key: Schema.String, value: Schema.Unknown })
).annotations(containerOf("an object"))

/** `linux.resources.pids`: the most tasks at once; 0 or -1 is no limit, as in runc. */
export const PidsResources = Schema.Struct(
  { limit: opt(Schema.Int.pipe(Schema.greaterThanOrEqualTo(-1)).annotations(expecting("-1, 0 or a positive number"))) },
  Schema.Record({ key: Schema.String, value: Schema.Unknown })
).annotations(containerOf("an object"))

export const Resources = Schema.Struct(
  { memory: opt(MemoryResources), cpu: opt(CpuResources), pids: opt(PidsResources) },
  Schema.Record({ key: Schema.String, value: Schema.Unknown })
).annotations(containerOf("an object"))

export const Linux = Schema.Struct(
  {
    namespaces: opt(Namespaces),
    resources: opt(Resources),
    /** The container's cgroup: a path (cgroupfs), or `slice:prefix:name` for the systemd driver. */
    cgroupsPath: opt(Str)
  },
  Schema.Record({ key: Schema.String, value: Schema.Unknown })
).annotations(containerOf("an object"))
export interface Linux extends Schema.Schema.Type<typeof Linux> {}

export const Spec = Schema.Struct({
  ociVersion: Str,
  process: opt(Process),
  root: opt(Root),
  hostname: opt(Str),
  mounts: opt(Schema.Array(Mount).annotations(containerOf("an array"))),
  annotations: opt(
    Schema.Record({ key: Schema.String, value: Str }).annotations(containerOf("an object of strings"))
  ),
  linux: opt(Linux)
}).annotations(containerOf("a JSON object"))
export interface Spec extends Schema.Schema.Type<typeof Spec> {}
/** The JSON shape of a `Spec` (what `Schema.encode(Spec)` produces). */
export interface SpecEncoded extends Schema.Schema.Encoded<typeof Spec> {}

/** The most processes the spec lets the container hold at once (`linux.resources.pids.limit`; 0 and -1: none). */
export const pidsLimitOf = (spec: Spec): number | undefined => {
  const limit = spec.linux?.resources?.pids?.limit
  return limit === undefined || limit <= 0 ? undefined : limit
}

/** The memory limit the spec sets (`linux.resources.memory.limit`, bytes), if any. */
export const memoryLimitOf = (spec: Spec): number | undefined => spec.linux?.resources?.memory?.limit

/**
 * The annotation that makes a container's memory limit kill, as Linux's OOM killer does at a
 * cgroup's limit ("true"), rather than refuse what passes it (the default: memory.grow returns
 * -1, so malloc returns NULL and the program may react).
 */
export const OOM_KILL_ANNOTATION = "dev.runsc.oom-kill"

/**
 * The annotation that publishes ports of the sandbox's loopback on the host (the root
 * container's): comma-separated `[HOST_ADDRESS:]HOST_PORT:GUEST_PORT`, as `docker -p` writes
 * them; the host address defaults to 127.0.0.1, never every interface unless given (0.0.0.0).
 */
export const PUBLISH_ANNOTATION = "dev.runsc.publish"

export interface PortMapping {
  readonly hostAddress: string
  readonly hostPort: number
  readonly guestPort: number
}

const portOf = (text: string): number | undefined => {
  const n = /^\d{1,5}$/.test(text) ? Number(text) : NaN
  return n >= 1 && n <= 65535 ? n : undefined
}

/** One `[HOST_ADDRESS:]HOST_PORT:GUEST_PORT` (the host address 127.0.0.1 when left out), or why it is not one. */
export const parsePortMapping = (entry: string): PortMapping | { readonly reason: string } => {
  const parts = entry.split(":")
  const [hostAddress, hostText, guestText] = parts.length === 3 ? parts : ["127.0.0.1", ...parts]
  const hostPort = portOf(hostText ?? "")
  const guestPort = portOf(guestText ?? "")
  if (parts.length < 2 || parts.length > 3 || hostAddress === "" || hostPort === undefined || guestPort === undefined) {
    return { reason: `${JSON.stringify(entry)} is not [HOST_ADDRESS:]HOST_PORT:GUEST_PORT (ports 1 to 65535)` }
  }
  return { hostAddress: hostAddress!, hostPort, guestPort }
}

/**
 * A comma-separated annotation of the spec, entry by entry (none when it is absent or blank),
 * or the reason the first entry `parse` refuses cannot be read.
 */
const annotationList = <A extends object>(
  spec: Spec,
  name: string,
  parse: (entry: string) => A | { readonly reason: string }
): ReadonlyArray<A> | { readonly reason: string } => {
  const text = spec.annotations?.[name]
  if (text === undefined || text.trim() === "") return []
  const items: Array<A> = []
  for (const entry of text.split(",").map((e) => e.trim())) {
    const item = parse(entry)
    if ("reason" in item) return item
    items.push(item)
  }
  return items
}

/** The ports the spec publishes, or why its annotation cannot be read. */
export const publishedPortsOf = (spec: Spec): { readonly ports: ReadonlyArray<PortMapping> } | { readonly reason: string } => {
  const ports = annotationList(spec, PUBLISH_ANNOTATION, parsePortMapping)
  return "reason" in ports ? ports : { ports }
}

/**
 * The annotation that lets the sandbox's guests connect beyond its loopback, through host
 * sockets (the root container's; default: nowhere). Comma-separated rules `CIDR[:PORTS]`, PORTS
 * one port or a range `LOW-HIGH` (every port when left out), an IPv6 CIDR in brackets:
 * `10.0.2.2/32:8080,192.168.0.0/16,[2001:db8::]/32:443-444`. A rule names what the guest
 * dials; 10.0.2.2 is the host's own loopback, as slirp4netns (podman's rootless network) gives it.
 */
export const EGRESS_ANNOTATION = "dev.runsc.egress"

export interface EgressRule {
  readonly family: "ipv4" | "ipv6"
  /** The CIDR's network address, in Node's text form. */
  readonly address: string
  readonly prefix: number
  /** The ports allowed, both ends included. */
  readonly ports: { readonly low: number; readonly high: number }
}

const cidrOf = (text: string): Pick<EgressRule, "family" | "address" | "prefix"> | undefined => {
  const v6 = /^\[([0-9A-Fa-f:.]+)\]\/(\d{1,3})$/.exec(text)
  const v4 = /^(\d{1,3}(?:\.\d{1,3}){3})\/(\d{1,2})$/.exec(text)
  const [, address, prefixText] = v6 ?? v4 ?? []
  if (address === undefined || prefixText === undefined) return undefined
  const family = v6 !== null ? "ipv6" : "ipv4"
  const prefix = Number(prefixText)
  if (Net.isIP(address) !== (family === "ipv6" ? 6 : 4) || prefix > (family === "ipv6" ? 128 : 32)) return undefined
  return { family, address, prefix }
}

/** The destinations the spec lets its guests reach beyond the loopback, or why its annotation cannot be read. */
export const egressRulesOf = (spec: Spec): { readonly rules: ReadonlyArray<EgressRule> } | { readonly reason: string } => {
  const rules = annotationList(spec, EGRESS_ANNOTATION, (entry): EgressRule | { readonly reason: string } => {
    // The ports follow the last colon after the CIDR (an IPv6 CIDR's colons are in brackets).
    const cut = /^(.*\/\d{1,3})(?::(\d{1,5})(?:-(\d{1,5}))?)?$/.exec(entry)
    const cidr = cut === null ? undefined : cidrOf(cut[1]!)
    const low = cut?.[2] === undefined ? 1 : portOf(cut[2])
    const high = cut?.[3] === undefined ? (cut?.[2] === undefined ? 65535 : low) : portOf(cut[3])
    return cidr === undefined || low === undefined || high === undefined || high < low
      ? { reason: `${JSON.stringify(entry)} is not CIDR[:PORT[-PORT]] (e.g. 10.0.2.2/32:8080, [::1]/128)` }
      : { ...cidr, ports: { low, high } }
  })
  return "reason" in rules ? rules : { rules }
}

/**
 * The annotation that hands a container's init listening TCP sockets at its start, as
 * wasmtime's --tcplisten does, so that a preview1 server (which cannot make a socket: it only
 * has sock_accept) can serve: comma-separated `[ADDRESS:]PORT`, the address IPv4 or an IPv6 one
 * in brackets, default 0.0.0.0. They are the init's fds after its preopened root and any
 * preserved fds (fd 4, 5, … for a container started without --preserve-fds), in this order.
 */
export const LISTEN_ANNOTATION = "dev.runsc.listen"

export interface ListenAddress {
  readonly family: "ipv4" | "ipv6"
  readonly address: string
  readonly port: number
}

/** The listeners the spec's init is handed, or why its annotation cannot be read. */
export const listenAddressesOf = (spec: Spec): { readonly addresses: ReadonlyArray<ListenAddress> } | { readonly reason: string } => {
  const addresses = annotationList(spec, LISTEN_ANNOTATION, (entry): ListenAddress | { readonly reason: string } => {
    const parts = /^(?:(?:\[([0-9A-Fa-f:.]+)\]|(\d{1,3}(?:\.\d{1,3}){3})):)?(\d{1,5})$/.exec(entry)
    const port = parts === null ? undefined : portOf(parts[3]!)
    const v6 = parts?.[1]
    const address = v6 ?? parts?.[2] ?? "0.0.0.0"
    const family = v6 !== undefined ? "ipv6" : "ipv4"
    return port === undefined || Net.isIP(address) !== (family === "ipv6" ? 6 : 4)
      ? { reason: `${JSON.stringify(entry)} is not [ADDRESS:]PORT (e.g. 8080, 127.0.0.1:8080, [::]:8080; ports 1 to 65535)` }
      : { family, address, port }
  })
  return "reason" in addresses ? addresses : { addresses }
}

/** What happens at the container's memory limit (see OOM_KILL_ANNOTATION). */
export const memoryAtLimitOf = (spec: Spec): "refuse" | "kill" => spec.annotations?.[OOM_KILL_ANNOTATION] === "true" ? "kill" : "refuse"
