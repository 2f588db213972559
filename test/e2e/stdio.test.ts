/**
 * A guest's stdio on the host's pipes, sockets, files, /dev/null and terminals, through
 * `runsc do` in a shell pipeline (bash, so that the pipes are real pipes and PIPESTATUS tells
 * how runsc ended): SIGPIPE when the reader has gone, blocking writes that go in whole,
 * O_NONBLOCK that gives short writes and EAGAIN, isatty only on terminals, stdin read in order
 * and shared with the host's other readers as a file offset is.
 *
 * Each pipeline runs in its own process group, killed whole when it outlives its time limit,
 * so that a guest spinning on a broken pipe (the defect these tests catch) never outlives it.
 */
import { assert, describe, it } from "@effect/vitest"
import { spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { afterAll, beforeAll } from "vitest"
import { createContainer, installFixtures, makeBundle, makeTempDir, removeDir, runsc, runscBin, uniqueId } from "./helpers.js"

interface ShellResult {
  readonly code: number | null
  readonly stdout: Buffer
  readonly stderr: string
  readonly timedOut: boolean
}

/**
 * Runs `script` under bash with $RUNSC (the CLI), $ROOT (a root filesystem holding the
 * fixtures at /bin) and $STATE and $ID (a running container's --root and id) set. bash's
 * stdout is the test's socket, whose reader goes away after `closeStdoutAfter` bytes.
 */
const shell = (
  script: string,
  options: { readonly timeoutMs?: number; readonly closeStdoutAfter?: number } = {}
): Promise<ShellResult> =>
  new Promise((resolve, reject) => {
    const child = spawn("bash", ["-c", script], {
      env: { ...process.env, RUNSC: runscBin, ROOT: root, STATE: state, ID: container },
      stdio: ["ignore", "pipe", "pipe"],
      detached: true
    })
    const out: Array<Buffer> = []
    let outBytes = 0
    let stderr = ""
    child.stdout!.on("data", (chunk: Buffer) => {
      out.push(chunk)
      outBytes += chunk.length
      if (options.closeStdoutAfter !== undefined && outBytes >= options.closeStdoutAfter) child.stdout!.destroy()
    })
    child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()))
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      try {
        process.kill(-child.pid!, "SIGKILL")
      } catch {
        // Gone already.
      }
    }, options.timeoutMs ?? SHELL_LIMIT_MS)
    child.on("error", reject)
    child.on("exit", (code) => {
      clearTimeout(timer)
      // Whatever the pipeline left behind (a guest that never ended) goes with it.
      try {
        process.kill(-child.pid!, "SIGKILL")
      } catch {
        // Nothing left.
      }
      // "exit" may come before the last of stdout has been read (a loaded machine shows it):
      // the result is what the pipes held once they end, or what they held after a grace
      // period if something outside the group still has them open.
      const done = () => resolve({ code, stdout: Buffer.concat(out), stderr, timedOut })
      const grace = setTimeout(() => {
        child.stdout!.destroy()
        child.stderr!.destroy()
        done()
      }, 5_000)
      child.on("close", () => {
        clearTimeout(grace)
        done()
      })
    })
  })

const show = (r: ShellResult) =>
  `code=${r.code} timedOut=${r.timedOut}\nstdout=${JSON.stringify(r.stdout.subarray(0, 200).toString())}\nstderr=${JSON.stringify(r.stderr)}`

/** What `pipewrite block N` writes: byte i is 'a' + i % 26. */
const pattern = (n: number): Buffer => {
  const b = Buffer.allocUnsafe(n)
  for (let i = 0; i < n; i++) b[i] = 97 + (i % 26)
  return b
}

/** How long a pipeline may take (well inside each test's own limit, so it is always cleaned up). */
const SHELL_LIMIT_MS = 20_000
const TEST_LIMIT_MS = 40_000

const DO = `"$RUNSC" do --root-dir "$ROOT"`
const BIG = 64 * 1024 * 1024 + 12345

let root = ""
let work = ""
let bundle = ""
let state = ""
const container = uniqueId("stdio")
beforeAll(async () => {
  root = await makeTempDir("runsc-e2e-stdio-")
  work = await makeTempDir("runsc-e2e-stdio-work-")
  await installFixtures(root, ["pipewrite", "isatty", "stdinread", "cat", "poll_stdin"])
  // A container to exec into: exec's stdio is relayed over sockets by the CLI (the sandbox is
  // confined), a path of its own to the same host pipes.
  bundle = (await makeBundle(["/bin/sleep", "600"], ["sleep", "pipewrite"])).dir
  state = Path.join(work, "state")
  const created = await createContainer(["--root", state], bundle, container, work)
  assert.strictEqual(created.code, 0, created.output())
  assert.strictEqual((await runsc(["--root", state, "start", container])).code, 0)
})
afterAll(async () => {
  const stateFile = Path.join(state, `${container}.state.json`)
  if (Fs.existsSync(stateFile)) {
    try {
      process.kill(JSON.parse(Fs.readFileSync(stateFile, "utf8")).sandboxPid, "SIGKILL")
    } catch {
      // Gone already.
    }
  }
  await removeDir(root)
  await removeDir(work)
  await removeDir(bundle)
})

describe.concurrent("writes to a host pipe or socket", { timeout: TEST_LIMIT_MS }, () => {
  it("a guest writing to a pipe whose reader has gone dies of SIGPIPE (exit 141), so `yes | head` ends", async () => {
    const r = await shell(`${DO} "$ROOT/bin/pipewrite" yes | head -c 10 > /dev/null; echo "\${PIPESTATUS[0]}"`)
    assert.strictEqual(r.stdout.toString(), "141\n", show(r))
  })

  it("so does one whose every write goes through the sentry (--strace)", async () => {
    const r = await shell(
      `"$RUNSC" --strace --strace-syscalls proc_exit do --root-dir "$ROOT" "$ROOT/bin/pipewrite" yes 2>/dev/null | head -c 10 > /dev/null; echo "\${PIPESTATUS[0]}"`
    )
    assert.strictEqual(r.stdout.toString(), "141\n", show(r))
  })

  it("and one writing to a socket whose reader has gone", async () => {
    const r = await shell(`exec ${DO} "$ROOT/bin/pipewrite" yes`, { closeStdoutAfter: 10 })
    assert.strictEqual(r.code, 141, show(r))
  })

  it("a blocking write of 64 MiB to a pipe read slowly goes in whole, in one call", async () => {
    const r = await shell(`${DO} "$ROOT/bin/pipewrite" block ${BIG} | (sleep 1; cat); exit "\${PIPESTATUS[0]}"`)
    assert.strictEqual(r.code, 0, show(r))
    assert.include(r.stderr, `wrote ${BIG} of ${BIG}`)
    assert.isTrue(r.stdout.equals(pattern(BIG)), `stdout differs (${r.stdout.length} bytes)`)
  })

  it("so does one through the sentry (--strace)", async () => {
    const r = await shell(
      `"$RUNSC" --strace --strace-syscalls proc_exit do --root-dir "$ROOT" "$ROOT/bin/pipewrite" block ${BIG} | (sleep 1; cat); exit "\${PIPESTATUS[0]}"`
    )
    assert.strictEqual(r.code, 0, show(r))
    assert.include(r.stderr, `wrote ${BIG} of ${BIG}`)
    assert.isTrue(r.stdout.equals(pattern(BIG)), `stdout differs (${r.stdout.length} bytes)`)
  })

  it("and one to a socket read slowly", async () => {
    const r = await shell(`sleep 1 & exec ${DO} "$ROOT/bin/pipewrite" block ${BIG}`)
    assert.strictEqual(r.code, 0, show(r))
    assert.include(r.stderr, `wrote ${BIG} of ${BIG}`)
    assert.isTrue(r.stdout.equals(pattern(BIG)), `stdout differs (${r.stdout.length} bytes)`)
  })

  it("with O_NONBLOCK, a write larger than the pipe's room is short (or EAGAIN), and what it reports is what arrived", async () => {
    const n = 1024 * 1024
    const r = await shell(`${DO} "$ROOT/bin/pipewrite" nonblock ${n} | (sleep 1; cat)`)
    const wrote = /wrote (\d+) of/.exec(r.stderr)
    if (wrote === null) {
      assert.include(r.stderr, "write failed: Resource temporarily unavailable", show(r))
      assert.strictEqual(r.stdout.length, 0)
    } else {
      const w = Number(wrote[1])
      assert.isTrue(w > 0 && w < n, show(r))
      assert.isTrue(r.stdout.equals(pattern(w)), `stdout differs (${r.stdout.length} bytes, reported ${w})`)
    }
  })
})

describe.concurrent("writes relayed to `runsc exec`'s stdout", { timeout: TEST_LIMIT_MS }, () => {
  it("a blocking write of 64 MiB to exec's stdout, a pipe read slowly, arrives in whole", async () => {
    const r = await shell(`"$RUNSC" --root "$STATE" exec "$ID" pipewrite block ${BIG} | (sleep 1; cat); exit "\${PIPESTATUS[0]}"`)
    assert.strictEqual(r.code, 0, show(r))
    assert.include(r.stderr, `wrote ${BIG} of ${BIG}`)
    assert.isTrue(r.stdout.equals(pattern(BIG)), `stdout differs (${r.stdout.length} bytes)`)
  })

  it("a guest writing to it after its reader has gone dies of SIGPIPE", async () => {
    const r = await shell(`"$RUNSC" --root "$STATE" exec "$ID" pipewrite yes | head -c 10 > /dev/null; echo "\${PIPESTATUS[0]}"`)
    assert.strictEqual(r.stdout.toString(), "141\n", show(r))
  })
})

describe.concurrent("isatty: only a terminal is one", { timeout: TEST_LIMIT_MS }, () => {
  it("/dev/null as stdin and stdout is not a terminal", async () => {
    const report = Path.join(work, "devnull.txt")
    const r = await shell(`${DO} "$ROOT/bin/isatty" 2 < /dev/null > /dev/null 2> "${report}"`)
    assert.strictEqual(r.code, 0, show(r))
    assert.strictEqual(Fs.readFileSync(report, "utf8"), "0:0 1:0 2:0\n")
  })

  it("nor is a regular file or a pipe", async () => {
    const report = Path.join(work, "file.txt")
    const r = await shell(`echo | ${DO} "$ROOT/bin/isatty" 1 > "${report}" 2>&1`)
    assert.strictEqual(r.code, 0, show(r))
    assert.strictEqual(Fs.readFileSync(report, "utf8"), "0:0 1:0 2:0\n")
  })

  it("a host terminal is one, and so is /dev/stdout reopened on it; /dev/null is not", async () => {
    const r = await shell(`script -qec '${DO} "$ROOT/bin/isatty" 1 /dev/stdout /dev/null' /dev/null < /dev/null`)
    assert.strictEqual(r.code, 0, show(r))
    assert.include(r.stdout.toString(), "0:1 1:1 2:1 /dev/stdout:1 /dev/null:0", show(r))
  })
})

describe.concurrent("reads of host stdin", { timeout: TEST_LIMIT_MS }, () => {
  it("a guest copies a large pipe in full and in order", async () => {
    const r = await shell(`seq 1 2000000 | ${DO} "$ROOT/bin/cat" | cksum; seq 1 2000000 | cksum`)
    const [got, expected] = r.stdout.toString().trim().split("\n")
    assert.strictEqual(got, expected, show(r))
  })

  it("a read leaves the rest of a regular file to the host's next reader, at the shared offset", async () => {
    const file = Path.join(work, "ten.txt")
    Fs.writeFileSync(file, "abcdefghij")
    const r = await shell(`(${DO} "$ROOT/bin/stdinread" head 3; echo; cat) < "${file}"`)
    assert.strictEqual(r.stdout.toString(), "abc\ndefghij", show(r))
  })

  it("so does a read of a pipe", async () => {
    const r = await shell(`printf 'abcdefghij' | (${DO} "$ROOT/bin/stdinread" head 3; echo; cat)`)
    assert.strictEqual(r.stdout.toString(), "abc\ndefghij", show(r))
  })

  it("with O_NONBLOCK, a read of an empty pipe fails EAGAIN; a blocking read then waits for the data", async () => {
    // The writer writes once the guest has said what its first read got.
    const r = await shell(`
      W="$(mktemp -d)"; mkfifo "$W/in"
      (exec 3> "$W/in"; until grep -q EAGAIN "$W/out" 2> /dev/null; do sleep 0.05; done; echo late >&3) &
      ${DO} "$ROOT/bin/stdinread" nonblock < "$W/in" > "$W/out"; cat "$W/out"; rm -rf "$W"`)
    assert.strictEqual(r.stdout.toString(), "EAGAIN\nthen: late\n", show(r))
  })
})

/**
 * \`runsc do\` with the guest at `args` and stdio that Node's child_process gives: sockets, which
 * cannot be reopened as the sandbox's own, so the sandbox sends and receives on them without
 * waiting.
 */
const doOnSockets = (args: ReadonlyArray<string>) => {
  const child = spawn(runscBin, ["do", "--root-dir", root, ...args], { stdio: ["pipe", "pipe", "pipe"] })
  let stdout = ""
  let stderr = ""
  child.stdout!.on("data", (chunk) => (stdout += chunk))
  child.stderr!.on("data", (chunk) => (stderr += chunk))
  const closed = new Promise<number>((resolve) => child.once("close", (code) => resolve(code ?? 128)))
  return { child, closed, stdout: () => stdout, stderr: () => stderr }
}

/** How `child` ends: its exit code (128 when a signal ended it), or "still running" after 15 s. */
const exitOf = (child: ReturnType<typeof spawn>) =>
  Promise.race([
    new Promise<number>((resolve) => child.once("exit", (code) => resolve(code ?? 128))),
    new Promise<string>((resolve) => setTimeout(() => resolve("still running"), 15_000))
  ])

const until = async (check: () => boolean, what: string) => {
  for (let waited = 0; !check(); waited += 50) {
    if (waited > SHELL_LIMIT_MS) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

describe.concurrent("host stdio that is a socket", { timeout: TEST_LIMIT_MS }, () => {
  it("poll_oneoff on it fires its clock while it is empty, then wakes for the host's bytes, which the read gets", async () => {
    const run = doOnSockets([Path.join(root, "bin", "poll_stdin")])
    try {
      await until(() => run.stdout().includes("first"), "the first poll")
      run.child.stdin!.write("late data\n")
      assert.strictEqual(await run.closed, 0, run.stderr())
      assert.deepStrictEqual(run.stdout().split("\n"), ["first 1 userdata 2", "then 1 userdata 1", "read 10 late data", ""])
    } finally {
      run.child.kill("SIGKILL")
    }
  })

  it("a guest blocked writing to it, full, dies of SIGTERM, and runsc exits 143", async () => {
    const run = doOnSockets([Path.join(root, "bin", "pipewrite"), "yes"])
    try {
      // Once the guest writes, nothing reads its stdout any more: the socket fills and every
      // write would wait.
      await until(() => run.stdout().length > 0, "the guest's first write")
      run.child.stdout!.pause()
      await new Promise((resolve) => setTimeout(resolve, 1_000))
      run.child.kill("SIGTERM")
      assert.strictEqual(await exitOf(run.child), 143, run.stderr())
    } finally {
      run.child.kill("SIGKILL")
    }
  })

  it("a guest blocked reading it dies of SIGTERM, and runsc exits 143", async () => {
    const run = doOnSockets([Path.join(root, "bin", "cat")])
    try {
      run.child.stdin!.write("ping\n")
      await until(() => run.stdout() === "ping\n", "the guest's echo")
      // The guest's next read has nothing to read, for good.
      await new Promise((resolve) => setTimeout(resolve, 500))
      run.child.kill("SIGTERM")
      assert.strictEqual(await exitOf(run.child), 143, run.stderr())
    } finally {
      run.child.kill("SIGKILL")
    }
  })
})

describe.concurrent("writes to a host file", { timeout: TEST_LIMIT_MS }, () => {
  it("after fcntl(O_APPEND) on stdout, a write goes at the file's end, not at the shared offset", async () => {
    const file = Path.join(work, "append.txt")
    Fs.writeFileSync(file, "0123456789")
    // 1<>: read-write at offset 0, not truncated and not O_APPEND on the host.
    const r = await shell(`${DO} "$ROOT/bin/pipewrite" append 5 1<> "${file}"`)
    assert.strictEqual(r.code, 0, show(r))
    assert.strictEqual(Fs.readFileSync(file, "utf8"), "0123456789abcde", show(r))
  })
})

describe("a confined sandbox's stdio (create, start)", { timeout: TEST_LIMIT_MS }, () => {
  it("a guest blocked writing to a full pipe that is blocking on the host dies at once of SIGKILL", async () => {
    const writer = (await makeBundle(["/bin/pipewrite", "yes"], ["pipewrite"])).dir
    try {
      // The container's stdout is a FIFO a reader holds open and never reads: after 64 KiB every
      // write waits. The FIFO's host descriptor is blocking.
      const r = await shell(`
        W="$(mktemp -d)"; mkfifo "$W/p"
        sleep 600 < "$W/p" & SLEEPER=$!
        "$RUNSC" --root "$W/s" create --bundle "${writer}" full > "$W/p"
        "$RUNSC" --root "$W/s" start full
        sleep 1
        "$RUNSC" --root "$W/s" kill full KILL
        timeout 10 "$RUNSC" --root "$W/s" wait full; echo "wait $?"
        "$RUNSC" --root "$W/s" delete --force full; kill $SLEEPER; rm -rf "$W"`)
      assert.strictEqual(r.stdout.toString(), `{"id":"full","exitStatus":137}\nwait 0\n`, show(r))
    } finally {
      await removeDir(writer)
    }
  })
})
