export { call, connect, ControlTimeout, type SandboxClient, SandboxUnreachable } from "./client.js"
export {
  ContainerStatsSchema,
  ExitStatusSchema,
  ForwardFailed,
  ProcessInfoSchema,
  RELAY_PREFIX,
  SandboxRpcs,
  SignalModeSchema,
  type StdioPaths,
  StdioPaths as StdioPathsSchema,
  StdioUnavailable
} from "./protocol.js"
export { donationSocketOf, MAX_FRAME_BYTES, MAX_SOCKET_PATH, prepareSocketPath, serveControl, SocketInUse, SocketPathInvalid } from "./server.js"
