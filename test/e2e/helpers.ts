/**
 * End-to-end helpers: spawn the real `runsc` executable (the node_modules/.bin shim, which
 * execs node, so a signal sent to the child's pid reaches the runsc process), collect its
 * output, and build throw-away root filesystems and bundles from the guest fixtures.
 *
 * Every child gets a distinctive host variable (RUNSC_HOST_SECRET) so that tests can check
 * that nothing of the host environment reaches a guest. At most MAX_CHILDREN runsc processes
 * of one test file run at once (the machine has 2 cores and each start costs a node boot).
 */
import { type ChildProcess, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"

export const repoRoot = Path.resolve(fileURLToPath(new URL("../..", import.meta.url)))
export const runscBin = Path.join(repoRoot, "node_modules", ".bin", "runsc")
export const fixturesDir = Path.join(repoRoot, "test", "fixtures")
export const helloBundle = Path.join(repoRoot, "examples", "hello")

/** The host variable planted in every child's environment; a guest must never see it. */
export const HOST_SECRET_VAR = "RUNSC_HOST_SECRET"

/** The default PATH of a `do` guest (the OCI template's). */
export const DEFAULT_GUEST_PATH = "/usr/local/bin:/usr/bin:/bin"

export interface RunResult {
  /** Exit code of the runsc process, null when it was killed by a signal. */
  readonly code: number | null
  /** The signal that killed the runsc process (null when it exited). */
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
  /** True when the helper had to kill the child after the timeout. */
  readonly timedOut: boolean
}

export interface RunOptions {
  readonly cwd?: string
  /** Extra variables on top of the host environment (plus RUNSC_HOST_SECRET). */
  readonly env?: Record<string, string | undefined>
  /** Written to the child's stdin, which is then closed. Without it stdin is closed at once. */
  readonly input?: string | Uint8Array
  /** Milliseconds before the child is SIGKILLed (default 25 s). */
  readonly timeoutMs?: number
}

// --- a tiny counting semaphore, so that concurrent tests do not start too many runsc at once ---

const MAX_CHILDREN = 4
let running = 0
const waiters: Array<() => void> = []

const acquire = (): Promise<void> =>
  new Promise((resolve) => {
    if (running < MAX_CHILDREN) {
      running++
      resolve()
    } else {
      waiters.push(() => {
        running++
        resolve()
      })
    }
  })

const release = () => {
  running--
  const next = waiters.shift()
  if (next !== undefined) next()
}

/** A started runsc process: the child, its final result, and a way to wait for output. */
export interface RunningRunsc {
  readonly child: ChildProcess
  readonly result: Promise<RunResult>
  /** Current stdout / stderr collected so far. */
  readonly stdout: () => string
  readonly stderr: () => string
  /** Resolves once stdout contains `text`; rejects if the child ends first or after timeoutMs. */
  readonly waitForStdout: (text: string, timeoutMs?: number) => Promise<void>
}

/** Spawns `runsc ARGS...` (no shell) once a concurrency slot is free. */
export const startRunsc = async (args: ReadonlyArray<string>, options: RunOptions = {}): Promise<RunningRunsc> => {
  await acquire()
  let stdout = ""
  let stderr = ""
  let ended = false
  const listeners = new Set<() => void>()
  const notify = () => listeners.forEach((l) => l())

  const child = spawn(runscBin, [...args], {
    cwd: options.cwd ?? Os.tmpdir(),
    env: { ...process.env, [HOST_SECRET_VAR]: "1", ...options.env },
    stdio: ["pipe", "pipe", "pipe"]
  })
  child.stdout!.setEncoding("utf8")
  child.stderr!.setEncoding("utf8")
  child.stdout!.on("data", (chunk: string) => {
    stdout += chunk
    notify()
  })
  child.stderr!.on("data", (chunk: string) => {
    stderr += chunk
    notify()
  })
  // The guest may exit before reading its stdin: ignore EPIPE on our side.
  child.stdin!.on("error", () => {})
  if (options.input !== undefined) child.stdin!.end(options.input)
  else child.stdin!.end()

  let timedOut = false
  const timer = setTimeout(() => {
    timedOut = true
    child.kill("SIGKILL")
  }, options.timeoutMs ?? 25_000)

  const result = new Promise<RunResult>((resolve, reject) => {
    child.on("error", (error) => {
      clearTimeout(timer)
      ended = true
      notify()
      release()
      reject(error)
    })
    // "close" fires after the exit and after both output streams have ended.
    child.on("close", (code, signal) => {
      clearTimeout(timer)
      ended = true
      notify()
      release()
      resolve({ code, signal, stdout, stderr, timedOut })
    })
  })
  // Avoid an unhandled rejection when a test only awaits waitForStdout and fails there.
  result.catch(() => {})

  const waitForStdout = (text: string, timeoutMs = 15_000) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (stdout.includes(text)) {
          cleanup()
          resolve()
        } else if (ended) {
          cleanup()
          reject(new Error(`runsc ended before printing ${JSON.stringify(text)}; stdout=${JSON.stringify(stdout)} stderr=${JSON.stringify(stderr)}`))
        }
      }
      const t = setTimeout(() => {
        cleanup()
        reject(new Error(`timed out waiting for ${JSON.stringify(text)}; stdout=${JSON.stringify(stdout)} stderr=${JSON.stringify(stderr)}`))
      }, timeoutMs)
      const cleanup = () => {
        clearTimeout(t)
        listeners.delete(check)
      }
      listeners.add(check)
      check()
    })

  return { child, result, stdout: () => stdout, stderr: () => stderr, waitForStdout }
}

/** Runs `runsc ARGS...` to completion. */
export const runsc = async (args: ReadonlyArray<string>, options: RunOptions = {}): Promise<RunResult> =>
  (await startRunsc(args, options)).result

/** The lines of a text (without the empty string after a final newline). */
export const lines = (text: string): Array<string> => {
  const all = text.split("\n")
  if (all.length > 0 && all[all.length - 1] === "") all.pop()
  return all
}

/** Path of a compiled C fixture on the host: test/fixtures/c/<name>.wasm. */
export const cFixture = (name: string): string => Path.join(fixturesDir, "c", `${name}.wasm`)

const loadWabt = async () => (await import("wabt")).default()
let wabtPromise: ReturnType<typeof loadWabt> | undefined

/** Assembles WAT text into a wasm binary with the npm `wabt` package. */
export const assembleWat = async (text: string, name = "guest.wat"): Promise<Uint8Array> => {
  wabtPromise ??= loadWabt()
  const wabt = await wabtPromise
  const module = wabt.parseWat(name, text)
  try {
    module.resolveNames()
    module.validate()
    return new Uint8Array(module.toBinary({}).buffer)
  } finally {
    module.destroy()
  }
}

/** Assembles test/fixtures/wat/<name>.wat. */
export const watFixture = async (name: string): Promise<Uint8Array> =>
  assembleWat(Fs.readFileSync(Path.join(fixturesDir, "wat", `${name}.wat`), "utf8"), `${name}.wat`)

/** A fresh directory under the OS temp dir; remove it with removeDir. */
export const makeTempDir = (prefix = "runsc-e2e-"): Promise<string> => Fs.promises.mkdtemp(Path.join(Os.tmpdir(), prefix))

export const removeDir = (dir: string): Promise<void> => Fs.promises.rm(dir, { recursive: true, force: true })

/**
 * SIGKILLs the sandbox of every state record under `work`'s `root-*` state directories: a test
 * that failed half-way may have left one behind, and none may outlive the suite.
 */
export const killSandboxesUnder = (work: string): void => {
  for (const dir of Fs.readdirSync(work).filter((d) => d.startsWith("root-"))) {
    for (const file of Fs.readdirSync(Path.join(work, dir)).filter((f) => f.endsWith(".state.json"))) {
      try {
        process.kill(JSON.parse(Fs.readFileSync(Path.join(work, dir, file), "utf8")).sandboxPid, "SIGKILL")
      } catch {
        // Gone already, or not a state record.
      }
    }
  }
}

/** Writes an executable file (mode 0755) at `rel` inside `root`, creating parent directories. */
export const putExecutable = async (root: string, rel: string, bytes: Uint8Array | string): Promise<string> => {
  const target = Path.join(root, rel)
  await Fs.promises.mkdir(Path.dirname(target), { recursive: true })
  await Fs.promises.writeFile(target, bytes)
  await Fs.promises.chmod(target, 0o755)
  return target
}

/** Copies C fixtures into `root` at /bin/<name> (no .wasm suffix), mode 0755. */
export const installFixtures = async (root: string, names: ReadonlyArray<string>): Promise<void> => {
  for (const name of names) {
    await putExecutable(root, Path.join("bin", name), await Fs.promises.readFile(cFixture(name)))
  }
}

/** Writes a plain file inside `root`, creating parent directories. */
export const putFile = async (root: string, rel: string, content: string): Promise<string> => {
  const target = Path.join(root, rel)
  await Fs.promises.mkdir(Path.dirname(target), { recursive: true })
  await Fs.promises.writeFile(target, content)
  return target
}

/** A bundle directory with config.json (the given process args) and a rootfs holding fixtures. */
export const makeBundle = async (
  processArgs: ReadonlyArray<string>,
  fixtures: ReadonlyArray<string>
): Promise<{ readonly dir: string; readonly rootfs: string }> => {
  const dir = await makeTempDir("runsc-e2e-bundle-")
  const rootfs = Path.join(dir, "rootfs")
  await Fs.promises.mkdir(rootfs)
  await installFixtures(rootfs, fixtures)
  await Fs.promises.writeFile(
    Path.join(dir, "config.json"),
    JSON.stringify(
      {
        ociVersion: "1.0.2",
        process: { terminal: false, user: { uid: 0, gid: 0 }, args: processArgs, env: [`PATH=${DEFAULT_GUEST_PATH}`], cwd: "/" },
        root: { path: "rootfs", readonly: true },
        hostname: "e2e"
      },
      null,
      2
    )
  )
  return { dir, rootfs }
}

/** A container id unlikely to collide with another test's. */
/**
 * How many connections the server listening on the Unix socket `path` has accepted and not yet
 * closed (from /proc/net/unix: an accepted socket carries its listener's path, in state 03,
 * connected): how a test sees that a CLI is waiting on a sandbox's control socket.
 */
export const connectionsTo = (path: string): number =>
  Fs.readFileSync("/proc/net/unix", "utf8").split("\n").filter((line) => {
    const fields = line.trim().split(/\s+/)
    return fields[7] === path && fields[5] === "03"
  }).length

export const uniqueId = (prefix: string): string => `${prefix}-${randomBytes(4).toString("hex")}`

/**
 * Asserts the shape of a CLI failure: exit 128 (not a signal), and stderr is exactly one line
 * starting with "runsc: " (no stack trace). Returns that line.
 */
export const cliFailureLine = (result: RunResult): string => {
  const problems: Array<string> = []
  if (result.timedOut) problems.push("timed out")
  if (result.code !== 128) problems.push(`exit code ${result.code} (signal ${result.signal}), expected 128`)
  const errLines = lines(result.stderr)
  if (errLines.length !== 1) problems.push(`expected exactly one stderr line, got ${errLines.length}`)
  if (!result.stderr.endsWith("\n")) problems.push("stderr does not end with a newline")
  const first = errLines[0] ?? ""
  if (!first.startsWith("runsc: ")) problems.push(`stderr does not start with "runsc: "`)
  if (problems.length > 0) {
    throw new Error(`${problems.join("; ")}\nstdout=${JSON.stringify(result.stdout)}\nstderr=${JSON.stringify(result.stderr)}`)
  }
  return first
}

/** Waits until `check` holds (polled every 50 ms), or fails naming `what` after `ms`. */
export const until = async (what: string, check: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> => {
  const deadline = performance.now() + ms
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting until ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/** A readable summary of a result, for assertion messages. */
export const describeResult = (r: RunResult): string =>
  `code=${r.code} signal=${r.signal} timedOut=${r.timedOut}\nstdout=${JSON.stringify(r.stdout)}\nstderr=${JSON.stringify(r.stderr)}`

/**
 * `runsc create`: its sandbox inherits create's stdio (the container's), so they go to a file in
 * `outDir`, read back by `output`; create is done when it exits (its sandbox keeps the file open).
 */
export const createContainer = (
  flags: ReadonlyArray<string>,
  bundle: string,
  id: string,
  outDir: string,
  extra: ReadonlyArray<string> = []
) =>
  new Promise<{ code: number | null; output: () => string }>((resolve) => {
    const outPath = Path.join(outDir, `${id}.out`)
    const out = Fs.openSync(outPath, "w")
    const child = spawn(runscBin, [...flags, "create", "--bundle", bundle, ...extra, id], { stdio: ["ignore", out, out] })
    Fs.closeSync(out)
    child.once("exit", (code) => resolve({ code, output: () => Fs.readFileSync(outPath, "utf8") }))
  })
