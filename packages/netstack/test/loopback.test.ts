/**
 * The loopback stack as a guest's calls see it: connections, their errors, half-close,
 * backpressure against the owner's memory, and poll readiness.
 */
import { assert, describe, it } from "@effect/vitest"
import { Errno } from "@runsc/abi"
import { MemoryAccount, type SocketAddress, type SocketDescription, type SyscallError } from "@runsc/kernel"
import { CONNECTION_HEAP, DATAGRAM_OVERHEAD, makeLoopbackNetwork, SOCKET_HEAP } from "@runsc/netstack"
import { Effect, Fiber } from "effect"

const v4 = (a: number, b: number, c: number, d: number, port: number): SocketAddress => ({ family: "inet4", address: new Uint8Array([a, b, c, d]), port })
const localhost = (port: number) => v4(127, 0, 0, 1, port)
const text = (s: string) => new TextEncoder().encode(s)
const decode = (b: Uint8Array) => new TextDecoder().decode(b)
const errnoOf = <A>(effect: Effect.Effect<A, SyscallError>) => Effect.map(Effect.flip(effect), (e) => e.errno)

const setup = (memoryBytes = 64 * 1024 * 1024) => {
  const memory = new MemoryAccount(memoryBytes)
  const network = makeLoopbackNetwork()
  const open = (family: "inet4" | "inet6" = "inet4") => network.open(family, "stream", { memory })
  const listening = (port: number, backlog = 16) =>
    Effect.gen(function*() {
      const server = yield* open()
      yield* server.socket.bind(localhost(port))
      yield* server.socket.listen(backlog)
      return server
    })
  const connected = (port: number) =>
    Effect.gen(function*() {
      const client = yield* open()
      yield* client.socket.connect(localhost(port), false)
      return client
    })
  return { memory, network, open, listening, connected }
}

const recv = (s: SocketDescription, n: number, nonBlocking = false) =>
  Effect.map(s.socket.receive(n, { peek: false, waitAll: false, nonBlocking }), (r) => r.data)

describe("loopback stream sockets", () => {
  it.effect("connect, accept, both directions, addresses, half-close, close", () =>
    Effect.gen(function*() {
      const net = setup()
      const server = yield* net.listening(8080)
      const client = yield* net.connected(8080)
      const { socket: accepted, peer } = yield* server.socket.accept(false)
      const clientLocal = yield* client.socket.localAddress
      assert.deepStrictEqual(peer, clientLocal)
      assert.deepStrictEqual(yield* accepted.socket.peerAddress, clientLocal)
      assert.deepStrictEqual(yield* client.socket.peerAddress, localhost(8080))
      assert.isAtLeast((clientLocal as { port: number }).port, 32768, "an ephemeral port")
      assert.strictEqual(yield* client.socket.send(text("ping"), { nonBlocking: false }), 4)
      assert.strictEqual(decode(yield* recv(accepted, 100)), "ping")
      yield* accepted.socket.send(text("pong"), { nonBlocking: false })
      assert.strictEqual(decode(yield* recv(client, 100)), "pong")
      // The client's SHUT_WR: the server reads what was sent, then 0; it can still answer.
      yield* client.socket.send(text("last"), { nonBlocking: false })
      yield* client.socket.shutdown(false, true)
      assert.strictEqual(yield* errnoOf(client.socket.send(text("x"), { nonBlocking: false })), Errno.PIPE)
      assert.strictEqual(decode(yield* recv(accepted, 100)), "last")
      assert.strictEqual((yield* recv(accepted, 100)).length, 0)
      yield* accepted.socket.send(text("bye"), { nonBlocking: false })
      assert.strictEqual(decode(yield* recv(client, 100)), "bye")
      // Closed: the peer reads its end, and its sends fail EPIPE.
      yield* accepted.close
      assert.strictEqual((yield* recv(client, 100)).length, 0)
      yield* client.close
      yield* server.close
    }))

  it.effect("errors as Linux gives them: refused, in use, not connected, already connected, no route, bad family", () =>
    Effect.gen(function*() {
      const net = setup()
      const lone = yield* net.open()
      assert.strictEqual(yield* errnoOf(lone.socket.connect(localhost(9), false)), Errno.CONNREFUSED)
      assert.strictEqual(yield* errnoOf(lone.socket.send(text("x"), { nonBlocking: false })), Errno.NOTCONN)
      assert.strictEqual(yield* errnoOf(lone.socket.peerAddress), Errno.NOTCONN)
      assert.strictEqual(yield* errnoOf(lone.socket.accept(false)), Errno.INVAL)
      assert.strictEqual(yield* errnoOf(lone.socket.connect(v4(10, 0, 0, 1, 80), false)), Errno.NETUNREACH)
      assert.strictEqual(yield* errnoOf(lone.socket.bind(v4(10, 0, 0, 1, 80))), Errno.ADDRNOTAVAIL)
      const server = yield* net.listening(80)
      const other = yield* net.open()
      assert.strictEqual(yield* errnoOf(other.socket.bind(localhost(80))), Errno.ADDRINUSE)
      assert.strictEqual(yield* errnoOf(other.socket.bind(v4(0, 0, 0, 0, 80))), Errno.ADDRINUSE, "the wildcard covers it")
      // Another loopback address is another address.
      yield* other.socket.bind(v4(127, 0, 0, 2, 80))
      const client = yield* net.connected(80)
      assert.strictEqual(yield* errnoOf(client.socket.connect(localhost(80), false)), Errno.ISCONN)
      // 0.0.0.0 reaches the loopback.
      const viaWildcard = yield* net.open()
      yield* viaWildcard.socket.connect(v4(0, 0, 0, 0, 80), false)
      // A closed listener's port is free again, and its pending connections are reset.
      yield* server.close
      assert.strictEqual((yield* recv(client, 10)).length, 0)
      assert.strictEqual(yield* errnoOf(net.open().pipe(Effect.flatMap((s) => s.socket.connect(localhost(80), false)))), Errno.CONNREFUSED)
      const again = yield* net.listening(80)
      yield* again.close
      const v6 = yield* net.open("inet6")
      assert.strictEqual(yield* errnoOf(v6.socket.bind(localhost(1))), Errno.AFNOSUPPORT)
      const unix = yield* net.network.open("unix", "stream", { memory: net.memory })
      assert.strictEqual(yield* errnoOf(unix.socket.bind(localhost(1))), Errno.AFNOSUPPORT)
      assert.strictEqual(yield* errnoOf(unix.socket.connect(localhost(80), false)), Errno.AFNOSUPPORT)
    }))

  it.effect("SO_REUSEADDR lets a second socket bind a port no one listens on; an IPv6 wildcard listener takes IPv4 connections unless V6ONLY", () =>
    Effect.gen(function*() {
      const net = setup()
      const a = yield* net.open()
      const b = yield* net.open()
      yield* a.socket.setFlag("reuseAddress", true)
      yield* b.socket.setFlag("reuseAddress", true)
      yield* a.socket.bind(localhost(7000))
      yield* b.socket.bind(localhost(7000))
      yield* a.socket.listen(1)
      assert.strictEqual(yield* errnoOf(b.socket.listen(1)), Errno.ADDRINUSE)
      const dual = yield* net.open("inet6")
      yield* dual.socket.bind({ family: "inet6", address: new Uint8Array(16), port: 7001 })
      yield* dual.socket.listen(4)
      const client = yield* net.connected(7001)
      const { peer, socket } = yield* dual.socket.accept(false)
      assert.strictEqual(peer.family, "inet6")
      assert.deepStrictEqual([...(peer as { address: Uint8Array }).address.slice(10)], [0xff, 0xff, 127, 0, 0, 1], "v4-mapped")
      yield* socket.close
      yield* client.close
    }))

  it.effect("backpressure: a sender fills the receiver's buffer and then waits (or EAGAIN); buffers are charged to the owner's memory and given back at close; a full memory refuses connections ENOBUFS", () =>
    Effect.gen(function*() {
      const net = setup()
      const server = yield* net.listening(5000)
      const client = yield* net.connected(5000)
      const { socket: accepted } = yield* server.socket.accept(false)
      const charged = net.memory.used
      assert.strictEqual(charged, 2 * (128 * 1024 + CONNECTION_HEAP) + 3 * SOCKET_HEAP, "each end's receive buffer and queue, and the three sockets")
      assert.strictEqual(net.memory.heapUsed, 2 * CONNECTION_HEAP + 3 * SOCKET_HEAP)
      const big = new Uint8Array(1024 * 1024)
      assert.strictEqual(yield* client.socket.send(big, { nonBlocking: true }), 128 * 1024, "a non-blocking send takes what fits")
      assert.strictEqual(yield* errnoOf(client.socket.send(big, { nonBlocking: true })), Errno.AGAIN)
      assert.isFalse(client.readiness!.ready("write"))
      const writer = yield* Effect.fork(client.socket.send(big, { nonBlocking: false }))
      let received = 0
      while (received < 128 * 1024 + big.length) received += (yield* recv(accepted, 65536)).length
      assert.strictEqual(yield* Fiber.join(writer), big.length)
      yield* accepted.close
      yield* client.close
      assert.strictEqual(net.memory.used, SOCKET_HEAP, "given back, but for the listener")
      yield* server.close
      assert.strictEqual(net.memory.used, 0)
      const small = setup(200 * 1024)
      yield* small.listening(6000)
      assert.strictEqual(yield* errnoOf(small.connected(6000)), Errno.NOBUFS)
      assert.strictEqual(small.memory.used, 2 * SOCKET_HEAP, "no connection: the listener and the client socket alone")
    }))

  it.effect("backlog and readiness: a listener is readable while a connection waits; a full backlog makes a connect wait (EAGAIN non-blocking) until an accept makes room", () =>
    Effect.gen(function*() {
      const net = setup()
      const server = yield* net.listening(4000, 1)
      assert.isFalse(server.readiness!.ready("read"))
      assert.strictEqual(yield* errnoOf(server.socket.accept(true)), Errno.AGAIN)
      yield* net.connected(4000)
      assert.isTrue(server.readiness!.ready("read"))
      const second = yield* net.open()
      assert.strictEqual(yield* errnoOf(second.socket.connect(localhost(4000), true)), Errno.AGAIN)
      const connecting = yield* Effect.fork(second.socket.connect(localhost(4000), false))
      yield* server.socket.accept(false)
      yield* Fiber.join(connecting)
      const { socket } = yield* server.socket.accept(false)
      assert.isFalse(socket.readiness!.ready("read"))
      assert.isTrue(socket.readiness!.ready("write"))
      yield* second.socket.send(text("hi"), { nonBlocking: false })
      assert.isTrue(socket.readiness!.ready("read"))
    }))

  it.effect("datagrams: whole or not at all; queued ones are charged (bytes and overhead) to the receiver's owner until read; past its buffer they are dropped, as UDP's are", () =>
    Effect.gen(function*() {
      const memory = new MemoryAccount(64 * 1024 * 1024)
      const network = makeLoopbackNetwork()
      const receiver = yield* network.open("inet4", "dgram", { memory })
      const sender = yield* network.open("inet4", "dgram", { memory })
      yield* receiver.socket.bind(localhost(53))
      yield* receiver.socket.setSize("receiveBuffer", 8192) // 16 KiB: Linux doubles it
      const datagram = new Uint8Array(4000)
      for (let i = 0; i < 10; i++) assert.strictEqual(yield* sender.socket.send(datagram, { nonBlocking: false, to: localhost(53) }), 4000)
      const cost = 4000 + DATAGRAM_OVERHEAD
      const sockets = 2 * SOCKET_HEAP
      assert.strictEqual(memory.used, sockets + 3 * cost, "three fit in 16 KiB with their overhead; the other seven were dropped")
      const first = yield* receiver.socket.receive(100, { peek: false, waitAll: false, nonBlocking: true })
      assert.strictEqual(first.data.length, 100)
      assert.isTrue(first.truncated)
      assert.deepStrictEqual(first.from, yield* sender.socket.localAddress.pipe(Effect.map((a) => ({ ...a, address: new Uint8Array([127, 0, 0, 1]) }))))
      assert.strictEqual(memory.used, sockets + 2 * cost)
      // Empty datagrams cost their overhead: a flood of them is bounded by the buffer too.
      for (let i = 0; i < 10_000; i++) yield* sender.socket.send(new Uint8Array(0), { nonBlocking: false, to: localhost(53) })
      assert.isAtMost(memory.used, sockets + 16384)
      yield* receiver.close
      assert.strictEqual(memory.used, SOCKET_HEAP, "a closed socket's queue is given back (and its own charge)")
      assert.strictEqual(yield* errnoOf(sender.socket.send(new Uint8Array(70_000), { nonBlocking: false, to: localhost(53) })), Errno.MSGSIZE)
      assert.strictEqual(yield* errnoOf(sender.socket.send(datagram, { nonBlocking: false })), Errno.DESTADDRREQ)
      // UDP and TCP ports are separate spaces.
      const tcp = yield* network.open("inet4", "stream", { memory })
      yield* tcp.socket.bind(localhost(53))
    }))

  it.effect("pending connections count against the heap share: past it a connect is ENOBUFS, and a listener's close gives all of it back", () =>
    Effect.gen(function*() {
      const network = makeLoopbackNetwork()
      // Memory to spare; heap for the listener, and 10 connections (a client socket closed at once, a pending endpoint and its queue).
      const memory = new MemoryAccount(1024 * 1024 * 1024, undefined, SOCKET_HEAP + 10 * (2 * SOCKET_HEAP + CONNECTION_HEAP))
      const listener = yield* network.open("inet4", "stream", { memory })
      yield* listener.socket.bind(localhost(9000))
      yield* listener.socket.listen(4096)
      let pending = 0
      for (;;) {
        const client = yield* Effect.either(network.open("inet4", "stream", { memory }))
        if (client._tag === "Left") break
        const connected = yield* Effect.either(client.right.socket.connect(localhost(9000), false))
        yield* client.right.close
        if (connected._tag === "Left") {
          assert.strictEqual(connected.left.errno, Errno.NOBUFS)
          break
        }
        pending++
      }
      assert.isAtLeast(pending, 10)
      assert.isAtMost(memory.heapUsed, SOCKET_HEAP + 10 * (2 * SOCKET_HEAP + CONNECTION_HEAP))
      yield* listener.close
      assert.strictEqual(memory.used, 0)
      assert.strictEqual(memory.heapUsed, 0)
    }))

  it.scoped("queued datagrams count against the heap share: past it more are dropped, across any number of receivers", () =>
    Effect.gen(function*() {
      const network = makeLoopbackNetwork()
      // Memory to spare; room on the heap for the 11 sockets and 100 datagrams' records.
      const sockets = 11 * SOCKET_HEAP
      const memory = new MemoryAccount(1024 * 1024 * 1024, undefined, sockets + 100 * DATAGRAM_OVERHEAD)
      const sender = yield* network.open("inet4", "dgram", { memory })
      for (let r = 0; r < 10; r++) yield* (yield* network.open("inet4", "dgram", { memory })).socket.bind(localhost(1000 + r))
      for (let r = 0; r < 10; r++) {
        for (let i = 0; i < 50; i++) yield* sender.socket.send(new Uint8Array(1), { nonBlocking: false, to: localhost(1000 + r) })
      }
      assert.strictEqual(memory.heapUsed, sockets + 100 * DATAGRAM_OVERHEAD)
      assert.strictEqual(memory.used, sockets + 100 * (1 + DATAGRAM_OVERHEAD), "the sockets, and the 100 that fit: their bytes and their records")
      // The share is full: a new socket is refused too (socket(2)'s ENOBUFS).
      assert.strictEqual(yield* errnoOf(network.open("inet4", "dgram", { memory })), Errno.NOBUFS)
    }))
})
