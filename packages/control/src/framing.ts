/**
 * How control messages are framed on the socket: one JSON object per line, of bounded size
 * (@effect/rpc's NDJSON), where a frame that is not a message fails its connection.
 *
 * @effect/rpc's own NDJSON decoder keeps a line that is not JSON at the head of its buffer and
 * throws on it again at every later chunk: the server answered each with a defect and never
 * served another request on that connection, which stayed open. Here such a line — or one
 * that parses to anything but an object with a `_tag` — is dropped with the rest of the
 * buffer and fails the connection: the protocol closes a connection whose decoder throws a
 * serialization error (as it does for an oversized frame), and the client learns at once that
 * its request is lost.
 */
import { RpcSerialization } from "@effect/rpc"
import { Data, Layer } from "effect"

/**
 * A frame that is not a message. Its tag is borrowed: "RpcSerializationError" is the `_tag` of
 * @effect/rpc's own `RpcSerializationError` (an oversized frame), and @effect/rpc's socket server
 * closes a connection whose decoder throws anything with that tag (it tests the tag, not the
 * class); any other throw is answered with a defect and the connection stays open. So this is
 * not an `RpcSerializationError` (`instanceof` says no, and its fields differ); it only shares
 * the tag, to get the close.
 */
export class MalformedFrame extends Data.TaggedError("RpcSerializationError")<{ readonly reason: string }> {
  override get message(): string {
    return `malformed control frame: ${this.reason}`
  }
}

const isMessage = (value: unknown): boolean =>
  typeof value === "object" && value !== null && !Array.isArray(value) && typeof (value as { _tag?: unknown })._tag === "string"

/** NDJSON of at most `maxFrameBytes` a line, failing the connection at the first frame that is not a message. */
export const framing = (maxFrameBytes: number): Layer.Layer<RpcSerialization.RpcSerialization> => {
  const ndjson = RpcSerialization.makeNdjson({ maxBufferSize: maxFrameBytes })
  return Layer.succeed(
    RpcSerialization.RpcSerialization,
    RpcSerialization.RpcSerialization.of({
      ...ndjson,
      unsafeMake: () => {
          const parser = ndjson.unsafeMake()
          let failed = false
          return {
            encode: parser.encode,
            decode: (bytes) => {
              if (failed) throw new MalformedFrame({ reason: "after an earlier malformed frame" })
              let items: ReadonlyArray<unknown>
              try {
                items = parser.decode(bytes)
              } catch (e) {
                failed = true
                if (e instanceof SyntaxError) throw new MalformedFrame({ reason: e.message })
                throw e
              }
              if (items.every(isMessage)) return items
              failed = true
              throw new MalformedFrame({ reason: "a frame that is not a message object" })
            }
          }
      }
    })
  )
}
