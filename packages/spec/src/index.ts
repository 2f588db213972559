/**
 * @runsc/spec: the OCI runtime-spec as Effect Schema, bundle loading with errors that name the
 * JSON path, and the spec helpers the kernel, loader and CLI share.
 */
export * from "./bundle.js"
export * from "./containerId.js"
export * from "./defaults.js"
export * from "./env.js"
export * from "./errors.js"
export * from "./namespaces.js"
export * from "./regularFile.js"
export * from "./schema.js"
