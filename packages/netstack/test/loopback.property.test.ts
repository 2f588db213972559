/**
 * The loopback stack against a model: random sequences of non-blocking open / listen /
 * connect / accept / send / recv / shutdown / close over a few sockets and ports, each checked
 * for its outcome (bytes moved, errno) and every received byte for its order; at the end,
 * with every socket closed, no port is held and no buffer is charged.
 */
import { assert, describe, it } from "@effect/vitest"
import { Errno } from "@runsc/abi"
import { MemoryAccount, type SocketDescription } from "@runsc/kernel"
import { makeLoopbackNetwork } from "@runsc/netstack"
import { Effect, Either, FastCheck } from "effect"

const BUFFER = 128 * 1024
const PORTS = [1000, 1001]
const SOCKETS = 6
/** Keys of the model's pending connections: above any socket index. */
const PENDING = 1_000_000

type Op =
  | { readonly op: "open" }
  | { readonly op: "listen"; readonly s: number; readonly port: number; readonly backlog: number }
  | { readonly op: "connect"; readonly s: number; readonly port: number }
  | { readonly op: "accept"; readonly s: number }
  | { readonly op: "send"; readonly s: number; readonly length: number }
  | { readonly op: "recv"; readonly s: number; readonly length: number }
  | { readonly op: "shutdown"; readonly s: number }
  | { readonly op: "close"; readonly s: number }

const socketIndex = FastCheck.integer({ min: 0, max: SOCKETS + 2 })
const op: FastCheck.Arbitrary<Op> = FastCheck.oneof(
  { weight: 2, arbitrary: FastCheck.constant({ op: "open" as const }) },
  { weight: 2, arbitrary: FastCheck.record({ op: FastCheck.constant("listen" as const), s: socketIndex, port: FastCheck.constantFrom(...PORTS), backlog: FastCheck.integer({ min: 1, max: 2 }) }) },
  { weight: 3, arbitrary: FastCheck.record({ op: FastCheck.constant("connect" as const), s: socketIndex, port: FastCheck.constantFrom(...PORTS) }) },
  { weight: 3, arbitrary: FastCheck.record({ op: FastCheck.constant("accept" as const), s: socketIndex }) },
  { weight: 4, arbitrary: FastCheck.record({ op: FastCheck.constant("send" as const), s: socketIndex, length: FastCheck.oneof(FastCheck.integer({ min: 1, max: 100 }), FastCheck.integer({ min: 60_000, max: 150_000 })) }) },
  { weight: 4, arbitrary: FastCheck.record({ op: FastCheck.constant("recv" as const), s: socketIndex, length: FastCheck.oneof(FastCheck.integer({ min: 1, max: 100 }), FastCheck.constant(200_000)) }) },
  { weight: 1, arbitrary: FastCheck.record({ op: FastCheck.constant("shutdown" as const), s: socketIndex }) },
  { weight: 1, arbitrary: FastCheck.record({ op: FastCheck.constant("close" as const), s: socketIndex }) }
)

/** The model of one socket. */
type Model =
  | { kind: "fresh" }
  | { kind: "listening"; port: number; queue: Array<number>; limit: number }
  | { kind: "connected"; peer: number; inbox: Array<number>; ended: boolean; shutWrite: boolean; peerGone: boolean }
  | { kind: "closed" }

describe("the loopback stack against a model", () => {
  it.effect.prop("random non-blocking programs move the bytes and fail with the errors the model predicts", [FastCheck.array(op, { minLength: 30, maxLength: 120, size: "max" })], ([random]) =>
    Effect.gen(function*() {
      const memory = new MemoryAccount(1 << 30)
      const network = makeLoopbackNetwork()
      const real: Array<SocketDescription> = []
      const model: Array<Model> = []
      /** Each sender's next byte (its bytes count up mod 251). */
      const nextByte = new Map<number, number>()
      const errnoOf = <A>(effect: Effect.Effect<A, { readonly errno: Errno }>) => Effect.map(Effect.either(effect), (e) => (Either.isLeft(e) ? e.left.errno : undefined))
      /** The listener's side of connections not yet accepted, by a key of their own (≥ PENDING). */
      const pending = new Map<number, Extract<Model, { kind: "connected" }>>()
      let pendingKeys = PENDING
      const live = (s: number) => s < model.length && model[s]!.kind !== "closed"
      const listenerOn = (port: number) => model.findIndex((m) => m.kind === "listening" && m.port === port)
      // Four sockets, two of them listening, then whatever the program does.
      const ops: ReadonlyArray<Op> = [
        ...Array.from({ length: 4 }, () => ({ op: "open" as const })),
        { op: "listen", s: 0, port: PORTS[0]!, backlog: 2 },
        { op: "listen", s: 1, port: PORTS[1]!, backlog: 1 },
        ...random
      ]
      for (const o of ops) {
        if (o.op === "open") {
          if (real.length >= SOCKETS * 2) continue
          real.push(yield* network.open("inet4", "stream", { memory }))
          model.push({ kind: "fresh" })
          continue
        }
        if (!live(o.s)) continue
        const m = model[o.s]!
        const socket = real[o.s]!.socket
        const where = `${JSON.stringify(o)} in ${JSON.stringify(ops)}`
        switch (o.op) {
          case "listen": {
            if (m.kind !== "fresh") continue
            const taken = listenerOn(o.port) >= 0
            const bound = yield* errnoOf(socket.bind({ family: "inet4", address: new Uint8Array([127, 0, 0, 1]), port: o.port }))
            if (taken) {
              assert.strictEqual(bound, Errno.ADDRINUSE, where)
              continue
            }
            assert.strictEqual(bound, undefined, where)
            assert.strictEqual(yield* errnoOf(socket.listen(o.backlog)), undefined, where)
            model[o.s] = { kind: "listening", port: o.port, queue: [], limit: o.backlog }
            break
          }
          case "connect": {
            const got = yield* errnoOf(socket.connect({ family: "inet4", address: new Uint8Array([127, 0, 0, 1]), port: o.port }, true))
            if (m.kind === "connected") {
              assert.strictEqual(got, Errno.ISCONN, where)
              break
            }
            if (m.kind === "listening") {
              assert.strictEqual(got, Errno.INVAL, where)
              break
            }
            const l = listenerOn(o.port)
            if (l < 0) {
              assert.strictEqual(got, Errno.CONNREFUSED, where)
              break
            }
            const listener = model[l] as Extract<Model, { kind: "listening" }>
            if (listener.queue.length >= listener.limit) {
              assert.strictEqual(got, Errno.AGAIN, where)
              break
            }
            assert.strictEqual(got, undefined, where)
            // The listener's side exists from now on: pending under a key of its own until
            // accepted, when it takes the next index.
            const server = pendingKeys++
            pending.set(server, { kind: "connected", peer: o.s, inbox: [], ended: false, shutWrite: false, peerGone: false })
            listener.queue.push(server)
            model[o.s] = { kind: "connected", peer: server, inbox: [], ended: false, shutWrite: false, peerGone: false }
            break
          }
          case "accept": {
            const got = yield* Effect.either(socket.accept(true))
            if (m.kind !== "listening") {
              assert.isTrue(Either.isLeft(got) && got.left.errno === Errno.INVAL, where)
              break
            }
            const next = m.queue.shift()
            if (next === undefined) {
              assert.isTrue(Either.isLeft(got) && got.left.errno === Errno.AGAIN, where)
              break
            }
            assert.isTrue(Either.isRight(got), where)
            if (Either.isRight(got)) {
              // The pending connection takes the next index: repoint its client at it.
              const index = real.length
              real.push(got.right.socket)
              const state = pending.get(next)!
              pending.delete(next)
              model.push(state)
              const client = model[state.peer]
              if (client?.kind === "connected" && client.peer === next) client.peer = index
            }
            break
          }
          case "send": {
            const data = new Uint8Array(o.length)
            const key = o.s
            let b = nextByte.get(key) ?? 0
            for (let i = 0; i < data.length; i++) data[i] = (b + i) % 251
            const got = yield* Effect.either(socket.send(data, { nonBlocking: true }))
            if (m.kind !== "connected") {
              assert.isTrue(Either.isLeft(got) && got.left.errno === Errno.NOTCONN, where)
              break
            }
            if (m.shutWrite || m.peerGone) {
              assert.isTrue(Either.isLeft(got) && got.left.errno === Errno.PIPE, where)
              break
            }
            const peer = inboxOf(m.peer)!
            const room = BUFFER - peer.inbox.length
            if (room === 0) {
              assert.isTrue(Either.isLeft(got) && got.left.errno === Errno.AGAIN, where)
              break
            }
            const sent = Math.min(room, o.length)
            assert.deepStrictEqual(got, Either.right(sent), where)
            for (let i = 0; i < sent; i++) peer.inbox.push(data[i]!)
            b = (b + sent) % 251
            nextByte.set(key, b)
            break
          }
          case "recv": {
            const got = yield* Effect.either(socket.receive(o.length, { peek: false, waitAll: false, nonBlocking: true }))
            if (m.kind !== "connected") {
              assert.isTrue(Either.isLeft(got) && got.left.errno === Errno.NOTCONN, where)
              break
            }
            if (m.inbox.length === 0) {
              if (m.ended) assert.isTrue(Either.isRight(got) && got.right.data.length === 0, where)
              else assert.isTrue(Either.isLeft(got) && got.left.errno === Errno.AGAIN, where)
              break
            }
            const expected = m.inbox.splice(0, Math.min(o.length, m.inbox.length))
            assert.isTrue(Either.isRight(got), where)
            if (Either.isRight(got)) assert.deepStrictEqual([...got.right.data], expected, where)
            break
          }
          case "shutdown": {
            const got = yield* errnoOf(socket.shutdown(false, true))
            if (m.kind !== "connected") {
              assert.strictEqual(got, Errno.NOTCONN, where)
              break
            }
            assert.strictEqual(got, undefined, where)
            m.shutWrite = true
            const peer = inboxOf(m.peer)
            if (peer !== undefined) peer.ended = true
            break
          }
          case "close":
            yield* real[o.s]!.close
            closeModel(o.s)
            break
        }
      }
      for (const [s, description] of real.entries()) if (live(s)) yield* description.close
      assert.strictEqual(memory.used, 0, "every buffer given back")
      for (const port of PORTS) {
        const again = yield* network.open("inet4", "stream", { memory })
        yield* again.socket.bind({ family: "inet4", address: new Uint8Array([127, 0, 0, 1]), port })
        yield* again.close
      }

      /** Where a socket's state lives: the model's array, or the pending connections not yet accepted. */
      function inboxOf(s: number): Extract<Model, { kind: "connected" }> | undefined {
        const m = s < model.length ? model[s] : pending.get(s)
        return m?.kind === "connected" ? m : undefined
      }
      function closeModel(s: number) {
        const m = model[s]!
        if (m.kind === "listening") {
          for (const p of m.queue) {
            const state = pending.get(p)!
            const client = inboxOf(state.peer)
            if (client !== undefined && client.peer === p) {
              client.ended = true
              client.peerGone = true
            }
            pending.delete(p)
          }
        } else if (m.kind === "connected") {
          const peer = inboxOf(m.peer)
          if (peer !== undefined) {
            peer.ended = true
            peer.peerGone = true
          }
        }
        model[s] = { kind: "closed" }
      }
    }), { fastCheck: { numRuns: 500 } })
})
