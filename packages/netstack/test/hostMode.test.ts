/**
 * --network=host: a guest's listener is on the host too, a connect the sandbox's listeners do
 * not take reaches the host, and a port the host holds cannot be listened on.
 */
import { assert, describe, it } from "@effect/vitest"
import { Errno } from "@runsc/abi"
import { MemoryAccount, type SocketAddress, type SocketDescription } from "@runsc/kernel"
import { makeHostNetwork } from "@runsc/netstack"
import { Effect, Fiber } from "effect"
import * as Dgram from "node:dgram"
import * as Net from "node:net"
import { freePort } from "./hostPeers.js"

const localhost = (port: number): SocketAddress => ({ family: "inet4", address: new Uint8Array([127, 0, 0, 1]), port })
const text = (s: string) => new TextEncoder().encode(s)

const readAll = (s: SocketDescription): Effect.Effect<string> =>
  Effect.gen(function*() {
    let got = ""
    for (;;) {
      const r = yield* Effect.orDie(s.socket.receive(4096, { peek: false, waitAll: false, nonBlocking: false }))
      if (r.data.length === 0) return got
      got += new TextDecoder().decode(r.data)
    }
  })

describe("--network=host", () => {
  it.scopedLive("a guest listener listens on the host; a guest connect reaches a host server; a port the host holds is EADDRINUSE; a closed listener frees the host port", () =>
    Effect.gen(function*() {
      const memory = new MemoryAccount(64 * 1024 * 1024)
      const network = yield* makeHostNetwork()
      const port = yield* freePort
      const listener = yield* network.open("inet4", "stream", { memory })
      yield* listener.socket.bind(localhost(port))
      yield* listener.socket.listen(8)
      // A host client, answered by the guest.
      const reply = Effect.async<string>((resume) => {
        let got = ""
        const client = Net.connect({ port, host: "127.0.0.1" }, () => client.end("from the host"))
        client.on("data", (d) => void (got += d.toString()))
        client.on("close", () => resume(Effect.succeed(got)))
        client.on("error", () => resume(Effect.succeed(`error ${got}`)))
      })
      const serve = Effect.gen(function*() {
        const { socket } = yield* Effect.orDie(listener.socket.accept(false))
        const request = yield* readAll(socket)
        yield* Effect.orDie(socket.socket.send(text(`guest:${request}`), { nonBlocking: false }))
        yield* socket.close
      })
      const [answer] = yield* Effect.all([reply, serve], { concurrency: 2 })
      assert.strictEqual(answer, "guest:from the host")

      // A host server on another port: no listener of the sandbox's has it, so the host does.
      const server = Net.createServer({ allowHalfOpen: true }, (c) => {
        let got = ""
        c.on("data", (d) => void (got += d.toString()))
        c.on("end", () => c.end(`host:${got}`))
      })
      const hostPort = yield* Effect.async<number>((resume) => {
        server.listen(0, "127.0.0.1", () => resume(Effect.succeed((server.address() as Net.AddressInfo).port)))
      })
      yield* Effect.addFinalizer(() => Effect.sync(() => server.close()))
      const client = yield* network.open("inet4", "stream", { memory })
      yield* client.socket.connect(localhost(hostPort), false)
      yield* client.socket.send(text("to the host"), { nonBlocking: false })
      yield* client.socket.shutdown(false, true)
      assert.strictEqual(yield* readAll(client), "host:to the host")
      yield* client.close

      // The host's port is the host server's: a guest cannot listen there.
      const taken = yield* network.open("inet4", "stream", { memory })
      yield* taken.socket.bind(localhost(hostPort))
      const refused = yield* Effect.flip(taken.socket.listen(8))
      assert.strictEqual(refused.errno, Errno.ADDRINUSE)
      yield* taken.close

      // Closing the guest's listener closes the host's.
      yield* listener.close
      let free = false
      for (let i = 0; i < 100 && !free; i++) {
        free = yield* Effect.async<boolean>((resume) => {
          const probe = Net.createServer()
          probe.once("error", () => resume(Effect.succeed(false)))
          probe.listen(port, "127.0.0.1", () => probe.close(() => resume(Effect.succeed(true))))
        })
        if (!free) yield* Effect.sleep("10 millis")
      }
      assert.isTrue(free, "the host port is free again")
    }))

  it.scopedLive("each host listener holds one of the sandbox's host sockets: past the limit a listen is ENOBUFS, and a closed listener gives its back", () =>
    Effect.gen(function*() {
      const memory = new MemoryAccount(64 * 1024 * 1024)
      const network = yield* makeHostNetwork({ maxHostSockets: 1 })
      const listenOn = (port: number) =>
        Effect.gen(function*() {
          const socket = yield* network.open("inet4", "stream", { memory })
          yield* socket.socket.bind(localhost(port))
          return { socket, listened: yield* Effect.either(socket.socket.listen(8)) }
        })
      const first = yield* listenOn(yield* freePort)
      assert.strictEqual(first.listened._tag, "Right")
      const second = yield* listenOn(yield* freePort)
      assert.isTrue(second.listened._tag === "Left" && second.listened.left.errno === Errno.NOBUFS)
      yield* first.socket.close
      let again = yield* Effect.either(second.socket.socket.listen(8))
      for (let i = 0; i < 100 && again._tag === "Left"; i++) {
        yield* Effect.sleep("10 millis")
        again = yield* Effect.either(second.socket.socket.listen(8))
      }
      assert.strictEqual(again._tag, "Right")
      yield* second.socket.close
    }))

  it.scopedLive("UDP: a bound guest socket is bound on the host (host peers reach it and see its port); a guest datagram to the host's loopback reaches a host server, whose reply comes from 127.0.0.1; a port the host holds is EADDRINUSE; a closed socket frees the host port", () =>
    Effect.gen(function*() {
      const memory = new MemoryAccount(64 * 1024 * 1024)
      const network = yield* makeHostNetwork()
      const hostUdp = yield* Effect.acquireRelease(
        Effect.async<Dgram.Socket>((resume) => {
          const socket = Dgram.createSocket("udp4")
          socket.bind(0, "127.0.0.1", () => resume(Effect.succeed(socket)))
        }),
        (socket) => Effect.sync(() => socket.close())
      )
      const hostPort = hostUdp.address().port
      const port = yield* freeUdpPort
      const guest = yield* network.open("inet4", "dgram", { memory })
      yield* guest.socket.bind(localhost(port))
      // A host peer reaches the guest at its own port.
      const fromHost = yield* Effect.fork(Effect.orDie(guest.socket.receive(100, { peek: false, waitAll: false, nonBlocking: false })))
      hostUdp.send("hello guest", port, "127.0.0.1")
      const got = yield* Fiber.join(fromHost)
      assert.strictEqual(new TextDecoder().decode(got.data), "hello guest")
      assert.deepStrictEqual(got.from, localhost(hostPort), "the host's loopback is the guest's own")
      // The guest answers from its own port, to the host peer.
      const answer = Effect.async<{ text: string; port: number }>((resume) => {
        hostUdp.once("message", (data, info) => resume(Effect.succeed({ text: data.toString(), port: info.port })))
      })
      const [reply] = yield* Effect.all([answer, guest.socket.send(text("hello host"), { nonBlocking: false, to: got.from })], { concurrency: 2 })
      assert.deepStrictEqual(reply, { text: "hello host", port })
      // The host's port is the host's: a guest cannot bind it.
      const taken = yield* network.open("inet4", "dgram", { memory })
      assert.strictEqual((yield* Effect.flip(taken.socket.bind(localhost(hostPort)))).errno, Errno.ADDRINUSE)
      yield* taken.socket.bind(localhost(yield* freeUdpPort))
      // Closed: the host port is free again.
      yield* guest.close
      let free = false
      for (let i = 0; i < 100 && !free; i++) {
        free = yield* Effect.async<boolean>((resume) => {
          const probe = Dgram.createSocket("udp4")
          probe.once("error", () => resume(Effect.succeed(false)))
          probe.bind(port, "127.0.0.1", () => probe.close(() => resume(Effect.succeed(true))))
        })
        if (!free) yield* Effect.sleep("10 millis")
      }
      assert.isTrue(free, "the host port is free again")
    }))
})

describe("--network=host UDP binds", () => {
  it.scopedLive("a bind interrupted while the host binds gives its host socket back; a port 0 the host holds is given up for another", () =>
    Effect.gen(function*() {
      const memory = new MemoryAccount(64 * 1024 * 1024)
      const network = yield* makeHostNetwork({ maxHostSockets: 1 })
      const first = yield* network.open("inet4", "dgram", { memory })
      const binding = yield* Effect.fork(first.socket.bind(localhost(yield* freeUdpPort)))
      yield* Fiber.interrupt(binding)
      yield* first.close
      const second = yield* network.open("inet4", "dgram", { memory })
      let bound = yield* Effect.either(second.socket.bind(localhost(yield* freeUdpPort)))
      // The interrupted bind's host socket closes asynchronously; its slot comes back at once.
      assert.strictEqual(bound._tag, "Right", "the slot came back")
      yield* second.close
      // The sandbox's first ephemeral port (32768), held on the host: a bind to port 0 moves on.
      const held = yield* Effect.either(Effect.async<Dgram.Socket, Error>((resume) => {
        const socket = Dgram.createSocket("udp4")
        socket.once("error", (e) => resume(Effect.fail(e)))
        socket.bind(32768, "127.0.0.1", () => resume(Effect.succeed(socket)))
      }))
      const wide = yield* makeHostNetwork()
      const third = yield* wide.open("inet4", "dgram", { memory })
      bound = yield* Effect.either(third.socket.bind(localhost(0)))
      if (held._tag === "Right") held.right.close()
      assert.strictEqual(bound._tag, "Right")
      if (held._tag === "Right") assert.notStrictEqual(((yield* third.socket.localAddress) as { port: number }).port, 32768)
    }))
})

/** A UDP port of the host's loopback that was free a moment ago. */
const freeUdpPort = Effect.async<number>((resume) => {
  const probe = Dgram.createSocket("udp4")
  probe.bind(0, "127.0.0.1", () => {
    const port = probe.address().port
    probe.close(() => resume(Effect.succeed(port)))
  })
})
