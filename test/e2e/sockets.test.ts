/**
 * Sockets through the CLI binary, in the default confined sandbox: a server container started
 * with `create` and `start`, clients run into it with `exec` over its loopback, each a plain
 * BSD-sockets C program (test/fixtures/c/net_echo.c).
 */
import { assert, describe, it } from "@effect/vitest"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import { afterAll, beforeAll } from "vitest"
import { createContainer, describeResult, fixturesDir, killSandboxesUnder, lines, makeBundle, makeTempDir, removeDir, runsc, startRunsc, uniqueId, until } from "./helpers.js"

/** A port of the host's loopback that was free a moment ago. */
const freePort = () =>
  new Promise<number>((resolve) => {
    const probe = Net.createServer()
    probe.listen(0, "127.0.0.1", () => {
      const port = (probe.address() as Net.AddressInfo).port
      probe.close(() => resolve(port))
    })
  })

/** A host client: sends `text`, ends its side, and resolves with all it read. */
const hostClient = (port: number, text: string) =>
  new Promise<string>((resolve, reject) => {
    let got = ""
    const socket = Net.connect({ port, host: "127.0.0.1" }, () => socket.end(text))
    socket.on("data", (data) => void (got += data.toString()))
    socket.once("close", () => resolve(got))
    socket.once("error", reject)
  })

/** Sets these fields of the bundle's spec. */
const configure = (dir: string, fields: Record<string, unknown>) => {
  const configPath = Path.join(dir, "config.json")
  const config = JSON.parse(Fs.readFileSync(configPath, "utf8"))
  Fs.writeFileSync(configPath, JSON.stringify({ ...config, ...fields }))
}

/** Gives the bundle's spec these annotations. */
const annotate = (dir: string, annotations: Record<string, string>) => configure(dir, { annotations })

/** A bind mount of the host directory `source` at `destination`, writable. */
const rwBind = (destination: string, source: string) => ({ destination, type: "bind", source, options: ["rbind", "rw"] })

let work = ""
let server: { readonly dir: string } | undefined

beforeAll(async () => {
  work = await makeTempDir("runsc-e2e-sockets-")
  server = await makeBundle(["/bin/net_echo", "server", "8080", "3"], ["net_echo", "sleep"])
})

afterAll(async () => {
  killSandboxesUnder(work)
  await removeDir(work)
  if (server) await removeDir(server.dir)
})

describe("sockets through the CLI", () => {
  it("a server container and clients exec'd into it talk over the sandbox's loopback; an exec still attached when the init ends reports SIGKILL (137)", async () => {
    const root = await Fs.promises.mkdtemp(Path.join(work, "root-"))
    const flags = ["--root", root]
    const id = uniqueId("net")
    const created = await createContainer(flags, server!.dir, id, work)
    assert.strictEqual(created.code, 0, created.output())
    assert.strictEqual((await runsc([...flags, "start", id])).code, 0)
    await until("the server listens", () => created.output().includes("listening 8080"))
    for (const text of ["first", "second"]) {
      const client = await runsc([...flags, "exec", id, "/bin/net_echo", "client", "8080", text])
      assert.strictEqual(client.code, 0, describeResult(client))
      assert.deepStrictEqual(lines(client.stdout), [`reply echo:${text}`, "peer 127.0.0.1:8080", "local 127.0.0.1 ephemeral yes"])
    }
    assert.strictEqual(created.output(), "listening 8080\ngot first\ngot second\n")
    // The container's network counters: its server accepted two connections, which its exec'd
    // clients made; every byte went both ways inside it.
    const stats = await runsc([...flags, "events", "--stats", id])
    assert.strictEqual(stats.code, 0, describeResult(stats))
    const network = JSON.parse(stats.stdout).data.network
    const bytes = ["first", "second", "echo:first", "echo:second"].join("").length
    assert.deepStrictEqual(network, { rx_bytes: bytes, tx_bytes: bytes, rx_packets: 0, tx_packets: 0, accepted: 2, connected: 2, refused: 0 })
    // The server's end takes its sandbox along, and every process in it: an exec attached then
    // exits as a process SIGKILLed, as runc's does, whether the sandbox reports the status
    // before it goes or not (the CLI then reports it itself: the teardown SIGKILLs every process).
    const attached = await startRunsc([...flags, "exec", id, "/bin/sleep", "600"])
    await until("the exec runs", async () => lines((await runsc([...flags, "ps", id])).stdout).length === 3)
    assert.strictEqual((await runsc([...flags, "kill", id, "TERM"])).code, 0)
    const ended = await attached.result
    assert.strictEqual(ended.code, 137, describeResult(ended))
    const waited = await runsc([...flags, "wait", id])
    assert.deepStrictEqual(JSON.parse(waited.stdout), { id, exitStatus: 143 })
    assert.strictEqual((await runsc([...flags, "delete", id])).code, 0)
  })

  it("a Unix socket server on a tmpfs at /run, and clients exec'd into its container reach it by its path; a client in another sandbox finds no such file", async () => {
    const bundle = await makeBundle(["/bin/unix", "server", "/run/app.sock", "3"], ["unix"])
    try {
      configure(bundle.dir, { mounts: [{ destination: "/run", type: "tmpfs", source: "tmpfs", options: ["nosuid", "nodev"] }] })
      const root = await Fs.promises.mkdtemp(Path.join(work, "root-"))
      const flags = ["--root", root]
      const id = uniqueId("unix")
      const created = await createContainer(flags, bundle.dir, id, work)
      assert.strictEqual(created.code, 0, created.output())
      assert.strictEqual((await runsc([...flags, "start", id])).code, 0)
      await until("the server listens", () => created.output().includes("listening"))
      for (const text of ["first", "second"]) {
        const client = await runsc([...flags, "exec", id, "/bin/unix", "client", "/run/app.sock", text])
        assert.strictEqual(client.code, 0, describeResult(client))
        assert.strictEqual(client.stdout, `echo: ${text}\n`)
      }
      const elsewhere = await runsc(["do", "--root-dir", bundle.rootfs, Path.join(bundle.rootfs, "bin", "unix"), "client", "/run/app.sock", "x"])
      assert.strictEqual(elsewhere.code, 1, describeResult(elsewhere))
      assert.strictEqual(elsewhere.stdout, "connect: No such file or directory\n")
      assert.strictEqual((await runsc([...flags, "kill", id, "TERM"])).code, 0)
      const waited = await runsc([...flags, "wait", id])
      assert.deepStrictEqual(JSON.parse(waited.stdout), { id, exitStatus: 143 })
      assert.strictEqual((await runsc([...flags, "delete", id])).code, 0)
    } finally {
      await removeDir(bundle.dir)
    }
  })

  it("a Unix socket in an rw bind mount, through the confined sandbox: an exec'd client reaches the server by its host socket file; another sandbox mounting the same directory is refused", async () => {
    const bundle = await makeBundle(["/bin/unix", "server", "/shared/app.sock", "3"], ["unix"])
    const shared = await makeTempDir("runsc-e2e-shared-")
    try {
      configure(bundle.dir, { mounts: [rwBind("/shared", shared)] })
      const root = await Fs.promises.mkdtemp(Path.join(work, "root-"))
      const flags = ["--root", root]
      const id = uniqueId("uds")
      const created = await createContainer(flags, bundle.dir, id, work)
      assert.strictEqual(created.code, 0, created.output())
      assert.strictEqual((await runsc([...flags, "start", id])).code, 0)
      await until("the server listens", () => created.output().includes("listening"))
      assert.isTrue(Fs.lstatSync(Path.join(shared, "app.sock")).isSocket())
      const client = await runsc([...flags, "exec", id, "/bin/unix", "client", "/shared/app.sock", "through the host file"])
      assert.strictEqual(client.code, 0, describeResult(client))
      assert.strictEqual(client.stdout, "echo: through the host file\n")
      // A second bundle, its own sandbox, the same host directory: the socket is not its own.
      const other = await makeBundle(["/bin/unix", "client", "/shared/app.sock", "x"], ["unix"])
      try {
        configure(other.dir, { mounts: [rwBind("/shared", shared)] })
        const otherId = uniqueId("uds2")
        const ran = await runsc([...flags, "run", "--bundle", other.dir, otherId])
        assert.strictEqual(ran.code, 1, describeResult(ran))
        assert.strictEqual(ran.stdout, "connect: Connection refused\n")
      } finally {
        await removeDir(other.dir)
      }
      assert.strictEqual((await runsc([...flags, "kill", id, "TERM"])).code, 0)
      await runsc([...flags, "wait", id])
      assert.strictEqual((await runsc([...flags, "delete", id])).code, 0)
    } finally {
      await removeDir(bundle.dir)
      await removeDir(shared)
    }
  })

  it("a published port (annotation dev.runsc.publish): a host client reaches the guest server, whose answer arrives though the server exits at once", async () => {
    const hostPort = await freePort()
    const bundle = await makeBundle(["/bin/net_echo", "server", "8080", "1"], ["net_echo"])
    try {
      annotate(bundle.dir, { "dev.runsc.publish": `127.0.0.1:${hostPort}:8080` })
      const root = await Fs.promises.mkdtemp(Path.join(work, "root-"))
      const flags = ["--root", root]
      const id = uniqueId("pub")
      const created = await createContainer(flags, bundle.dir, id, work)
      assert.strictEqual(created.code, 0, created.output())
      assert.strictEqual((await runsc([...flags, "start", id])).code, 0)
      await until("the server listens", () => created.output().includes("listening 8080"))
      assert.strictEqual(await hostClient(hostPort, "from the host"), "echo:from the host")
      const waited = await runsc([...flags, "wait", id])
      assert.deepStrictEqual(JSON.parse(waited.stdout), { id, exitStatus: 0 })
      assert.strictEqual((await runsc([...flags, "delete", id])).code, 0)
    } finally {
      await removeDir(bundle.dir)
    }
  })

  it("a stock preview1 server (wasi-libc alone) serves host clients through the listener its create hands it (dev.runsc.listen) and a published port", async () => {
    const hostPort = await freePort()
    const bundle = await makeBundle(["/bin/preopened_server", "2"], ["preopened_server"])
    try {
      annotate(bundle.dir, { "dev.runsc.listen": "8080", "dev.runsc.publish": `${hostPort}:8080` })
      const root = await Fs.promises.mkdtemp(Path.join(work, "root-"))
      const flags = ["--root", root]
      const id = uniqueId("pre")
      const created = await createContainer(flags, bundle.dir, id, work)
      assert.strictEqual(created.code, 0, created.output())
      assert.strictEqual((await runsc([...flags, "start", id])).code, 0)
      await until("the server has its listener", () => created.output().includes("listener fd 4"))
      assert.strictEqual(await hostClient(hostPort, "one"), "preopened:one")
      assert.strictEqual(await hostClient(hostPort, "two"), "preopened:two")
      const waited = await runsc([...flags, "wait", id])
      assert.deepStrictEqual(JSON.parse(waited.stdout), { id, exitStatus: 0 })
      assert.strictEqual(created.output(), "listener fd 4\nserved 2\n")
      assert.strictEqual((await runsc([...flags, "delete", id])).code, 0)
    } finally {
      await removeDir(bundle.dir)
    }
  })

  it("runsc port-forward: a host port reaches the guest's server while the command runs, and not after; a host port already taken, or a bad mapping, fails with why", async () => {
    const hostPort = await freePort()
    const root = await Fs.promises.mkdtemp(Path.join(work, "root-"))
    const flags = ["--root", root]
    const id = uniqueId("fwd")
    const created = await createContainer(flags, server!.dir, id, work)
    assert.strictEqual(created.code, 0, created.output())
    assert.strictEqual((await runsc([...flags, "start", id])).code, 0)
    await until("the server listens", () => created.output().includes("listening 8080"))
    const forward = await startRunsc([...flags, "port-forward", id, `${hostPort}:8080`])
    await until("the port is forwarded", () => forward.stderr().includes(`forwarding 127.0.0.1:${hostPort} -> ${id}:8080`))
    assert.strictEqual(await hostClient(hostPort, "through the forward"), "echo:through the forward")
    // The same host port again, while the first forward holds it.
    const taken = await runsc([...flags, "port-forward", id, `${hostPort}:8080`])
    assert.notStrictEqual(taken.code, 0)
    assert.match(taken.stderr, new RegExp(`cannot forward 127\\.0\\.0\\.1:${hostPort}: .*EADDRINUSE`))
    const bad = await runsc([...flags, "port-forward", id, "8080"])
    assert.notStrictEqual(bad.code, 0)
    assert.match(bad.stderr, /HOST_PORT:GUEST_PORT/)
    // Its end ends the listening.
    forward.child.kill("SIGTERM")
    await forward.result
    await until("the host port is closed", async () => {
      const refused = await hostClient(hostPort, "late").then(() => false, (e: NodeJS.ErrnoException) => e.code === "ECONNREFUSED")
      return refused
    })
    assert.strictEqual((await runsc([...flags, "kill", id, "KILL"])).code, 0)
    await runsc([...flags, "wait", id])
    assert.strictEqual((await runsc([...flags, "delete", id])).code, 0)
  })

  it("--network=host through create and start: the guest server's listener is on the host itself, and create warns that it is", async () => {
    const hostPort = await freePort()
    const bundle = await makeBundle(["/bin/net_echo", "server", `${hostPort}`, "1"], ["net_echo"])
    try {
      const root = await Fs.promises.mkdtemp(Path.join(work, "root-"))
      const flags = ["--root", root, "--network=host"]
      const id = uniqueId("host")
      const created = await createContainer(flags, bundle.dir, id, work)
      assert.strictEqual(created.code, 0, created.output())
      assert.match(created.output(), /uses the host's network/)
      assert.strictEqual((await runsc([...flags, "start", id])).code, 0)
      await until("the server listens", () => created.output().includes(`listening ${hostPort}`))
      assert.strictEqual(await hostClient(hostPort, "straight in"), "echo:straight in")
      const waited = await runsc([...flags, "wait", id])
      assert.deepStrictEqual(JSON.parse(waited.stdout), { id, exitStatus: 0 })
      assert.strictEqual((await runsc([...flags, "delete", id])).code, 0)
    } finally {
      await removeDir(bundle.dir)
    }
  })

  it("runsc do --egress: a guest reaches a host server on the host's loopback through 10.0.2.2 where the rule allows it, EACCES elsewhere, each in the --debug connection log; --network=none has no route; --network=host reaches the host's own loopback", async () => {
    const host = Net.createServer({ allowHalfOpen: true }, (socket) => {
      let got = ""
      socket.on("data", (data) => void (got += data.toString()))
      socket.on("end", () => socket.end(`host:${got}`))
    })
    const hostPort = await new Promise<number>((resolve) => host.listen(0, "127.0.0.1", () => resolve((host.address() as Net.AddressInfo).port)))
    try {
      const program = Path.join(fixturesDir, "c", "net_echo.wasm")
      const dial = ["dial", "10.0.2.2", `${hostPort}`, "from the guest"]
      // --debug: the connection log says what each connection was.
      const allowed = await runsc(["--debug", "do", "--egress", `10.0.2.2/32:${hostPort}`, program, ...dial])
      assert.strictEqual(allowed.code, 0, describeResult(allowed))
      assert.deepStrictEqual(lines(allowed.stdout), ["connect ok", "reply host:from the guest"])
      assert.match(allowed.stderr, new RegExp(`net: container runsc-do-\\w+: egress 127\\.0\\.0\\.1:\\d+ -> 10\\.0\\.2\\.2:${hostPort} \\(host 127\\.0\\.0\\.1:${hostPort} from port \\d+\\)`))
      const elsewhere = await runsc(["--debug", "do", "--egress", `10.0.2.2/32:${hostPort + 1}`, program, ...dial])
      assert.deepStrictEqual(lines(elsewhere.stdout), ["connect EACCES"], describeResult(elsewhere))
      assert.match(elsewhere.stderr, new RegExp(`net: container runsc-do-\\w+: egress to 10\\.0\\.2\\.2:${hostPort} refused by the policy`))
      const none = await runsc(["--network=none", "do", program, ...dial])
      assert.deepStrictEqual(lines(none.stdout), ["connect ENETUNREACH"], describeResult(none))
      const noneWithRule = await runsc(["--network=none", "do", "--egress", `10.0.2.2/32:${hostPort}`, program, ...dial])
      assert.notStrictEqual(noneWithRule.code, 0)
      assert.match(noneWithRule.stderr, /network is none/)
      const badRule = await runsc(["do", "--egress", "10.0.2.2", program, ...dial])
      assert.notStrictEqual(badRule.code, 0)
      assert.match(badRule.stderr, /CIDR/)
      // --network=host: the host's loopback is the guest's, with no rule.
      const hostMode = await runsc(["--network=host", "do", program, "dial", "127.0.0.1", `${hostPort}`, "as a host process"])
      assert.deepStrictEqual(lines(hostMode.stdout), ["connect ok", "reply host:as a host process"], describeResult(hostMode))
    } finally {
      host.close()
    }
  })
})
