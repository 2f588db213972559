/**
 * Egress as an attacker would push it: a host peer that never reads, more connections than the
 * sandbox may hold host sockets for, a connect abandoned while in flight, and policies that must
 * not be read more widely than written.
 */
import { assert, describe, it } from "@effect/vitest"
import { Errno } from "@runsc/abi"
import { MemoryAccount, type SocketAddress, type SocketDescription, type SyscallError } from "@runsc/kernel"
import { MAX_LOOKUPS, makeSandboxNetwork } from "@runsc/netstack"
import { EGRESS_ANNOTATION, egressRulesOf, type EgressRule, type Spec } from "@runsc/spec"
import { Effect, Fiber } from "effect"
import * as Dgram from "node:dgram"
import * as Net from "node:net"

const gateway = (port: number): SocketAddress => ({ family: "inet4", address: new Uint8Array([10, 0, 2, 2]), port })
const errnoOf = <A>(effect: Effect.Effect<A, SyscallError>) => Effect.map(Effect.flip(effect), (e) => e.errno)
const rulesOf = (text: string) => egressRulesOf({ ociVersion: "1.0.2", annotations: { [EGRESS_ANNOTATION]: text } } as Spec)
const rules = (text: string): ReadonlyArray<EgressRule> => {
  const parsed = rulesOf(text)
  if ("reason" in parsed) throw new Error(parsed.reason)
  return parsed.rules
}

/** A host server on 127.0.0.1 for the scope; `onSocket` gets each connection. */
const hostServer = (onSocket: (socket: Net.Socket) => void) =>
  Effect.acquireRelease(
    Effect.async<{ readonly server: Net.Server; readonly port: number }>((resume) => {
      const server = Net.createServer(onSocket)
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed({ server, port: (server.address() as Net.AddressInfo).port })))
    }),
    ({ server }) => Effect.sync(() => server.close())
  )

describe("egress", () => {
  it.scopedLive("a host peer that never reads: the guest's sends stop (EAGAIN) after its buffers and the host's, not after all it had", () =>
    Effect.gen(function*() {
      const held: Array<Net.Socket> = []
      const { port } = yield* hostServer((socket) => {
        socket.pause()
        held.push(socket)
      })
      yield* Effect.addFinalizer(() => Effect.sync(() => held.forEach((s) => s.destroy())))
      const memory = new MemoryAccount(64 * 1024 * 1024)
      const network = yield* makeSandboxNetwork(rules(`10.0.2.2/32:${port}`))
      const guest = yield* network.open("inet4", "stream", { memory })
      yield* guest.socket.connect(gateway(port), false)
      const chunk = new Uint8Array(64 * 1024)
      let sent = 0
      let stalls = 0
      // Up to 256 MiB offered; it stalls for good long before.
      while (sent < 256 * 1024 * 1024 && stalls < 5) {
        const n = yield* Effect.either(guest.socket.send(chunk, { nonBlocking: true }))
        if (n._tag === "Right") {
          sent += n.right
          stalls = 0
        } else {
          assert.strictEqual(n.left.errno, Errno.AGAIN)
          stalls++
          yield* Effect.sleep("40 millis")
        }
      }
      assert.isBelow(sent, 32 * 1024 * 1024, `${sent} bytes taken from a guest whose peer never reads`)
      // Only the connection's two buffers are charged to the sandbox's memory.
      assert.isAtMost(memory.used, 2 * 256 * 1024)
      yield* guest.close
    }))

  it.scopedLive("at most maxHostSockets host sockets at once (ENOBUFS past it), given back as connections close; a connect abandoned in flight leaves nothing open", () =>
    Effect.gen(function*() {
      const open = new Set<Net.Socket>()
      const { port } = yield* hostServer((socket) => {
        open.add(socket)
        socket.on("close", () => open.delete(socket))
        socket.on("error", () => {})
      })
      const memory = new MemoryAccount(64 * 1024 * 1024)
      const network = yield* makeSandboxNetwork(rules(`10.0.2.2/32:${port}`), { maxHostSockets: 4 })
      const connect = Effect.gen(function*() {
        const s = yield* network.open("inet4", "stream", { memory })
        // A socket whose connect failed is closed, as a guest's is at its exit: it was charged.
        yield* Effect.onError(s.socket.connect(gateway(port), false), () => s.close)
        return s
      })
      const four = yield* Effect.forEach([1, 2, 3, 4], () => connect)
      assert.strictEqual(four[0]!.socket.status, "opened")
      assert.strictEqual(yield* errnoOf(connect), Errno.NOBUFS)
      yield* four[0]!.close
      const waitUntil = (condition: () => boolean) =>
        Effect.gen(function*() {
          for (let i = 0; i < 200 && !condition(); i++) yield* Effect.sleep("10 millis")
          assert.isTrue(condition())
        })
      // The host socket closes after the bridge ends: then the slot is free again.
      let again: SocketDescription | undefined
      yield* waitUntil(() => open.size === 3)
      for (let i = 0; i < 50 && again === undefined; i++) {
        const attempt = yield* Effect.either(connect)
        if (attempt._tag === "Right") again = attempt.right
        else yield* Effect.sleep("10 millis")
      }
      assert.isDefined(again, "a slot freed by a closed connection")
      // A non-blocking connect closed before it completes: its host socket goes too.
      yield* Effect.forEach([...four.slice(1)], (s) => s.close, { discard: true })
      yield* waitUntil(() => open.size === 1)
      yield* Effect.sleep("50 millis")
      const abandoned = yield* network.open("inet4", "stream", { memory })
      assert.strictEqual(yield* errnoOf(abandoned.socket.connect(gateway(port), true)), Errno.INPROGRESS)
      assert.strictEqual(yield* errnoOf(abandoned.socket.connect(gateway(port), true)), Errno.ALREADY)
      assert.strictEqual(abandoned.socket.status, "opening")
      yield* abandoned.close
      assert.strictEqual(abandoned.socket.status, "closed")
      yield* again!.close
      yield* waitUntil(() => open.size === 0)
      assert.strictEqual(memory.used, 0)
    }))

  it.effect("policies: what each rule allows, and what cannot be read is refused with why", () =>
    Effect.gen(function*() {
      const policy = yield* makeSandboxNetwork(rules("10.1.0.0/16:80-81,192.168.1.7/32,[fd00::]/8:443"))
      const memory = new MemoryAccount(1024 * 1024)
      const probe = (address: SocketAddress) =>
        Effect.gen(function*() {
          const s = yield* policy.open(address.family === "inet4" ? "inet4" : "inet6", "stream", { memory })
          // Only the policy is asked: a refused destination fails before any host connect.
          const result = yield* Effect.either(s.socket.connect(address, true))
          yield* s.close
          return result._tag === "Left" ? result.left.errno : 0
        })
      const v4 = (a: number, b: number, c: number, d: number, port: number): SocketAddress => ({ family: "inet4", address: new Uint8Array([a, b, c, d]), port })
      const v6 = (first: number, port: number): SocketAddress => ({ family: "inet6", address: Uint8Array.from({ length: 16 }, (_, i) => (i === 0 ? first : i === 15 ? 1 : 0)), port })
      assert.strictEqual(yield* probe(v4(10, 1, 200, 3, 80)), Errno.INPROGRESS)
      assert.strictEqual(yield* probe(v4(10, 1, 200, 3, 81)), Errno.INPROGRESS)
      assert.strictEqual(yield* probe(v4(10, 1, 200, 3, 82)), Errno.ACCES)
      assert.strictEqual(yield* probe(v4(10, 2, 0, 1, 80)), Errno.ACCES)
      assert.strictEqual(yield* probe(v4(192, 168, 1, 7, 22)), Errno.INPROGRESS)
      assert.strictEqual(yield* probe(v4(192, 168, 1, 8, 22)), Errno.ACCES)
      assert.strictEqual(yield* probe(v6(0xfd, 443)), Errno.INPROGRESS)
      assert.strictEqual(yield* probe(v6(0xfe, 443)), Errno.ACCES)
      assert.strictEqual(yield* probe(v6(0xfd, 80)), Errno.ACCES)
      for (const bad of ["10.0.0.0/33", "10.0.0.1", "[::1]/129", "::1/128", "1.2.3.4/32:0", "1.2.3.4/32:80-79", "1.2.3.4/32:70000", "example.com/32", "300.1.1.1/8", ""]) {
        if (bad === "") continue
        assert.isTrue("reason" in rulesOf(bad), bad)
      }
      assert.deepStrictEqual(rulesOf(" "), { rules: [] })
    }).pipe(Effect.scoped))

  it.scopedLive("names beyond the sandbox: asked of the DNS server only when the policy has a rule, and only the addresses a rule allows are given", () =>
    Effect.gen(function*() {
      // A DNS server answering A queries from `records` (NXDOMAIN for other names, no AAAA).
      const records: Record<string, ReadonlyArray<string>> = { "svc.example": ["10.1.0.7", "203.0.113.9"], "far.example": ["198.51.100.1"] }
      const asked: Array<string> = []
      const server = Dgram.createSocket("udp4")
      server.on("message", (query, peer) => {
        let at = 12
        const labels: Array<string> = []
        while (query[at]! > 0) {
          labels.push(query.subarray(at + 1, at + 1 + query[at]!).toString())
          at += 1 + query[at]!
        }
        const name = labels.join(".")
        const type = query.readUInt16BE(at + 1)
        asked.push(`${name} ${type === 1 ? "A" : type === 28 ? "AAAA" : type}`)
        const question = query.subarray(12, at + 5)
        const found = records[name]
        const answers = type === 1 && found !== undefined ? found : []
        const header = Buffer.alloc(12)
        header.writeUInt16BE(query.readUInt16BE(0), 0)
        header.writeUInt16BE(found === undefined ? 0x8183 : 0x8180, 2)
        header.writeUInt16BE(1, 4)
        header.writeUInt16BE(answers.length, 6)
        const answerRecords = answers.map((ip) => Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, ...ip.split(".").map(Number)]))
        server.send(Buffer.concat([header, question, ...answerRecords]), peer.port, peer.address)
      })
      const port = yield* Effect.async<number>((resume) => {
        server.bind(0, "127.0.0.1", () => resume(Effect.succeed(server.address().port)))
      })
      yield* Effect.addFinalizer(() => Effect.sync(() => void server.close()))
      const dnsServers = [`127.0.0.1:${port}`]
      const text = (addresses: ReadonlyArray<SocketAddress>) => addresses.map((a) => (a.family === "unix" ? a.path : a.address.join(".")))
      const lookup = (policy: string, name: string) =>
        Effect.gen(function*() {
          const network = yield* makeSandboxNetwork(policy === "" ? [] : rules(policy), { dnsServers })
          return yield* Effect.either(network.lookupHost!(name))
        }).pipe(Effect.scoped)
      // No rule: the query never leaves the sandbox (a name is data a guest could smuggle out).
      const none = yield* lookup("", "svc.example")
      assert.isTrue(none._tag === "Left" && none.left.errno === Errno.NOENT)
      assert.deepStrictEqual(asked, [])
      // Only what some rule allows, whatever its port.
      const some = yield* lookup("10.1.0.0/16:443", "svc.example")
      assert.deepStrictEqual(some._tag === "Right" ? text(some.right) : some.left, ["10.1.0.7"])
      const all = yield* lookup("0.0.0.0/0", "svc.example")
      assert.deepStrictEqual(all._tag === "Right" ? text(all.right) : all.left, ["10.1.0.7", "203.0.113.9"])
      // A name whose addresses no rule allows, and a name that does not exist: ENOENT both.
      const far = yield* lookup("10.1.0.0/16", "far.example")
      assert.isTrue(far._tag === "Left" && far.left.errno === Errno.NOENT)
      const missing = yield* lookup("0.0.0.0/0", "nosuch.example")
      assert.isTrue(missing._tag === "Left" && missing.left.errno === Errno.NOENT)
      assert.includeMembers(asked, ["svc.example A", "svc.example AAAA", "far.example A", "nosuch.example A"])
    }))

  it.scopedLive("UDP out: a guest's datagrams reach a host server where the policy allows (EACCES elsewhere), its replies come back from 10.0.2.2, a stranger's datagram to the same host port is dropped, and the host socket counts against the limit until closed", () =>
    Effect.gen(function*() {
      let guestHostPort = 0
      const echo = Dgram.createSocket("udp4")
      echo.on("message", (data, info) => {
        guestHostPort = info.port
        echo.send(Buffer.concat([Buffer.from("echo:"), data]), info.port, info.address)
      })
      const port = yield* Effect.async<number>((resume) => {
        echo.bind(0, "127.0.0.1", () => resume(Effect.succeed(echo.address().port)))
      })
      yield* Effect.addFinalizer(() => Effect.sync(() => void echo.close()))
      const memory = new MemoryAccount(64 * 1024 * 1024)
      const network = yield* makeSandboxNetwork(rules(`10.0.2.2/32:${port}`), { maxHostSockets: 1 })
      const guest = yield* network.open("inet4", "dgram", { memory })
      assert.strictEqual(yield* errnoOf(guest.socket.send(new TextEncoder().encode("x"), { nonBlocking: false, to: gateway(port + 1) })), Errno.ACCES)
      assert.strictEqual(yield* guest.socket.send(new TextEncoder().encode("ping"), { nonBlocking: false, to: gateway(port) }), 4)
      const reply = yield* guest.socket.receive(100, { peek: false, waitAll: false, nonBlocking: false })
      assert.strictEqual(new TextDecoder().decode(reply.data), "echo:ping")
      assert.deepStrictEqual(reply.from, gateway(port))
      // From a host port no rule covers: not the guest's to read.
      const stranger = Dgram.createSocket("udp4")
      yield* Effect.async<void>((resume) => {
        stranger.send("intruder", guestHostPort, "127.0.0.1", () => resume(Effect.void))
      })
      yield* Effect.sleep("100 millis")
      stranger.close()
      assert.strictEqual(yield* errnoOf(guest.socket.receive(100, { peek: false, waitAll: false, nonBlocking: true })), Errno.AGAIN)
      // Its host socket is the sandbox's one allowed: a TCP connect meanwhile has none left.
      const tcp = yield* network.open("inet4", "stream", { memory })
      assert.strictEqual(yield* errnoOf(tcp.socket.connect(gateway(port), false)), Errno.NOBUFS)
      yield* guest.close
      yield* tcp.close
      const again = yield* network.open("inet4", "stream", { memory })
      // Nobody listens for TCP there: refused by the host, so a host socket was to be had.
      assert.strictEqual(yield* errnoOf(again.socket.connect(gateway(port), false)), Errno.CONNREFUSED)
      // Reported by the connect itself: nothing is left for SO_ERROR, as on Linux.
      assert.strictEqual(again.socket.takeError(), 0)
      // The same, not waited for: failed (sock_status) until SO_ERROR is read.
      const later = yield* network.open("inet4", "stream", { memory })
      assert.strictEqual(yield* errnoOf(later.socket.connect(gateway(port), true)), Errno.INPROGRESS)
      for (let i = 0; i < 200 && later.socket.status === "opening"; i++) yield* Effect.sleep("10 millis")
      assert.strictEqual(later.socket.status, "failed")
      assert.strictEqual(later.socket.takeError(), Errno.CONNREFUSED)
      assert.strictEqual(later.socket.takeError(), 0)
      assert.strictEqual(guest.socket.status, "closed")
    }))

  it.scopedLive("at most MAX_LOOKUPS names in flight per sandbox: one more is EAGAIN at once, not another wait on a DNS server that never answers", () =>
    Effect.gen(function*() {
      // A DNS server that takes every query and answers none.
      const silent = Dgram.createSocket("udp4")
      silent.on("message", () => {})
      const port = yield* Effect.async<number>((resume) => {
        silent.bind(0, "127.0.0.1", () => resume(Effect.succeed(silent.address().port)))
      })
      yield* Effect.addFinalizer(() => Effect.sync(() => void silent.close()))
      const network = yield* makeSandboxNetwork(rules("0.0.0.0/0"), { dnsServers: [`127.0.0.1:${port}`] })
      const waiting = yield* Effect.forEach(Array.from({ length: MAX_LOOKUPS }, (_, i) => `slow${i}.example`), (name) =>
        Effect.fork(Effect.either(network.lookupHost!(name))))
      yield* Effect.sleep("50 millis")
      const started = Date.now()
      const extra = yield* Effect.either(network.lookupHost!("one-more.example"))
      assert.isTrue(extra._tag === "Left" && extra.left.errno === Errno.AGAIN)
      assert.isBelow(Date.now() - started, 500)
      // The others end on their own, unanswered: EAGAIN ("not now"), and the count comes back.
      for (const fiber of waiting) {
        const result = yield* Fiber.join(fiber)
        assert.isTrue(result._tag === "Left" && result.left.errno === Errno.AGAIN)
      }
      const after = yield* Effect.fork(Effect.either(network.lookupHost!("after.example")))
      yield* Effect.sleep("50 millis")
      assert.isNull(after.unsafePoll(), "a lookup is taken again, and waits on the server")
      yield* Fiber.interrupt(after)
    }))
})
