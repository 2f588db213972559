/**
 * Sockets as guests use them, through plain BSD calls (test/fixtures/c/net_echo.c over
 * include/runsc/socket.h): containers of one sandbox share its loopback, as a pod shares
 * localhost; a server polls its listener and its connections; every error a BSD program meets
 * is Linux's.
 */
import { assert, describe, it } from "@effect/vitest"
import { exited } from "@runsc/abi"
import { EGRESS_ANNOTATION, LISTEN_ANNOTATION, PUBLISH_ANNOTATION } from "@runsc/spec"
import { Context, Effect, Layer } from "effect"
import * as Fs from "node:fs"
import * as Http from "node:http"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { Loader } from "../src/index.js"
import { makeBundle, makeOutput, makeSandbox, startSub, waitUntil } from "./helpers.js"

/** A port of the host's loopback that was free a moment ago. */
const freePort = Effect.async<number>((resume) => {
  const probe = Net.createServer()
  probe.listen(0, "127.0.0.1", () => {
    const port = (probe.address() as Net.AddressInfo).port
    probe.close(() => resume(Effect.succeed(port)))
  })
})

/** A host client: connects, sends `text`, ends its side, and returns all it read. */
const hostClient = (port: number, text: string) =>
  Effect.async<string, Error>((resume) => {
    let got = ""
    const socket = Net.connect({ port, host: "127.0.0.1" }, () => socket.end(text))
    socket.on("data", (data) => void (got += data.toString()))
    socket.once("close", () => resume(Effect.succeed(got)))
    socket.once("error", (e) => resume(Effect.fail(e)))
  })

describe("sockets", () => {
  it.scopedLive("a server container and clients in two others reach each other over the sandbox's loopback; the server polls them all at once", () =>
    Effect.gen(function*() {
      const loader = yield* makeSandbox
      const server = yield* startSub(loader, "server", { args: ["net_echo", "server", "8080", "3"] })
      yield* waitUntil(Effect.sync(() => server.out.read().includes("listening 8080")), "the server listens")
      const clients = yield* Effect.forEach(["one", "two"], (id) => startSub(loader, id, { args: ["net_echo", "client", "8080", `hello-${id}`] }))
      // A third from an exec into the server's own container.
      const out = yield* makeOutput
      const pid = yield* loader.execute({ containerId: "server", argv: ["net_echo", "client", "8080", "from-inside"], stdio: { stdout: out.fd } })
      assert.deepStrictEqual(yield* loader.waitPid("server", pid), exited(0))
      for (const [i, id] of ["one", "two"].entries()) {
        assert.deepStrictEqual(yield* loader.wait(id), exited(0))
        assert.deepStrictEqual(clients[i]!.out.read().split("\n"), [`reply echo:hello-${id}`, "peer 127.0.0.1:8080", "local 127.0.0.1 ephemeral yes", ""])
      }
      assert.match(out.read(), /^reply echo:from-inside\n/)
      assert.deepStrictEqual(yield* loader.wait("server"), exited(0))
      const served = server.out.read().split("\n")
      assert.deepStrictEqual([served[0], ...served.slice(1, 4).sort(), ...served.slice(4)], ["listening 8080", "got from-inside", "got hello-one", "got hello-two", "served 3", ""])
      // Each container's own counters (events --stats): the server's accepted three, sent each
      // answer; a client made one connection and sent its text.
      const network = (id: string) => Effect.map(loader.event(id), (stats) => stats.network)
      assert.deepStrictEqual(yield* network("one"), { rx_bytes: "echo:hello-one".length, tx_bytes: "hello-one".length, rx_packets: 0, tx_packets: 0, accepted: 0, connected: 1, refused: 0 })
      const serverTraffic = yield* network("server")
      assert.strictEqual(serverTraffic.accepted, 3)
      // The exec'd client is the server container's too.
      assert.strictEqual(serverTraffic.connected, 1)
      assert.strictEqual(serverTraffic.rx_bytes, "hello-one".length + "hello-two".length + "from-inside".length + "echo:from-inside".length)
    }))

  it.scopedLive("UDP: sendto/recvfrom with the sender's address, datagram boundaries and truncation, connect's default peer and filter, a datagram nobody takes is dropped, EDESTADDRREQ, EMSGSIZE", () =>
    Effect.gen(function*() {
      const loader = yield* makeSandbox
      const { out } = yield* startSub(loader, "udp", { args: ["net_echo", "udp"] })
      assert.deepStrictEqual(yield* loader.wait("udp"), exited(0), out.read())
      assert.deepStrictEqual(out.read().split("\n"), [
        "udp-bind ok",
        "udp-send-unconnected EDESTADDRREQ",
        "udp-sendto ok",
        "udp-readable 1",
        "udp-got ping from 127.0.0.1 same-port yes",
        "udp-reply ok",
        "udp-reply-got pong",
        "udp-truncated abcd",
        "udp-next second",
        "udp-connect ok",
        "udp-send-connected ok",
        "udp-connected-got hello",
        "udp-stranger-dropped EAGAIN",
        "udp-to-nobody ok",
        "udp-too-big EMSGSIZE",
        "udp-listen EOPNOTSUPP",
        ""
      ])
    }))

  it.scopedLive("the errors a BSD program meets: no address beyond the loopback without an egress rule, refused, in use, not connected, EAGAIN on a non-blocking accept, EISCONN, ENOTSOCK", () =>
    Effect.gen(function*() {
      const loader = yield* makeSandbox
      const bundle = yield* makeBundle({ args: ["net_echo", "errors"] })
      const out = yield* makeOutput
      yield* loader.createSubcontainer("errors")
      yield* loader.startSubcontainer({ containerId: "errors", bundle, stdio: { stdout: out.fd, stderr: out.fd } })
      assert.deepStrictEqual(yield* loader.wait("errors"), exited(0), out.read())
      assert.deepStrictEqual(out.read().split("\n"), [
        "unix ok",
        "bind-foreign EADDRNOTAVAIL",
        "connect-foreign EACCES",
        "connect-nobody ECONNREFUSED",
        "recv-unconnected ENOTCONN",
        "bind ok",
        "listen ok",
        "bind-in-use EADDRINUSE",
        "accept-none-yet EAGAIN",
        "so-type stream acceptconn 1 rcvbuf 131072",
        "connect ok",
        "connect-again EISCONN",
        "listener-readable 1",
        "accept ok",
        "listen-on-file ENOTSOCK",
        ""
      ])
    }))

  it.scopedLive("a published port (dev.runsc.publish): host clients reach a guest server through it; a port the host cannot give fails the sandbox's start typed; a bad annotation, or one beyond the host's loopback, is an InvalidSpec", () =>
    Effect.gen(function*() {
      const hostPort = yield* freePort
      const bundle = yield* makeBundle({ args: ["net_echo", "server", "8080", "2"], annotations: { [PUBLISH_ANNOTATION]: `${hostPort}:8080` } })
      const out = yield* makeOutput
      const loader = yield* Effect.map(Layer.build(Loader.layer({ containerId: "web", bundle, stdio: { stdout: out.fd, stderr: out.fd } })), Context.get(Loader))
      yield* loader.startRoot
      yield* waitUntil(Effect.sync(() => out.read().includes("listening 8080")), "the guest listens")
      assert.strictEqual(yield* hostClient(hostPort, "from the host"), "echo:from the host")
      assert.strictEqual(yield* hostClient(hostPort, "again"), "echo:again")
      assert.deepStrictEqual(yield* loader.waitExit, exited(0))
      assert.match(out.read(), /got from the host\ngot again\nserved 2\n$/)
      // The same host port again, while this sandbox still holds it: refused, typed.
      const taken = yield* makeBundle({ args: ["sleep", "1"], annotations: { [PUBLISH_ANNOTATION]: `127.0.0.1:${hostPort}:80` } })
      const failed = yield* Effect.flip(Layer.build(Loader.layer({ containerId: "second", bundle: taken, stdio: {} })))
      assert.strictEqual(failed._tag, "PublishFailed")
      const bad = yield* makeBundle({ args: ["sleep", "1"], annotations: { [PUBLISH_ANNOTATION]: "80" } })
      const invalid = yield* Effect.flip(Layer.build(Loader.layer({ containerId: "third", bundle: bad, stdio: {} })))
      assert.strictEqual(invalid._tag, "InvalidSpec")
      // Every interface of the host: not from a spec unless the runtime allows it (an image's
      // annotations must not open the host's network).
      const everywhere = yield* makeBundle({ args: ["sleep", "1"], annotations: { [PUBLISH_ANNOTATION]: `0.0.0.0:${hostPort}:80` } })
      const refused = yield* Effect.flip(Layer.build(Loader.layer({ containerId: "fourth", bundle: everywhere, stdio: {} })))
      assert.strictEqual(refused._tag, "InvalidSpec")
      assert.match(refused.message, /0\.0\.0\.0 is not a loopback address/)
    }))

  it.scopedLive("a Unix socket in a volume two containers of a pod share (an rw bind mount of one host directory): the server's socket file is on the host, the other container's client reaches it, a second bind of it is EADDRINUSE; a host process connecting to it is refused", () =>
    Effect.gen(function*() {
      const loader = yield* makeSandbox
      const shared = Fs.mkdtempSync(Path.join(Os.tmpdir(), "runsc-shared-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(shared, { recursive: true, force: true })))
      const mounts = [{ destination: "/shared", type: "bind", source: shared, options: ["rbind", "rw"] }]
      const server = yield* startSub(loader, "server", { args: ["unix", "server", "/shared/app.sock", "1"], mounts })
      yield* waitUntil(Effect.sync(() => server.out.read().includes("listening")), "the server listens")
      assert.isTrue(Fs.lstatSync(Path.join(shared, "app.sock")).isSocket(), "a socket file on the host")
      const refused = yield* Effect.async<string>((resume) => {
        const probe = Net.connect(Path.join(shared, "app.sock"))
        probe.once("connect", () => resume(Effect.succeed("connected")))
        probe.once("error", (e: NodeJS.ErrnoException) => resume(Effect.succeed(e.code ?? "error")))
      })
      assert.strictEqual(refused, "ECONNREFUSED", "nothing listens on the host")
      const rival = yield* startSub(loader, "rival", { args: ["unix", "server", "/shared/app.sock", "1"], mounts })
      assert.deepStrictEqual(yield* loader.wait("rival"), exited(1))
      assert.strictEqual(rival.out.read(), "bind: Address in use\n")
      const client = yield* startSub(loader, "client", { args: ["unix", "client", "/shared/app.sock", "across the pod"], mounts })
      assert.deepStrictEqual(yield* loader.wait("client"), exited(0), client.out.read())
      assert.strictEqual(client.out.read(), "echo: across the pod\n")
      // The server unlinks its socket file when it is done, on the host too.
      assert.deepStrictEqual(yield* loader.wait("server"), exited(0))
      assert.isFalse(Fs.existsSync(Path.join(shared, "app.sock")))
    }))

  it.scopedLive("a sub-container's published ports: host clients reach its server while it is, the host port is free once it is destroyed; a port held fails its start typed; a beyond-loopback one is refused", () =>
    Effect.gen(function*() {
      const loader = yield* makeSandbox
      const hostPort = yield* freePort
      const server = yield* startSub(loader, "web", { args: ["net_echo", "server", "8081", "1"], annotations: { [PUBLISH_ANNOTATION]: `${hostPort}:8081` } })
      yield* waitUntil(Effect.sync(() => server.out.read().includes("listening 8081")), "the guest listens")
      assert.strictEqual(yield* hostClient(hostPort, "to the pod"), "echo:to the pod")
      assert.deepStrictEqual(yield* loader.wait("web"), exited(0))
      // Held while the container is: a second one asking for it cannot start.
      const second = yield* Effect.flip(startSub(loader, "second", { args: ["sleep", "1"], annotations: { [PUBLISH_ANNOTATION]: `${hostPort}:80` } }))
      assert.strictEqual(second._tag, "InvalidSpec")
      assert.match(second.message, /EADDRINUSE|in use/)
      yield* loader.destroySubcontainer("web")
      yield* loader.destroySubcontainer("second")
      const third = yield* startSub(loader, "third", { args: ["net_echo", "server", "8082", "1"], annotations: { [PUBLISH_ANNOTATION]: `${hostPort}:8082` } })
      yield* waitUntil(Effect.sync(() => third.out.read().includes("listening 8082")), "the third listens")
      assert.strictEqual(yield* hostClient(hostPort, "again"), "echo:again")
      const everywhere = yield* Effect.flip(startSub(loader, "fourth", { args: ["sleep", "1"], annotations: { [PUBLISH_ANNOTATION]: `0.0.0.0:${hostPort}:80` } }))
      assert.match(everywhere.message, /not a loopback address/)
    }))

  it.scopedLive("egress (dev.runsc.egress): a guest reaches a host server through 10.0.2.2 (the host's loopback) only where a rule allows it — blocking and non-blocking connects, EACCES outside the rules, ECONNREFUSED from the host, ENETUNREACH with --network=none", () =>
    Effect.gen(function*() {
      // A host service on the host's own 127.0.0.1, which the sandbox's 127.0.0.1 is not.
      const served: Array<string> = []
      const host = Net.createServer({ allowHalfOpen: true }, (socket) => {
        let got = ""
        socket.on("data", (data) => void (got += data.toString()))
        socket.on("end", () => {
          served.push(got)
          socket.end(`host:${got}`)
        })
      })
      const hostPort = yield* Effect.async<number>((resume) => {
        host.listen(0, "127.0.0.1", () => resume(Effect.succeed((host.address() as Net.AddressInfo).port)))
      })
      yield* Effect.addFinalizer(() => Effect.sync(() => host.close()))
      const closedPort = yield* freePort
      const bundle = yield* makeBundle({ args: ["sleep", "600"], annotations: { [EGRESS_ANNOTATION]: `10.0.2.2/32:${hostPort},10.0.2.2/32:${closedPort}` } })
      const loader = yield* Effect.map(Layer.build(Loader.layer({ containerId: "root", bundle, stdio: {} })), Context.get(Loader))
      yield* loader.startRoot
      const run = (id: string, args: ReadonlyArray<string>) =>
        Effect.gen(function*() {
          const { out } = yield* startSub(loader, id, { args: ["net_echo", ...args] })
          yield* loader.wait(id)
          return out.read()
        })
      assert.strictEqual(yield* run("blocking", ["dial", "10.0.2.2", `${hostPort}`, "hello"]), "connect ok\nreply host:hello\n")
      assert.strictEqual(yield* run("nonblocking", ["dialnb", "10.0.2.2", `${hostPort}`, "hi"]), "connect EINPROGRESS\nso_error ok\nreply host:hi\n")
      assert.deepStrictEqual(served.sort(), ["hello", "hi"])
      const blocking = (yield* loader.event("blocking")).network
      assert.deepStrictEqual([blocking.connected, blocking.tx_bytes, blocking.rx_bytes, blocking.refused], [1, "hello".length, "host:hello".length, 0])
      // Another host port, another address: no rule allows them.
      assert.strictEqual(yield* run("port", ["dial", "10.0.2.2", `${hostPort + 1 === closedPort ? hostPort + 2 : hostPort + 1}`, "x"]), "connect EACCES\n")
      assert.strictEqual(yield* run("address", ["dial", "10.0.2.3", `${hostPort}`, "x"]), "connect EACCES\n")
      assert.strictEqual(yield* run("nonblocking-refused", ["dialnb", "10.0.2.3", `${hostPort}`, "x"]), "connect EACCES\n")
      assert.strictEqual((yield* loader.event("address")).network.refused, 1)
      // Allowed, but nobody listens on the host: the host's answer, at once or through SO_ERROR.
      assert.strictEqual(yield* run("closed", ["dial", "10.0.2.2", `${closedPort}`, "x"]), "connect ECONNREFUSED\n")
      assert.strictEqual(yield* run("closed-nb", ["dialnb", "10.0.2.2", `${closedPort}`, "x"]), "connect EINPROGRESS\nso_error ECONNREFUSED\n")
      assert.deepStrictEqual(served.sort(), ["hello", "hi"])

      // --network=none: no route beyond the loopback, and a spec asking for egress is refused.
      const plain = yield* makeBundle({ args: ["net_echo", "dial", "10.0.2.2", `${hostPort}`, "x"] })
      const out = yield* makeOutput
      const isolated = yield* Effect.map(Layer.build(Loader.layer({ containerId: "none", bundle: plain, networkMode: "none", stdio: { stdout: out.fd } })), Context.get(Loader))
      yield* isolated.startRoot
      yield* isolated.waitExit
      assert.strictEqual(out.read(), "connect ENETUNREACH\n")
      const refused = yield* Effect.flip(Layer.build(Loader.layer({ containerId: "none2", bundle, networkMode: "none", stdio: {} })))
      assert.strictEqual(refused._tag, "InvalidSpec")
      assert.match(refused.message, /network is none/)
      // Nor may a sub-container of such a sandbox publish.
      const pod = yield* Effect.map(Layer.build(Loader.layer({ containerId: "none3", bundle: yield* makeBundle({ args: ["sleep", "600"] }), networkMode: "none", stdio: {} })), Context.get(Loader))
      yield* pod.startRoot
      const publishing = yield* makeBundle({ args: ["sleep", "1"], annotations: { [PUBLISH_ANNOTATION]: `${hostPort}:80` } })
      yield* pod.createSubcontainer("publisher")
      const unpublished = yield* Effect.flip(pod.startSubcontainer({ containerId: "publisher", bundle: publishing }))
      assert.match(unpublished.message, /network is none/)
      const bad = yield* makeBundle({ args: ["sleep", "1"], annotations: { [EGRESS_ANNOTATION]: "10.0.2.2:80" } })
      const invalid = yield* Effect.flip(Layer.build(Loader.layer({ containerId: "bad", bundle: bad, stdio: {} })))
      assert.strictEqual(invalid._tag, "InvalidSpec")
      assert.match(invalid.message, /CIDR/)
    }))

  it.scopedLive("getaddrinfo (WASIX resolve): numeric addresses, localhost, the container's own /etc/hosts (only its first MiB: a guest's huge file costs no more), and no name beyond it without an egress rule; gethostbyname over it; getnameinfo numeric", () =>
    Effect.gen(function*() {
      const loader = yield* makeSandbox
      const hosts = "# names of the pod\n10.0.2.2   host.containers.internal gateway\n192.168.9.9 db db.local # the database\nfd00::5 db\n"
      const huge = `${"#".repeat(1 << 20)}\n10.9.9.9 beyond\n`
      const resolve = (id: string, name: string, hostsFile: string) =>
        Effect.gen(function*() {
          const { out } = yield* startSub(loader, id, {
            args: ["net_echo", "resolve", name, "80"],
            populate: (rootfs) => Fs.writeFileSync(Path.join(rootfs, "etc", "hosts"), hostsFile)
          })
          yield* loader.wait(id)
          return out.read().split("\n").filter((l) => l !== "")
        })
      assert.deepStrictEqual(yield* resolve("literal4", "10.1.2.3", hosts), ["addr 10.1.2.3 80"])
      assert.deepStrictEqual(yield* resolve("literal6", "fe80::1:2", hosts), ["addr fe80::1:2 80"])
      assert.deepStrictEqual(yield* resolve("localhost", "localhost", hosts), ["addr 127.0.0.1 80", "addr ::1 80"])
      assert.deepStrictEqual(yield* resolve("db", "db", hosts), ["addr 192.168.9.9 80", "addr fd00::5 80"])
      assert.deepStrictEqual(yield* resolve("case", "GATEWAY", hosts), ["addr 10.0.2.2 80"])
      assert.deepStrictEqual(yield* resolve("unknown", "nosuch.example", hosts), ["gai EAI_NONAME"])
      // Past the first MiB of a hosts file the sentry reads nothing more.
      assert.deepStrictEqual(yield* resolve("beyond", "beyond", huge), ["gai EAI_NONAME"])
      assert.deepStrictEqual(yield* resolve("within", "within", `10.8.8.8 within\n${huge}`), ["addr 10.8.8.8 80"])
      const names = (id: string, name: string, address: string) =>
        Effect.gen(function*() {
          const { out } = yield* startSub(loader, id, { args: ["net_echo", "names", name, address, "443"], populate: (rootfs) => Fs.writeFileSync(Path.join(rootfs, "etc", "hosts"), hosts) })
          yield* loader.wait(id)
          return out.read().split("\n").filter((l) => l !== "")
        })
      assert.deepStrictEqual(yield* names("names", "db", "fd00::5"), ["gethostbyname db 192.168.9.9", "getnameinfo fd00::5 443", "getnameinfo-namereqd EAI_NONAME"])
      assert.deepStrictEqual(yield* names("names4", "nosuch.example", "10.0.2.2"), ["gethostbyname HOST_NOT_FOUND", "getnameinfo 10.0.2.2 443", "getnameinfo-namereqd EAI_NONAME"])
    }))

  it.scopedLive("listeners handed to the init (dev.runsc.listen): a stock preview1 server, which cannot make a socket, serves host clients through a published port; a port already held fails the start typed, and a bad annotation the create", () =>
    Effect.gen(function*() {
      const hostPort = yield* freePort
      const bundle = yield* makeBundle({
        args: ["preopened_server", "2"],
        annotations: { [LISTEN_ANNOTATION]: "8080", [PUBLISH_ANNOTATION]: `${hostPort}:8080` }
      })
      const out = yield* makeOutput
      const loader = yield* Effect.map(Layer.build(Loader.layer({ containerId: "web", bundle, stdio: { stdout: out.fd, stderr: out.fd } })), Context.get(Loader))
      yield* loader.startRoot
      // After stdio and the root preopen (fd 3).
      yield* waitUntil(Effect.sync(() => out.read().includes("listener fd 4")), "the server found its listener")
      const first = yield* hostClient(hostPort, "GET / HTTP/1.0\r\n\r\n")
      assert.strictEqual(first, "preopened:GET / HTTP/1.0\r\n\r\n", out.read())
      // The port is the init's: another container asking for it cannot start.
      const clash = yield* makeBundle({ args: ["sleep", "1"], annotations: { [LISTEN_ANNOTATION]: "127.0.0.1:8080" } })
      yield* loader.createSubcontainer("clash")
      const refused = yield* Effect.flip(loader.startSubcontainer({ containerId: "clash", bundle: clash, stdio: {} }))
      assert.strictEqual(refused._tag, "InvalidSpec")
      assert.match(refused.message, /cannot listen on 127\.0\.0\.1:8080: EADDRINUSE/)
      const bad = yield* makeBundle({ args: ["sleep", "1"], annotations: { [LISTEN_ANNOTATION]: "localhost:80" } })
      yield* loader.createSubcontainer("bad")
      const invalid = yield* Effect.flip(loader.startSubcontainer({ containerId: "bad", bundle: bad, stdio: {} }))
      assert.strictEqual(invalid._tag, "InvalidSpec")
      assert.match(invalid.message, /ADDRESS:\]PORT/)
      assert.strictEqual(yield* hostClient(hostPort, "second"), "preopened:second")
      assert.deepStrictEqual(yield* loader.waitExit, exited(0))
      assert.strictEqual(out.read(), "listener fd 4\nserved 2\n")
    }))

  it.scopedLive("a peer that never reads while a guest writes 1 GiB: the writer blocks and the sandbox's memory stays where it was; a guest opening sockets meets EMFILE at its fd limit", () =>
    Effect.gen(function*() {
      const loader = yield* makeSandbox
      const holder = yield* startSub(loader, "holder", { args: ["net_echo", "hold", "8080"] })
      yield* waitUntil(Effect.sync(() => holder.out.read().includes("listening 8080")), "the holder listens")
      const before = (yield* loader.sandboxStats).memory.used
      const writer = yield* startSub(loader, "writer", { args: ["net_echo", "source", "8080", "1024"] })
      yield* waitUntil(Effect.sync(() => holder.out.read().includes("held ok")), "the holder accepted")
      yield* Effect.sleep("500 millis")
      const blocked = (yield* loader.sandboxStats).memory.used
      yield* Effect.sleep("1 second")
      // Still writing: its sends wait for room that never comes.
      assert.strictEqual(writer.out.read(), "")
      assert.isTrue((yield* loader.runtimeState("writer")) === "running")
      // What it holds is the writer process itself and the connection's two buffers (128 KiB
      // each), taken once: nothing more while it goes on trying, and nowhere near the gigabyte.
      const after = (yield* loader.sandboxStats).memory.used
      assert.strictEqual(after, blocked, "memory taken while the writer was blocked")
      assert.isBelow(after - before, 32 * 1024 * 1024, `the sandbox's memory grew ${after - before} bytes`)
      yield* loader.destroySubcontainer("writer")
      yield* loader.destroySubcontainer("holder")

      const { out } = yield* startSub(loader, "exhaust", { args: ["net_echo", "exhaust"], nofile: 64 })
      yield* loader.wait("exhaust")
      assert.match(out.read(), /^sockets 60 EMFILE\n$/)
    }))

  it.scopedLive("HTTP/1.1 between C guests and the host: a guest server in one container, a guest client in another by name (its /etc/hosts), a host client through a published port, and a guest client reaching a host server by name through egress", () =>
    Effect.gen(function*() {
      // The host's own service, on its loopback: the guests know it as host.containers.internal.
      const seen: Array<string> = []
      const hostServer = Http.createServer((request, response) => {
        seen.push(`${request.method} ${request.url} ${request.headers["user-agent"]}`)
        response.end(`host says hi to ${request.url}\n`)
      })
      const hostPort = yield* Effect.async<number>((resume) => {
        hostServer.listen(0, "127.0.0.1", () => resume(Effect.succeed((hostServer.address() as Net.AddressInfo).port)))
      })
      yield* Effect.addFinalizer(() => Effect.sync(() => hostServer.close()))
      const published = yield* freePort
      const bundle = yield* makeBundle({
        args: ["http", "serve", "8080", "2"],
        annotations: { [PUBLISH_ANNOTATION]: `${published}:8080`, [EGRESS_ANNOTATION]: `10.0.2.2/32:${hostPort}` }
      })
      const out = yield* makeOutput
      const loader = yield* Effect.map(Layer.build(Loader.layer({ containerId: "web", bundle, stdio: { stdout: out.fd, stderr: out.fd } })), Context.get(Loader))
      yield* loader.startRoot
      yield* waitUntil(Effect.sync(() => out.read().includes("listening 8080")), "the server listens")
      const hosts = (rootfs: string) => Fs.writeFileSync(Path.join(rootfs, "etc", "hosts"), "127.0.0.1 localhost\n127.0.0.1 web\n10.0.2.2 host.containers.internal\n")
      const get = (id: string, ...args: Array<string>) =>
        Effect.gen(function*() {
          const { out: got } = yield* startSub(loader, id, { args: ["http", "get", ...args], populate: hosts })
          const status = yield* loader.wait(id)
          return got.read() + (status._tag === "Exited" ? "" : `(${JSON.stringify(status)})`)
        })
      assert.strictEqual(yield* get("client", "web", "8080", "/from-a-pod-neighbour"), "status HTTP/1.1 200 OK\nhello from /from-a-pod-neighbour\n")
      // The server listens on IPv4's wildcard only: ::1 reaches nobody, as on Linux.
      assert.strictEqual(yield* get("client6", "::1", "8080", "/over-ipv6"), "connect Connection refused\n")
      assert.strictEqual(
        yield* get("egress", "host.containers.internal", `${hostPort}`, "/out"),
        "status HTTP/1.1 200 OK\nhost says hi to /out\n"
      )
      assert.deepStrictEqual(seen, ["GET /out runsc-http-test"])
      // Last: the server's second request ends it, and with its init the sandbox.
      const fromHost = yield* Effect.async<string, Error>((resume) => {
        Http.get({ host: "127.0.0.1", port: published, path: "/from-the-host" }, (response) => {
          let body = ""
          response.on("data", (chunk) => void (body += chunk))
          response.on("end", () => resume(Effect.succeed(`${response.statusCode} ${body}`)))
        }).on("error", (e) => resume(Effect.fail(e)))
      })
      assert.strictEqual(fromHost, "200 hello from /from-the-host\n")
      assert.deepStrictEqual(yield* loader.waitExit, exited(0))
      assert.strictEqual(out.read(), "listening 8080\nserved 2\n")
    }))

  it.scopedLive("SO_RCVTIMEO and SO_SNDTIMEO (WASIX sock_set_opt_time): accept, recv and recvfrom give up with EAGAIN after the limit; a send to a peer that never reads answers its part, then EAGAIN; an accepted socket inherits the limit; 0 clears it; a bad timeval is EDOM", () =>
    Effect.gen(function*() {
      const loader = yield* makeSandbox
      const { out } = yield* startSub(loader, "timeouts", { args: ["net_echo", "timeouts"] })
      assert.deepStrictEqual(yield* loader.wait("timeouts"), exited(0), out.read())
      assert.deepStrictEqual(out.read().split("\n"), [
        "listening 9200",
        "set-rcvtimeo ok",
        "get-rcvtimeo 0.100000",
        "accept EAGAIN waited yes",
        "inherited yes",
        "recv EAGAIN waited yes",
        "cleared 0.000000",
        "set-sndtimeo ok",
        "send-partial ok waited yes",
        "partial yes",
        "send-full EAGAIN waited yes",
        "bad-usec EDOM",
        "recvfrom EAGAIN waited yes",
        ""
      ])
    }))

  it.scopedLive("WASIX sock_status: opening until it listens, opened then, EBADF once closed", () =>
    Effect.gen(function*() {
      const bytes = yield* Effect.promise(async () => {
        const wabt = await import("wabt").then((m) => m.default())
        const module = wabt.parseWat("status.wat", `(module
          (import "wasix_32v1" "sock_open" (func $open (param i32 i32 i32 i32) (result i32)))
          (import "wasix_32v1" "sock_status" (func $status (param i32 i32) (result i32)))
          (import "wasix_32v1" "sock_bind" (func $bind (param i32 i32) (result i32)))
          (import "wasix_32v1" "sock_listen" (func $listen (param i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_close" (func $close (param i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          ;; addr_port 127.0.0.1:9100 (INET4, port little-endian)
          (data (i32.const 16) "\\01\\00\\8c\\23\\7f\\00\\00\\01")
          (func (export "_start") (local $fd i32)
            (drop (call $open (i32.const 1) (i32.const 1) (i32.const 0) (i32.const 0)))
            (local.set $fd (i32.load (i32.const 0)))
            (drop (call $status (local.get $fd) (i32.const 8)))
            (drop (call $bind (local.get $fd) (i32.const 16)))
            (drop (call $listen (local.get $fd) (i32.const 1)))
            (drop (call $status (local.get $fd) (i32.const 9)))
            (drop (call $close (local.get $fd)))
            (i32.store8 (i32.const 10) (call $status (local.get $fd) (i32.const 11)))
            (i32.store (i32.const 64) (i32.const 8))
            (i32.store (i32.const 68) (i32.const 3))
            (drop (call $write (i32.const 1) (i32.const 64) (i32.const 1) (i32.const 72)))))`)
        try {
          return new Uint8Array(module.toBinary({}).buffer)
        } finally {
          module.destroy()
        }
      })
      const loader = yield* makeSandbox
      const { out } = yield* startSub(loader, "status", {
        args: ["status"],
        populate: (rootfs) => Fs.writeFileSync(Path.join(rootfs, "bin", "status"), bytes, { mode: 0o755 })
      })
      yield* loader.wait("status")
      // OPENING 0, OPENED 1, then the errno of a closed fd (EBADF, 8).
      assert.deepStrictEqual([...Buffer.from(out.read(), "latin1")], [0, 1, 8])
    }))

  it.scopedLive("Unix sockets as Linux has them (the same program built natively prints the same): a path's socket file (stat, ENXIO to open, EADDRINUSE, refused once closed, ENOENT once unlinked), abstract names, socketpair, datagrams with the sender's name, EPROTOTYPE, a relative path from the working directory, ENOENT for a trailing slash, EISCONN for sendto on a connected stream, EPROTONOSUPPORT for a protocol; ENAMETOOLONG for a relative name under a working directory too long to make it absolute; EROFS on a read-only root", () =>
    Effect.gen(function*() {
      const loader = yield* makeSandbox
      const { out } = yield* startSub(loader, "unix", { args: ["unix", "selftest", "/data"], writableRoot: true })
      assert.deepStrictEqual(yield* loader.wait("unix"), exited(0), out.read())
      assert.deepStrictEqual(out.read().split("\n"), [
        "bind path: ok",
        "stat: socket",
        "open socket file: No such device or address",
        "connect before listen: Connection refused",
        "listen: ok",
        "bind taken path: Address in use",
        "connect path: ok",
        "accepted peer: (unnamed)",
        "client's peer: /data/server.sock",
        "accepted name: /data/server.sock",
        "received: ping",
        "connect after close: Connection refused",
        "unlink: ok",
        "connect after unlink: No such file or directory",
        "bind again: ok",
        "connect regular file: Connection refused",
        "bind abstract: ok",
        "connect abstract: ok",
        "abstract peer: @selftest",
        "connect closed abstract: Connection refused",
        "socketpair: ok",
        "pair read: over the pair",
        "socketpair inet: Not supported",
        "bind datagram path: ok",
        "sendto path: ok",
        "recvfrom: 8 datagram from @sender",
        "sendto nobody: Connection refused",
        "stream connect to datagram path: Protocol wrong type for socket",
        "bind relative: ok",
        "relative stat: socket",
        "bind trailing slash: No such file or directory",
        "sendto connected stream: Socket is connected",
        "unix protocol 6: Protocol not supported",
        ""
      ])
      // A relative name under a working directory too long for sun_path: refused, not bound elsewhere.
      const deep = yield* startSub(loader, "deep", { args: ["unix", "longcwd", "/data"], writableRoot: true })
      assert.deepStrictEqual(yield* loader.wait("deep"), exited(0), deep.out.read())
      assert.strictEqual(deep.out.read(), "bind relative: Filename too long\nat the root: no\n")
      const readOnly = yield* startSub(loader, "ro", { args: ["unix", "server", "/data/app.sock", "1"] })
      assert.deepStrictEqual(yield* loader.wait("ro"), exited(1))
      assert.strictEqual(readOnly.out.read(), "bind: Read-only file system\n")
    }))

  it.scopedLive("Unix sockets across a pod: an abstract name is the sandbox's network's, reached from another container; a path is its container's filesystem's, reached by an exec into it but not from another container", () =>
    Effect.gen(function*() {
      const loader = yield* makeSandbox
      const abstract = yield* startSub(loader, "abstract", { args: ["unix", "server", "@pod-service", "1"] })
      yield* waitUntil(Effect.sync(() => abstract.out.read().includes("listening")), "the abstract server listens")
      const neighbour = yield* startSub(loader, "neighbour", { args: ["unix", "client", "@pod-service", "hello"] })
      assert.deepStrictEqual(yield* loader.wait("neighbour"), exited(0), neighbour.out.read())
      assert.strictEqual(neighbour.out.read(), "echo: hello\n")
      assert.deepStrictEqual(yield* loader.wait("abstract"), exited(0))

      const server = yield* startSub(loader, "path", { args: ["unix", "server", "/data/app.sock", "1"], writableRoot: true })
      yield* waitUntil(Effect.sync(() => server.out.read().includes("listening")), "the path server listens")
      const stranger = yield* startSub(loader, "stranger", { args: ["unix", "client", "/data/app.sock", "hi"], writableRoot: true })
      assert.deepStrictEqual(yield* loader.wait("stranger"), exited(1))
      assert.strictEqual(stranger.out.read(), "connect: No such file or directory\n", "another container's /data is its own")
      const out = yield* makeOutput
      const pid = yield* loader.execute({ containerId: "path", argv: ["unix", "client", "/data/app.sock", "from inside"], stdio: { stdout: out.fd } })
      assert.deepStrictEqual(yield* loader.waitPid("path", pid), exited(0))
      assert.strictEqual(out.read(), "echo: from inside\n")
      assert.deepStrictEqual(yield* loader.wait("path"), exited(0))
    }))
})
