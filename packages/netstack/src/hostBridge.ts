/**
 * A host socket joined to a guest connection (published ports inward, egress outward): each
 * direction copied to its end with both sides' backpressure kept. Bytes from the host go into
 * the guest connection with a send that waits for room (the host socket is paused meanwhile);
 * bytes from the guest are written to the host socket, waiting for `drain` when Node's buffer is
 * full. A host peer that never reads therefore costs the guest connection's buffer and no more.
 */
import type { SocketDescription } from "@runsc/kernel"
import { Effect } from "effect"
import type * as Net from "node:net"

const CHUNK = 64 * 1024

/** The next chunk the host sent (the socket paused again after it), or undefined at its end. */
const hostChunk = (host: Net.Socket): Effect.Effect<Uint8Array | undefined> =>
  host.destroyed || host.readableEnded ? Effect.succeed(undefined) : Effect.async((resume) => {
    const done = (chunk: Uint8Array | undefined) => {
      host.pause()
      host.off("data", onData)
      host.off("end", onEnd)
      host.off("close", onEnd)
      resume(Effect.succeed(chunk))
    }
    const onData = (chunk: Buffer) => done(chunk)
    const onEnd = () => done(undefined)
    host.on("data", onData)
    host.once("end", onEnd)
    host.once("close", onEnd)
    host.resume()
    return Effect.sync(() => {
      host.off("data", onData)
      host.off("end", onEnd)
      host.off("close", onEnd)
    })
  })

/** Writes to the host, waiting for `drain` when Node's buffer is full (or for the socket's end). */
const hostWrite = (host: Net.Socket, data: Uint8Array): Effect.Effect<void> =>
  host.destroyed || host.write(data) ? Effect.void : Effect.async((resume) => {
    const go = () => resume(Effect.void)
    host.once("drain", go)
    host.once("close", go)
    return Effect.sync(() => {
      host.off("drain", go)
      host.off("close", go)
    })
  })

/** Ends the host side once what was written has gone (destroying it at once would drop that). */
const hostEnd = (host: Net.Socket): Effect.Effect<void> =>
  host.destroyed ? Effect.void : Effect.async((resume) => {
    const go = () => resume(Effect.void)
    host.once("close", go)
    host.end(go)
    return Effect.sync(() => host.off("close", go))
  })

/** Both directions of one bridged connection, to their ends; then both sides are closed. */
export const bridge = (host: Net.Socket, guest: SocketDescription): Effect.Effect<void> => {
  // Until the host's end, or until the guest can take no more (it closed: what the host sends
  // then has nowhere to go).
  const inbound: Effect.Effect<void> = Effect.flatMap(hostChunk(host), (chunk) =>
    chunk === undefined
      ? Effect.ignore(guest.socket.shutdown(false, true))
      : guest.socket.send(chunk, { nonBlocking: false }).pipe(Effect.matchEffect({ onFailure: () => Effect.void, onSuccess: () => inbound })))
  const outbound: Effect.Effect<void> = Effect.flatMap(
    Effect.either(guest.socket.receive(CHUNK, { peek: false, waitAll: false, nonBlocking: false })),
    (received) =>
      received._tag === "Left" || received.right.data.length === 0
        ? hostEnd(host)
        : Effect.zipRight(hostWrite(host, received.right.data), outbound)
  )
  return Effect.all([inbound, outbound], { concurrency: "unbounded", discard: true }).pipe(
    Effect.ensuring(Effect.zipRight(guest.close, Effect.sync(() => host.destroy())))
  )
}
