/**
 * @runsc/netstack: sockets inside the sandbox, at the level of connections (Node gives us no
 * tap device, so there are no packets): the network namespace a Loader gives its kernel.
 */
export { formatAddress } from "./address.js"
export { makeLoopbackNetwork } from "./network.js"
export { type PublishedPort, publishPort, PublishFailed } from "./publish.js"
