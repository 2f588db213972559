export * from "./errors.js"
export { type HostSignalOptions, handleHostSignals } from "./hostSignals.js"
export { Loader, type LoaderArgs, type LoaderShape, type ProcessInfo, type StartError } from "./loader.js"
