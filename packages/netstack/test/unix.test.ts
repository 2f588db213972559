/**
 * Unix sockets as a guest's calls see them: abstract names, path names (whose files the kernel
 * makes and finds: here a map stands in for the filesystem), socketpair, and Linux's errors.
 */
import { assert, describe, it } from "@effect/vitest"
import { Errno } from "@runsc/abi"
import { MemoryAccount, type SocketAddress, type SocketDescription, type SyscallError } from "@runsc/kernel"
import { DATAGRAM_OVERHEAD, makeLoopbackNetwork, SOCKET_HEAP } from "@runsc/netstack"
import { Effect, Fiber } from "effect"

const text = (s: string) => new TextEncoder().encode(s)
const decode = (b: Uint8Array) => new TextDecoder().decode(b)
const errnoOf = <A>(effect: Effect.Effect<A, SyscallError>) => Effect.map(Effect.flip(effect), (e) => e.errno)
const abstract = (name: string): SocketAddress => ({ family: "unix", path: `\0${name}` })
const recv = (s: SocketDescription, n: number, nonBlocking = false) =>
  Effect.map(s.socket.receive(n, { peek: false, waitAll: false, nonBlocking }), (r) => r.data)

const setup = () => {
  const memory = new MemoryAccount(64 * 1024 * 1024)
  const network = makeLoopbackNetwork()
  const open = (kind: "stream" | "dgram" = "stream") => network.open("unix", kind, { memory })
  // The filesystem, as the kernel serves it: bind makes a file naming the socket, connect finds it.
  const files = new Map<string, object>()
  const toBind = (path: string): SocketAddress => ({
    family: "unix",
    path,
    makeNode: (socket) =>
      Effect.suspend(() => {
        if (files.has(path)) return Effect.fail({ errno: Errno.ADDRINUSE } as SyscallError)
        files.set(path, socket)
        return Effect.void
      })
  })
  const toReach = (path: string): SocketAddress => ({ family: "unix", path, boundSocket: files.get(path) ?? null })
  return { memory, network, open, files, toBind, toReach }
}

describe("Unix stream sockets", () => {
  it.effect("an abstract name: listen, connect, accept, both directions; the client is unnamed; the name is free once closed", () =>
    Effect.gen(function*() {
      const net = setup()
      const server = yield* net.open()
      yield* server.socket.bind(abstract("svc"))
      yield* server.socket.listen(8)
      const client = yield* net.open()
      yield* client.socket.connect(abstract("svc"), false)
      const { socket: accepted, peer } = yield* server.socket.accept(false)
      assert.deepStrictEqual(peer, { family: "unix", path: "" })
      assert.deepStrictEqual(yield* client.socket.localAddress, { family: "unix", path: "" })
      assert.deepStrictEqual(yield* client.socket.peerAddress, abstract("svc"))
      assert.deepStrictEqual(yield* accepted.socket.localAddress, abstract("svc"))
      yield* client.socket.send(text("ping"), { nonBlocking: false })
      assert.strictEqual(decode(yield* recv(accepted, 10)), "ping")
      yield* accepted.socket.send(text("pong"), { nonBlocking: false })
      assert.strictEqual(decode(yield* recv(client, 10)), "pong")
      const rival = yield* net.open()
      assert.strictEqual(yield* errnoOf(rival.socket.bind(abstract("svc"))), Errno.ADDRINUSE)
      yield* server.close
      yield* rival.socket.bind(abstract("svc"))
      yield* Effect.all([accepted.close, client.close, rival.close])
      assert.strictEqual(net.memory.used, 0)
    }))

  it.effect("a path: its file reaches the socket while it is open, refuses once it is closed, and is the other kind's EPROTOTYPE", () =>
    Effect.gen(function*() {
      const net = setup()
      const server = yield* net.open()
      yield* server.socket.bind(net.toBind("/run/app.sock"))
      assert.deepStrictEqual(yield* server.socket.localAddress, { family: "unix", path: "/run/app.sock" })
      // Bound but not listening: refused.
      const early = yield* net.open()
      assert.strictEqual(yield* errnoOf(early.socket.connect(net.toReach("/run/app.sock"), false)), Errno.CONNREFUSED)
      yield* server.socket.listen(8)
      const client = yield* net.open()
      yield* client.socket.connect(net.toReach("/run/app.sock"), false)
      assert.strictEqual((yield* server.socket.accept(false)).peer.family, "unix")
      // A name taken: the file exists.
      const rival = yield* net.open()
      assert.strictEqual(yield* errnoOf(rival.socket.bind(net.toBind("/run/app.sock"))), Errno.ADDRINUSE)
      // A datagram socket's file, connected to by a stream socket.
      const dgram = yield* net.open("dgram")
      yield* dgram.socket.bind(net.toBind("/run/dgram.sock"))
      assert.strictEqual(yield* errnoOf(rival.socket.connect(net.toReach("/run/dgram.sock"), false)), Errno.PROTOTYPE)
      // A file no socket made (or a socket gone): refused.
      assert.strictEqual(yield* errnoOf(rival.socket.connect({ family: "unix", path: "/etc/passwd", boundSocket: null }, false)), Errno.CONNREFUSED)
      yield* server.close
      assert.strictEqual(yield* errnoOf(rival.socket.connect(net.toReach("/run/app.sock"), false)), Errno.CONNREFUSED)
      // Without the kernel's resolution a path cannot be bound.
      assert.strictEqual(yield* errnoOf(rival.socket.bind({ family: "unix", path: "/x" })), Errno.INVAL)
    }))

  it.effect("errors as Linux gives them: listen unbound, an empty name autobinds, socketpair only for Unix", () =>
    Effect.gen(function*() {
      const net = setup()
      const lone = yield* net.open()
      assert.strictEqual(yield* errnoOf(lone.socket.listen(1)), Errno.INVAL)
      yield* lone.socket.bind({ family: "unix", path: "" })
      const name = yield* lone.socket.localAddress
      assert.match((name as { path: string }).path, /^\0[0-9a-f]{5}$/)
      yield* lone.socket.listen(1)
      const client = yield* net.open()
      yield* client.socket.connect(name, false)
      assert.strictEqual(yield* errnoOf(client.socket.connect(abstract("nobody"), false)), Errno.ISCONN)
      const other = yield* net.open()
      assert.strictEqual(yield* errnoOf(other.socket.connect(abstract("nobody"), false)), Errno.CONNREFUSED)
      assert.strictEqual(yield* errnoOf(net.network.pair("inet4", "stream", { memory: net.memory })), Errno.NOTSUP)
    }))

  it.effect("socketpair: two connected, unnamed ends; a never-reading end stops the writer at its buffer", () =>
    Effect.gen(function*() {
      const net = setup()
      const [a, b] = yield* net.network.pair("unix", "stream", { memory: net.memory })
      assert.deepStrictEqual(yield* a.socket.peerAddress, { family: "unix", path: "" })
      yield* a.socket.send(text("hello"), { nonBlocking: false })
      assert.strictEqual(decode(yield* recv(b, 10)), "hello")
      // b never reads: a's non-blocking sends stop when b's buffer is full.
      let sent = 0
      for (;;) {
        const n = yield* Effect.either(a.socket.send(new Uint8Array(65536), { nonBlocking: true }))
        if (n._tag === "Left") {
          assert.strictEqual(n.left.errno, Errno.AGAIN)
          break
        }
        sent += n.right
      }
      assert.isAtMost(sent, 256 * 1024)
      yield* b.close
      assert.strictEqual(yield* errnoOf(a.socket.send(text("x"), { nonBlocking: false })), Errno.PIPE)
      yield* a.close
      assert.strictEqual(net.memory.used, 0)
    }))
})

describe("Unix datagram sockets", () => {
  it.effect("reliable: refused where nobody holds the name; a full receiver makes the sender wait (EAGAIN when non-blocking)", () =>
    Effect.gen(function*() {
      const net = setup()
      const receiver = yield* net.open("dgram")
      yield* receiver.socket.bind(abstract("log"))
      yield* receiver.socket.setSize("receiveBuffer", 4096) // 8 KiB: Linux doubles it
      const sender = yield* net.open("dgram")
      assert.strictEqual(yield* errnoOf(sender.socket.send(text("x"), { nonBlocking: false, to: abstract("none") })), Errno.CONNREFUSED)
      assert.strictEqual(yield* errnoOf(sender.socket.send(text("x"), { nonBlocking: false })), Errno.NOTCONN)
      const datagram = new Uint8Array(3000)
      let queued = 0
      while ((yield* Effect.either(sender.socket.send(datagram, { nonBlocking: true, to: abstract("log") })))._tag === "Right") queued++
      assert.strictEqual(queued, 2, "two fit in 8 KiB with their overhead")
      assert.strictEqual(net.memory.used, 2 * SOCKET_HEAP + 2 * (3000 + DATAGRAM_OVERHEAD), "the two sockets and the two datagrams")
      // A blocking send waits until the receiver reads.
      const waiting = yield* Effect.fork(sender.socket.send(datagram, { nonBlocking: false, to: abstract("log") }))
      yield* Effect.yieldNow()
      assert.isNull(yield* Fiber.poll(waiting).pipe(Effect.map((o) => (o._tag === "Some" ? o.value : null))))
      const got = yield* receiver.socket.receive(5000, { peek: false, waitAll: false, nonBlocking: true })
      assert.strictEqual(got.data.length, 3000)
      assert.deepStrictEqual(got.from, { family: "unix", path: "" }, "an unbound sender is unnamed")
      assert.strictEqual(yield* Fiber.join(waiting), 3000)
      // Closed: a waiting or later send is refused.
      yield* receiver.close
      assert.strictEqual(yield* errnoOf(sender.socket.send(datagram, { nonBlocking: false, to: abstract("log") })), Errno.CONNREFUSED)
      yield* sender.close
      assert.strictEqual(net.memory.used, 0)
    }))

  it.effect("connected: the default destination; a socket connected to another takes no one else's datagrams (EPERM)", () =>
    Effect.gen(function*() {
      const net = setup()
      const a = yield* net.open("dgram")
      yield* a.socket.bind(net.toBind("/tmp/a"))
      const b = yield* net.open("dgram")
      yield* b.socket.bind(net.toBind("/tmp/b"))
      yield* a.socket.connect(net.toReach("/tmp/b"), false)
      yield* b.socket.connect(net.toReach("/tmp/a"), false)
      yield* a.socket.send(text("to b"), { nonBlocking: false })
      const got = yield* b.socket.receive(100, { peek: false, waitAll: false, nonBlocking: true })
      assert.strictEqual(decode(got.data), "to b")
      assert.deepStrictEqual(got.from, { family: "unix", path: "/tmp/a" })
      const stranger = yield* net.open("dgram")
      assert.strictEqual(yield* errnoOf(stranger.socket.send(text("x"), { nonBlocking: false, to: net.toReach("/tmp/b") })), Errno.PERM)
      yield* b.close
      assert.strictEqual(yield* errnoOf(a.socket.send(text("x"), { nonBlocking: false })), Errno.CONNREFUSED)
    }))

  it.effect("socketpair of datagram sockets: each end the other's peer, whole datagrams both ways", () =>
    Effect.gen(function*() {
      const net = setup()
      const [a, b] = yield* net.network.pair("unix", "dgram", { memory: net.memory })
      yield* a.socket.send(text("one"), { nonBlocking: false })
      yield* a.socket.send(text("two"), { nonBlocking: false })
      assert.strictEqual(decode(yield* recv(b, 100)), "one")
      assert.strictEqual(decode(yield* recv(b, 100)), "two")
      yield* b.socket.send(text("back"), { nonBlocking: false })
      assert.strictEqual(decode(yield* recv(a, 100)), "back")
      assert.isTrue(a.readiness!.ready("write"))
    }))

  it.effect("a datagram larger than the receiver's buffer goes into its empty queue whole, as Linux's does; the next waits for room", () =>
    Effect.gen(function*() {
      const net = setup()
      const [a, b] = yield* net.network.pair("unix", "dgram", { memory: net.memory })
      yield* a.socket.setSize("sendBuffer", 100_000)
      assert.strictEqual(yield* a.socket.send(new Uint8Array(150_000), { nonBlocking: false }), 150_000)
      assert.strictEqual(yield* errnoOf(a.socket.send(new Uint8Array(10), { nonBlocking: true })), Errno.AGAIN)
      assert.strictEqual((yield* recv(b, 200_000)).length, 150_000)
      yield* b.socket.setSize("receiveBuffer", 2048)
      assert.strictEqual(yield* a.socket.send(new Uint8Array(9000), { nonBlocking: true }), 9000)
    }))

  it.effect("EPERM is checked at every try: a receiver that connects elsewhere while a sender waits refuses it; a connect to a socket connected to another is EPERM; a gone peer is refused once, then ENOTCONN", () =>
    Effect.gen(function*() {
      const net = setup()
      const receiver = yield* net.open("dgram")
      yield* receiver.socket.bind(abstract("r"))
      yield* receiver.socket.setSize("receiveBuffer", 2048)
      const sender = yield* net.open("dgram")
      yield* sender.socket.bind(abstract("s"))
      const other = yield* net.open("dgram")
      yield* other.socket.bind(abstract("o"))
      yield* sender.socket.send(new Uint8Array(5000), { nonBlocking: false, to: abstract("r") })
      const waiting = yield* Effect.fork(Effect.flip(sender.socket.send(new Uint8Array(10), { nonBlocking: false, to: abstract("r") })))
      yield* Effect.yieldNow()
      yield* receiver.socket.connect(abstract("o"), false)
      yield* recv(receiver, 6000)
      assert.strictEqual((yield* Fiber.join(waiting)).errno, Errno.PERM)
      const third = yield* net.open("dgram")
      assert.strictEqual(yield* errnoOf(third.socket.connect(abstract("r"), false)), Errno.PERM)
      // other's peer: receiver; once receiver is gone, other's first send is refused, the next not connected.
      yield* other.socket.connect(abstract("r"), false)
      yield* receiver.close
      assert.strictEqual(yield* errnoOf(other.socket.send(text("x"), { nonBlocking: false })), Errno.CONNREFUSED)
      assert.strictEqual(yield* errnoOf(other.socket.send(text("x"), { nonBlocking: false })), Errno.NOTCONN)
    }))

  it.effect("a Unix stream's SHUT_RD: its peer's sends fail EPIPE; what was queued is still read, then 0", () =>
    Effect.gen(function*() {
      const net = setup()
      const [a, b] = yield* net.network.pair("unix", "stream", { memory: net.memory })
      yield* a.socket.send(text("queued"), { nonBlocking: false })
      yield* b.socket.shutdown(true, false)
      assert.strictEqual(yield* errnoOf(a.socket.send(text("more"), { nonBlocking: false })), Errno.PIPE)
      assert.isTrue(a.readiness!.ready("write"), "writable: the send would not wait")
      assert.strictEqual(decode(yield* recv(b, 100)), "queued")
      assert.strictEqual((yield* recv(b, 100)).length, 0)
    }))
})
