/**
 * Namespace lookups on a spec. The schema guarantees a namespace type appears at most once, so the
 * first match is the only one.
 */
import type { Namespace, NamespaceType, Spec } from "./schema.js"

/** The `linux.namespaces` entry of `type`, if the spec asks for that namespace. */
export const findNamespace = (spec: Spec, type: NamespaceType): Namespace | undefined =>
  spec.linux?.namespaces?.find((ns) => ns.type === type)

export const hasNamespace = (spec: Spec, type: NamespaceType): boolean => findNamespace(spec, type) !== undefined

/**
 * The PID namespace a container's init runs in: `Shared` = the sandbox's root namespace (no `pid`
 * entry); `New` with a `path` = join the namespace an earlier container created under that path, or
 * create it if none did; `New` without a path = a fresh child namespace.
 */
export type PidNamespace =
  | { readonly _tag: "Shared" }
  | { readonly _tag: "New"; readonly path?: string }

export const pidNamespace = (spec: Spec): PidNamespace => {
  const ns = findNamespace(spec, "pid")
  if (ns === undefined) return { _tag: "Shared" }
  return ns.path === undefined ? { _tag: "New" } : { _tag: "New", path: ns.path }
}
