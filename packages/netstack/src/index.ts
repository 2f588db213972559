/**
 * @runsc/netstack: sockets inside the sandbox, at the level of connections (Node gives us no
 * tap device, so there are no packets): the network namespace a Loader gives its kernel.
 */
export { type EgressOptions, HOST_LOOPBACK_GATEWAY, MAX_HOST_SOCKETS, MAX_LOOKUPS } from "./egress.js"
export { DATAGRAM_OVERHEAD } from "./datagram.js"
export { CONNECTION_HEAP, SOCKET_HEAP } from "./heap.js"
export { listenOn, makeHostNetwork, makeLoopbackNetwork, makeSandboxNetwork } from "./network.js"
export type { StreamRoutes } from "./stream.js"
export { type PublishedPort, publishPort, PublishFailed } from "./publish.js"
