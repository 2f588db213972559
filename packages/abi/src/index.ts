export * from "./errno.js"
export * from "./exitStatus.js"
export * from "./signals.js"
export * from "./wasi.js"
