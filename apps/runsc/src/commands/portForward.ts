/**
 * `runsc port-forward ID [HOST_ADDRESS:]HOST_PORT:GUEST_PORT`: serves a port of the sandbox's
 * loopback on the host for as long as this command runs, as runsc's port-forward does. The
 * sandbox listens (it bridges each connection, as for a published port); this process holds
 * the control call open, and its end — Ctrl-C, a kill, the sandbox's exit — ends the listening.
 * The host address defaults to 127.0.0.1; another one (0.0.0.0) is the user's explicit choice.
 */
import { Args, Command } from "@effect/cli"
import { parsePortMapping } from "@runsc/spec"
import { Duration, Effect, Stream } from "effect"
import * as Fs from "node:fs"
import { InvalidFlag } from "../errors.js"
import { callSandbox, findContainer } from "./container.js"

export const portForwardCommand = Command.make(
  "port-forward",
  {
    id: Args.text({ name: "container-id" }),
    mapping: Args.text({ name: "[host-address:]host-port:guest-port" })
  },
  ({ id, mapping }) =>
    Effect.gen(function*() {
      const port = parsePortMapping(mapping)
      if ("reason" in port) return yield* new InvalidFlag({ flag: "port-forward", reason: port.reason })
      const { record } = yield* findContainer(id, { abbreviated: true })
      yield* callSandbox(
        record,
        "Forward",
        (c) =>
          Stream.runForEach(c.Forward(port), () =>
            Effect.sync(() => void Fs.writeSync(2, `forwarding ${port.hostAddress}:${port.hostPort} -> ${record.id}:${port.guestPort}\n`))),
        { timeout: Duration.infinity }
      )
    })
).pipe(Command.withDescription("serve a port of a container's sandbox on the host while this runs"))
