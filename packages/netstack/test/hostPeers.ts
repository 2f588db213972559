/** The host side of netstack's tests: a free host port, and a host client of one. */
import { Effect } from "effect"
import * as Net from "node:net"

/** A port of the host's loopback that was free a moment ago. */
export const freePort = Effect.async<number>((resume) => {
  const probe = Net.createServer()
  probe.listen(0, "127.0.0.1", () => {
    const port = (probe.address() as Net.AddressInfo).port
    probe.close(() => resume(Effect.succeed(port)))
  })
})

/** Connects to the host port, sends `text`, ends its side; all it read once closed. */
export const hostClient = (port: number, text: string) =>
  Effect.async<string, Error>((resume) => {
    let got = ""
    const socket = Net.connect({ port, host: "127.0.0.1" }, () => socket.end(text))
    socket.on("data", (data) => void (got += data.toString()))
    socket.once("close", () => resume(Effect.succeed(got)))
    socket.once("error", (e) => resume(Effect.fail(e)))
  })
