/**
 * Published ports: host connections bridged to a guest listener on the loopback, both ways,
 * half-close included; none to a port nobody listens on; a host client that never reads holds
 * the guest's writes back (the guest's memory is not its buffer); the port is the host's again
 * once the scope ends.
 */
import { assert, describe, it } from "@effect/vitest"
import { MemoryAccount, type SocketDescription } from "@runsc/kernel"
import { makeLoopbackNetwork, publishPort } from "@runsc/netstack"
import { Effect, Exit, Fiber, Scope } from "effect"
import * as Net from "node:net"
import { freePort, hostClient } from "./hostPeers.js"

const localhost = (port: number) => ({ family: "inet4" as const, address: new Uint8Array([127, 0, 0, 1]), port })

/** Everything the guest side reads until the host's end. */
const readAll = (socket: SocketDescription) =>
  Effect.gen(function*() {
    let text = ""
    for (;;) {
      const { data } = yield* socket.socket.receive(4096, { peek: false, waitAll: false, nonBlocking: false })
      if (data.length === 0) return text
      text += new TextDecoder().decode(data)
    }
  })

describe("published ports", () => {
  it.scopedLive("bridge host connections to a guest listener both ways; refuse them while nobody listens; free the host port at the end", () =>
    Effect.gen(function*() {
      const memory = new MemoryAccount(1 << 30)
      const network = makeLoopbackNetwork()
      const hostPort = yield* freePort
      const scope = yield* Scope.make()
      yield* publishPort(network, { hostAddress: "127.0.0.1", hostPort, guestPort: 8080 }, { memory }).pipe(Scope.extend(scope))
      // Nobody listens in the guest yet: the host connection is closed at once, with nothing.
      assert.strictEqual(yield* hostClient(hostPort, "anyone?"), "")
      const listener = yield* network.open("inet4", "stream", { memory })
      yield* listener.socket.bind(localhost(8080))
      yield* listener.socket.listen(4)
      const client = yield* Effect.fork(hostClient(hostPort, "hello"))
      const { peer, socket } = yield* listener.socket.accept(false)
      assert.deepStrictEqual((peer as { address: Uint8Array }).address, new Uint8Array([127, 0, 0, 1]), "from the loopback")
      // The host's half-close reaches the guest as the end of what it reads; the guest answers.
      assert.strictEqual(yield* readAll(socket), "hello")
      yield* socket.socket.send(new TextEncoder().encode("echo:hello"), { nonBlocking: false })
      yield* socket.close
      assert.strictEqual(yield* Fiber.join(client), "echo:hello")
      yield* Scope.close(scope, Exit.void)
      // The host port is free again.
      yield* Effect.async<void, Error>((resume) => {
        const server = Net.createServer()
        server.once("error", (e) => resume(Effect.fail(e)))
        server.listen(hostPort, "127.0.0.1", () => server.close(() => resume(Effect.void)))
      })
      yield* listener.close
      assert.strictEqual(memory.used, 0, "every bridged connection's buffers given back")
    }))

  it.scopedLive("a host client that never reads holds the guest's sends back: the guest waits, and nothing grows without bound", () =>
    Effect.gen(function*() {
      const memory = new MemoryAccount(1 << 30)
      const network = makeLoopbackNetwork()
      const hostPort = yield* freePort
      yield* publishPort(network, { hostAddress: "127.0.0.1", hostPort, guestPort: 9090 }, { memory })
      const listener = yield* network.open("inet4", "stream", { memory })
      yield* listener.socket.bind(localhost(9090))
      yield* listener.socket.listen(4)
      const host = Net.connect({ port: hostPort, host: "127.0.0.1" })
      host.pause()
      yield* Effect.addFinalizer(() => Effect.sync(() => host.destroy()))
      const { socket } = yield* listener.socket.accept(false)
      const chunk = new Uint8Array(64 * 1024)
      let sent = 0
      const writer = yield* Effect.fork(Effect.forever(Effect.map(socket.socket.send(chunk, { nonBlocking: false }), (n) => void (sent += n))))
      yield* Effect.sleep("500 millis")
      const held = sent
      yield* Effect.sleep("300 millis")
      // Bounded by the guest connection's buffer, Node's socket buffer and the host's socket buffers.
      assert.strictEqual(sent, held, "the guest waits once everything between is full")
      assert.isBelow(sent, 64 * 1024 * 1024)
      yield* Fiber.interrupt(writer)
    }))
})
