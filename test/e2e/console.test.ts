/**
 * `--console-socket`, as containerd uses it: the test listens on a Unix socket, `create` (or
 * `exec -t`) sends it the master end of the container's new terminal, and the test then is the
 * terminal's user: it types, reads what the line discipline and the guest write back, and ends
 * the input with ^D. The socket end and fd passing use runsc's own console addon.
 */
import { assert, describe, it } from "@effect/vitest"
import { spawn } from "node:child_process"
import * as Fs from "node:fs"
import { createRequire } from "node:module"
import * as Path from "node:path"
import * as Tty from "node:tty"
import { afterAll, beforeAll } from "vitest"
import { cliFailureLine, makeBundle, makeTempDir, removeDir, repoRoot, runsc, runscBin, uniqueId } from "./helpers.js"

interface ConsoleAddon {
  listenConsole(socketPath: string): number
  receiveFd(listenFd: number): { readonly name: string; readonly fd: number }
}
const addon = createRequire(import.meta.url)(Path.join(repoRoot, "apps", "runsc", "dist", "console.node")) as ConsoleAddon

let work = ""
let bundle = ""
beforeAll(async () => {
  work = await makeTempDir("runsc-e2e-console-")
  bundle = (await makeBundle(["cat"], ["cat", "sleep"])).dir
  const config = JSON.parse(Fs.readFileSync(Path.join(bundle, "config.json"), "utf8"))
  config.process.terminal = true
  Fs.writeFileSync(Path.join(bundle, "config.json"), JSON.stringify(config))
})
afterAll(async () => {
  await removeDir(work)
  await removeDir(bundle)
})

/** Runs `args` (which name `socket` as console socket) and takes the terminal it sends. */
const withConsole = async (args: ReadonlyArray<string>, socket: string) => {
  const listener = addon.listenConsole(socket)
  const child = spawn(runscBin, [...args], { stdio: ["ignore", "pipe", "pipe"] })
  let stderr = ""
  child.stderr!.on("data", (chunk) => (stderr += chunk))
  const exited = new Promise<number | null>((resolve) => child.once("exit", resolve))
  try {
    // Blocks until the CLI connects (at most 20 s: the socket's receive timeout).
    const { fd, name } = addon.receiveFd(listener)
    return { fd, name, exited, stderr: () => stderr }
  } finally {
    Fs.closeSync(listener)
  }
}

/**
 * The terminal's user: types `input`, then collects output until `until` appears. The stream
 * it reads through owns `master` from then on (destroying it closes the fd).
 */
const converse = (master: number, input: string, until: string) =>
  new Promise<{ readonly seen: string; readonly stream: Tty.ReadStream }>((resolve, reject) => {
    const stream = new Tty.ReadStream(master)
    let seen = ""
    const timer = setTimeout(() => reject(new Error(`no ${JSON.stringify(until)} on the terminal; saw ${JSON.stringify(seen)}`)), 15_000)
    stream.on("data", (chunk) => {
      seen += chunk.toString()
      if (seen.includes(until)) {
        clearTimeout(timer)
        stream.pause()
        resolve({ seen, stream })
      }
    })
    stream.on("error", () => {})
    Fs.writeSync(master, input)
  })

describe("--console-socket", () => {
  it("create sends the master end of the container's terminal; the guest talks through it; ^D ends it", async () => {
    const root = Path.join(work, "root-create")
    const flags = ["--root", root]
    const id = uniqueId("tty")
    const socket = Path.join(work, `${id}.console`)
    const terminal = await withConsole([...flags, "create", "--bundle", bundle, "--console-socket", socket, id], socket)
    assert.strictEqual(await terminal.exited, 0, terminal.stderr())
    assert.match(terminal.name, /^\/dev\/pts\/\d+$/)
    assert.strictEqual((await runsc([...flags, "start", id])).code, 0)
    // The line discipline echoes the line, then cat writes it back (both with \r\n: ONLCR).
    const talk = await converse(terminal.fd, "hello\n", "hello\r\nhello\r\n")
    assert.strictEqual(talk.seen, "hello\r\nhello\r\n")
    Fs.writeSync(terminal.fd, "\x04")
    const waited = await runsc([...flags, "wait", id])
    assert.deepStrictEqual(JSON.parse(waited.stdout), { id, exitStatus: 0 })
    talk.stream.destroy()
    assert.strictEqual((await runsc([...flags, "delete", id])).code, 0)
  })

  it("exec -t --console-socket: the exec'd process gets its own terminal", async () => {
    const root = Path.join(work, "root-exec")
    const flags = ["--root", root]
    const id = uniqueId("tty")
    const socket = Path.join(work, `${id}.console`)
    const init = await withConsole([...flags, "create", "--bundle", bundle, "--console-socket", socket, id], socket)
    assert.strictEqual(await init.exited, 0, init.stderr())
    assert.strictEqual((await runsc([...flags, "start", id])).code, 0)
    const execSocket = Path.join(work, `${id}.exec-console`)
    const exec = await withConsole([...flags, "exec", "-t", "--console-socket", execSocket, id, "cat"], execSocket)
    assert.notStrictEqual(exec.name, init.name)
    const talk = await converse(exec.fd, "from exec\n", "from exec\r\nfrom exec\r\n")
    assert.strictEqual(talk.seen, "from exec\r\nfrom exec\r\n")
    Fs.writeSync(exec.fd, "\x04")
    assert.strictEqual(await exec.exited, 0, exec.stderr())
    talk.stream.destroy()
    Fs.closeSync(init.fd)
    assert.strictEqual((await runsc([...flags, "delete", "--force", id])).code, 0)
  })

  it("a process without a terminal cannot have a console socket: a typed failure, nothing left", async () => {
    const root = Path.join(work, "root-refused")
    const plain = (await makeBundle(["cat"], ["cat"])).dir
    try {
      const refused = await runsc(["--root", root, "create", "--bundle", plain, "--console-socket", Path.join(work, "unused"), uniqueId("plain")])
      assert.match(cliFailureLine(refused), /--console-socket: the process has no terminal/)
      assert.deepStrictEqual(Fs.existsSync(root) ? Fs.readdirSync(root).filter((f) => f.endsWith(".state.json")) : [], [])
    } finally {
      await removeDir(plain)
    }
  })
})
