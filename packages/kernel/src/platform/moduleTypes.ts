/**
 * The function types of a module's imports and exports, read from its binary:
 * `WebAssembly.Module.imports`/`exports` give only names and kinds, and JS functions take and
 * are called with any type, so the sentry reads the binary itself (wasmBinary.ts) to hold a
 * command to the `_start: () -> ()` it must have and to the declared type of each syscall it
 * imports.
 *
 * Only modules that `WebAssembly.compile` accepted are read, so the binary is well formed; a
 * construct this reader does not know (a future type form) makes it answer undefined ("cannot
 * tell") rather than reject a module the engine runs.
 */

import {
  ExternalKind,
  type FunctionType,
  type Import,
  MalformedWasm,
  type Reader,
  readerOf,
  readExportSection,
  readFunctionSection,
  readImportSection,
  readTypeSection,
  SectionId,
  sectionsOf
} from "./wasmBinary.js"

export type { FunctionType }

/** A function type in the text format's terms: `(param i32) (result i32)`, or `() -> ()`. */
export const describeFunctionType = (type: FunctionType): string =>
  [
    ...(type.params.length > 0 ? [`(param ${type.params.join(" ")})`] : []),
    ...(type.results.length > 0 ? [`(result ${type.results.join(" ")})`] : [])
  ].join(" ") || "() -> ()"

export interface FunctionImport {
  readonly module: string
  readonly name: string
  readonly type: FunctionType
}

export const sameFunctionType = (a: FunctionType, b: FunctionType): boolean =>
  a.params.length === b.params.length && a.results.length === b.results.length &&
  a.params.every((t, i) => t === b.params[i]) && a.results.every((t, i) => t === b.results[i])

/**
 * The types of the functions a module imports (in order) and exports (by name); undefined when
 * the binary uses a form the reader does not know.
 */
export const functionTypes = (
  bytes: Uint8Array
): { readonly imports: ReadonlyArray<FunctionImport>; readonly exports: ReadonlyMap<string, FunctionType> } | undefined => {
  try {
    const sections = sectionsOf(bytes)
    const read = <A>(id: number, f: (r: Reader) => A): A | undefined => {
      const section = sections.find((s) => s.id === id)
      return section === undefined ? undefined : f(readerOf(bytes, section))
    }
    const types = read(SectionId.type, readTypeSection) ?? []
    const imported = (read(SectionId.import, readImportSection) ?? [])
      .filter((i): i is Extract<Import, { kind: typeof ExternalKind.function }> => i.kind === ExternalKind.function)
    // The type index of each function, imports first, as function indices count them.
    const functions = [...imported.map((i) => i.typeIndex), ...(read(SectionId.function, readFunctionSection) ?? [])]
    const exported = (read(SectionId.export, readExportSection) ?? []).filter((e) => e.kind === ExternalKind.function)
    const typeOf = (typeIndex: number | undefined): FunctionType => {
      const type = typeIndex === undefined ? undefined : types[typeIndex]
      // A struct or array type, or an index past the types: "cannot tell".
      if (type === undefined) throw new MalformedWasm("a function of no known type")
      return type
    }
    return {
      imports: imported.map(({ module, name, typeIndex }) => ({ module, name, type: typeOf(typeIndex) })),
      exports: new Map(exported.map(({ name, index }) => [name, typeOf(functions[index])] as const))
    }
  } catch (e) {
    if (e instanceof MalformedWasm) return undefined
    throw e
  }
}
