export { Container, type ContainerState, type CreatedWith } from "./container.js"
export * from "./errors.js"
export { handleHostSignals, type HostSignalOptions } from "./hostSignals.js"
export { type LaunchError, type Stdio } from "./launch.js"
export {
  type ContainerStats,
  type ExecArgs,
  Loader,
  type LoaderArgs,
  type LoaderShape,
  type ProcessInfo,
  type RuntimeState,
  type SignalMode,
  type StartError,
  type SubcontainerArgs
} from "./loader.js"
