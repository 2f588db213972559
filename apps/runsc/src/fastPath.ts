/**
 * The fast path of the commands engines run around every container: `state ID`, `kill ID
 * [SIG]`, `start ID` and `delete [--force] ID`. Each is a read of the state file and one or two
 * control calls, and loading the CLI (Effect, @effect/cli, the RPC client: ~150 ms of module
 * evaluation and first runs) would cost several times the work. So bin/runsc.cjs runs this plain
 * module first, with nothing of Effect loaded, and the full CLI only when it declines.
 *
 * The contract: the fast path does only what the full CLI would do on the same command line,
 * prints byte for byte what it prints, and declines (`Declined`, before any change) whenever
 * anything is off the common case: another flag, an id it cannot read a record for, a
 * reservation, a sub-container's delete, a lock held by someone else, a sandbox that does not
 * answer, an error to report. A failure the sandbox answers to a call that changed something
 * (start, kill) is handed back (`Refused`) for the full CLI to describe: its typed errors have
 * the messages. Tests run each command both ways and compare (apps/runsc/test/fastPath.test.ts).
 *
 * Plain and synchronous where it can be, as the hot paths are: the control protocol here is
 * @effect/rpc's NDJSON as the sandbox serves it (one `Request` line per call, one `Exit` line per
 * answer), spoken with node:net.
 */
import { forwardableHostSignals, parseSignal, SIGKILL } from "@runsc/abi"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { removeCgroupDirs } from "./cgroupfs.js"
import { isAlive, processStart } from "./hostProcess.js"

export type FastResult =
  | { readonly _tag: "Done"; readonly code: number }
  | { readonly _tag: "Declined" }
  | { readonly _tag: "Refused"; readonly method: string; readonly cause: unknown }

const declined: FastResult = { _tag: "Declined" }
const done = (code = 0): FastResult => ({ _tag: "Done", code })

/** @runsc/spec's isValidContainerId, which this module cannot load (it needs Effect); a test holds them equal. */
export const isPlainContainerId = (id: string): boolean =>
  id !== "." && id !== ".." && id.length <= 255 && /^[\w+\-.]+$/.test(id)

/** The part of a state record this path reads (state.ts's ContainerRecord). */
interface Record {
  readonly id: string
  readonly bundle: string
  readonly sandboxPid: number
  readonly sandboxStart: string
  readonly socket: string
  readonly phase: string
  readonly annotations: unknown
  readonly sandboxId?: string
  readonly cgroups?: ReadonlyArray<string>
}

/** The record of `id`, when its file is a regular file holding a record of that id; else undefined. */
const readRecord = (root: string, id: string): Record | undefined => {
  try {
    const file = Path.join(root, `${id}.state.json`)
    if (!Fs.lstatSync(file).isFile()) return undefined
    const r = JSON.parse(Fs.readFileSync(file, "utf8"))
    const ok = typeof r === "object" && r !== null && r.id === id && typeof r.bundle === "string" &&
      Number.isInteger(r.sandboxPid) && typeof r.sandboxStart === "string" && typeof r.socket === "string" &&
      typeof r.phase === "string" && typeof r.annotations === "object" &&
      (r.sandboxId === undefined || typeof r.sandboxId === "string") &&
      (r.cgroups === undefined || (Array.isArray(r.cgroups) && r.cgroups.every((c: unknown) => typeof c === "string")))
    return ok ? r : undefined
  } catch {
    return undefined
  }
}

/**
 * Whether the sandbox of a created record wrote state.ts's ABANDONED_RECORD ("abandoned") as its
 * exit record: its create was killed before confirming it, and the full CLI removes the record.
 */
const neverConfirmed = (root: string, id: string): boolean => {
  try {
    return Fs.readFileSync(Path.join(root, `${id}.exit`), "utf8").trim() === "abandoned"
  } catch {
    return false
  }
}

const sleep = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)

/** The answer to one call: its Exit as the server encoded it. */
type Answer = { readonly _tag: "Success"; readonly value: unknown } | { readonly _tag: "Failure"; readonly cause: unknown }

/** The longest answer line taken (the control server's own frame limit, MAX_FRAME_BYTES). */
const MAX_ANSWER_BYTES = 1024 * 1024

/** The control calls' time limit, as the full CLI's (control's `call`). */
const CALL_LIMIT_MS = 30_000

/** A connection to a sandbox's control socket; `call` fails (rejects) when the connection does. */
const connect = (
  socket: string,
  limitMs = CALL_LIMIT_MS
): Promise<{ readonly call: (tag: string, payload: object) => Promise<Answer>; readonly close: () => void }> =>
  new Promise((resolve, reject) => {
    const conn = Net.createConnection(socket)
    const waiting = new Map<string, { resolve: (a: Answer) => void; reject: (e: Error) => void }>()
    let buffered = ""
    let next = 0
    const fail = (e: Error) => {
      for (const w of waiting.values()) w.reject(e)
      waiting.clear()
      conn.destroy()
    }
    if (limitMs > 0) conn.setTimeout(limitMs, () => fail(new Error("no answer in time")))
    conn.on("error", (e) => {
      reject(e)
      fail(e)
    })
    conn.on("close", () => fail(new Error("the sandbox closed the connection")))
    conn.on("data", (chunk) => {
      buffered += chunk.toString("utf8")
      // A sandbox that sends an endless line (a compromised one) cannot make this CLI hold it.
      if (buffered.length > MAX_ANSWER_BYTES && buffered.indexOf("\n") < 0) return fail(new Error("an answer longer than any the protocol sends"))
      for (let nl = buffered.indexOf("\n"); nl >= 0; nl = buffered.indexOf("\n")) {
        const line = buffered.slice(0, nl)
        buffered = buffered.slice(nl + 1)
        let message: { _tag?: unknown; requestId?: unknown; exit?: Answer }
        try {
          message = JSON.parse(line)
        } catch {
          return fail(new Error("a malformed answer"))
        }
        if (message._tag !== "Exit" || typeof message.requestId !== "string") continue
        const w = waiting.get(message.requestId)
        waiting.delete(message.requestId)
        if (message.exit?._tag === "Success" || message.exit?._tag === "Failure") w?.resolve(message.exit)
        else w?.reject(new Error("a malformed answer"))
      }
    })
    conn.on("connect", () =>
      resolve({
        call: (tag, payload) =>
          new Promise((resolve, reject) => {
            const id = `${next++}`
            waiting.set(id, { resolve, reject })
            conn.write(`${JSON.stringify({ _tag: "Request", id, tag, payload, headers: [] })}\n`)
          }),
        close: () => conn.end()
      }))
  })

type Connection = Awaited<ReturnType<typeof connect>>

const failedWith = (answer: Answer, tag: string): boolean =>
  answer._tag === "Failure" && (answer.cause as { _tag?: unknown; error?: { _tag?: unknown } })?.error?._tag === tag &&
  (answer.cause as { _tag?: unknown })._tag === "Fail"

/**
 * The status the full CLI computes (container.ts's statusOf) for a record that is not a
 * reservation; undefined where that would take more than this path does (a sandbox that does
 * not answer).
 */
const statusOf = async (record: Record, conn: () => Promise<Connection>, paused: boolean): Promise<string | undefined> => {
  if (!isAlive(record.sandboxPid, record.sandboxStart) || record.phase === "start-failed") return "stopped"
  const c = await conn()
  const state = await c.call("RuntimeState", { id: record.id })
  if (failedWith(state, "ContainerNotFound")) return "stopped"
  if (state._tag !== "Success") return undefined
  if (state.value !== "running") return state.value === "creating" ? "created" : "stopped"
  if (!paused) return "running"
  const isPaused = await c.call("IsPaused", {})
  return isPaused._tag === "Success" ? (isPaused.value === true ? "paused" : "running") : undefined
}


/** A call that may have changed something: answered, refused, or (transport) reported here. */
const changing = async (c: Connection, record: Record, method: string, payload: object): Promise<FastResult> => {
  let answer: Answer
  try {
    answer = await c.call(method, payload)
  } catch (e) {
    Fs.writeSync(2, `runsc: the sandbox of ${record.id} did not answer ${method}: ${(e as Error).message}\n`)
    return done(128)
  }
  return answer._tag === "Success" ? done() : { _tag: "Refused", method, cause: answer.cause }
}

const state = async (record: Record, conn: () => Promise<Connection>, stdout: number): Promise<FastResult> => {
  const status = await statusOf(record, conn, true)
  if (status === undefined) return declined
  Fs.writeSync(stdout, `${JSON.stringify(
    {
      ociVersion: "1.0.2",
      id: record.id,
      status,
      pid: status === "stopped" ? 0 : record.sandboxPid,
      bundle: record.bundle,
      annotations: record.annotations
    },
    null,
    2
  )}\n`)
  return done()
}

const kill = async (record: Record, conn: () => Promise<Connection>, signo: number): Promise<FastResult> => {
  const status = await statusOf(record, conn, false)
  if (status !== "created" && status !== "running") return declined
  return changing(await conn(), record, "Signal", { id: record.id, pid: 0, signo, mode: "Process" })
}

const start = async (record: Record, conn: () => Promise<Connection>): Promise<FastResult> => {
  if ((await statusOf(record, conn, false)) !== "created") return declined
  return record.sandboxId === undefined
    ? changing(await conn(), record, "StartRoot", {})
    : changing(await conn(), record, "StartSubcontainer", { id: record.id, stdio: {} })
}

/** The lock the full CLI takes around a removal (containerLock.ts): taken here only if free. */
const lockTarget = () => `runsc-lock:${process.pid}:${processStart(process.pid)}`

/**
 * A root container's delete (state.ts's removal under its lock, container.ts's removeContainer):
 * its sandbox killed if it still runs, its cgroup and files removed.
 */
const remove = async (root: string, record: Record, conn: () => Promise<Connection>, force: boolean): Promise<FastResult> => {
  if (record.sandboxId !== undefined) return declined
  if (isAlive(record.sandboxPid, record.sandboxStart)) {
    // With --force, a sandbox that does not answer is killed like a running one.
    const status = await statusOf(record, conn, true).catch(() => undefined) ?? (force ? "running" : undefined)
    if (status === undefined || (!force && status !== "stopped" && status !== "created")) return declined
    try {
      process.kill(record.sandboxPid, SIGKILL)
    } catch {
      // Gone meanwhile.
    }
    for (let i = 0; i < 500 && isAlive(record.sandboxPid, record.sandboxStart); i++) sleep(10)
  }
  let left = removeCgroupDirs(record.cgroups ?? [])
  for (let i = 0; i < 100 && left.length > 0; i++) {
    sleep(10)
    left = removeCgroupDirs(left)
  }
  if (left.length > 0) return declined
  const lock = Path.join(root, `${record.id}.lock`)
  const target = lockTarget()
  try {
    Fs.symlinkSync(target, lock)
  } catch {
    return declined
  }
  try {
    for (const suffix of [".state.json", ".exit", ".exit.tmp", ".sock", ".fds"]) Fs.rmSync(Path.join(root, `${record.id}${suffix}`), { force: true })
  } finally {
    if (Fs.readlinkSync(lock) === target) Fs.unlinkSync(lock)
  }
  return done()
}

/** The global flags this path takes (the rest are the full CLI's): --root, and those that change nothing here. */
const parseGlobals = (args: ReadonlyArray<string>): { readonly root: string; readonly rest: ReadonlyArray<string> } | undefined => {
  let root: string | undefined
  let i = 0
  for (; i < args.length && args[i]!.startsWith("-"); i++) {
    const arg = args[i]!
    const eq = arg.indexOf("=")
    const flag = eq < 0 ? arg : arg.slice(0, eq)
    if (flag === "--systemd-cgroup" && eq < 0) continue
    if (!["--root", "--log", "--log-format", "--rootless", "--network"].includes(flag)) return undefined
    const value = eq < 0 ? args[++i] : arg.slice(eq + 1)
    if (value === undefined) return undefined
    if (flag === "--root") root = value
    if (flag === "--log-format" && value !== "text" && value !== "json") return undefined
    if (flag === "--network" && !["sandbox", "none", "host"].includes(value)) return undefined
  }
  const xdg = process.env["XDG_RUNTIME_DIR"]
  return { root: Path.resolve(root ?? (xdg ? Path.join(xdg, "runsc") : "/var/run/runsc")), rest: args.slice(i) }
}

/** 128 + SIGKILL: what a holder exits with when its process never ran, or its sandbox is gone. */
const NEVER_RAN = 128 + SIGKILL

/**
 * A waiter (holder.ts): `exec-waiter --sync-fd N --socket S [--terminal] [--relay P:S] ID PID`
 * or `container-waiter --sync-fd N --socket S [--terminal] [--relay P:S] ID`, what `exec
 * --detach` and a pod container's create leave behind, each of which lives as long as its
 * process: a Node process with the CLI loaded costs ~30 MB and ~150 ms more than this.
 * Declines any other shape.
 */
const wait = async (command: string, args: ReadonlyArray<string>): Promise<FastResult> => {
  const options = new Map<string, string>()
  let terminal = false
  let i = 0
  for (; i < args.length && args[i]!.startsWith("--"); i++) {
    const flag = args[i]!
    if (flag === "--terminal") terminal = true
    else if (["--sync-fd", "--socket", "--relay"].includes(flag) && args[i + 1] !== undefined) options.set(flag, args[++i]!)
    else return declined
  }
  const operands = args.slice(i)
  const [id, pidText] = operands
  const syncFd = Number(options.get("--sync-fd"))
  const socket = options.get("--socket")
  const pid = Number(pidText)
  const shape = command === "exec-waiter" ? operands.length === 2 && Number.isInteger(pid) && pid > 0 : operands.length === 1
  if (!shape || id === undefined || !isPlainContainerId(id) || socket === undefined || !Number.isInteger(syncFd)) return declined
  // The signals this holder gets go on to its process (its init: pid 0), or its terminal's foreground group.
  const mode = terminal ? "ForegroundProcessGroup" : "Process"
  for (const name of forwardableHostSignals) {
    process.on(name as NodeJS.Signals, () => {
      connect(socket).then(
        (c) => c.call("Signal", { id, pid: command === "exec-waiter" ? pid : 0, signo: Os.constants.signals[name as NodeJS.Signals], mode }).finally(c.close),
        () => {}
      ).catch(() => {})
    })
  }
  let code = NEVER_RAN
  try {
    // Held until the process ends, however long; the connection dropping (this process killed)
    // is what makes the sandbox kill the process.
    const c = await connect(socket, 0)
    const held = command === "exec-waiter" ? c.call("WaitPid", { id, pid, holder: true }) : c.call("HoldContainer", { id })
    // The sandbox serves a connection's calls in order: once this is answered, the hold is registered.
    await c.call("IsPaused", {})
    try {
      Fs.writeSync(syncFd, "ready\n")
      Fs.closeSync(syncFd)
    } catch {
      // Nobody reads the line.
    }
    const answer = await held
    const status = answer._tag === "Success" ? (answer.value as { _tag?: unknown; code?: unknown; signal?: unknown }) : undefined
    if (status?._tag === "Exited" && typeof status.code === "number") code = status.code
    else if (status?._tag === "Signaled" && typeof status.signal === "number") code = 128 + status.signal
    c.close()
  } catch {
    // The sandbox is gone: so is the process.
  }
  // An engine takes this process's exit for the end of the output: the relay helper lending the
  // process its stdio must have written all of it first (bounded: a child the process left
  // behind may hold the stream open).
  const [helperPid, helperStart] = (options.get("--relay") ?? "").split(":")
  for (let n = 0; n < 200 && helperPid !== "" && isAlive(Number(helperPid), helperStart ?? ""); n++) sleep(10)
  return done(code)
}

/** Runs the command line if it is one this path takes (`argv` as process.argv; what it prints goes to `stdout`). */
export const fastPath = async (argv: ReadonlyArray<string>, stdout = 1): Promise<FastResult> => {
  const globals = parseGlobals(argv.slice(2))
  if (globals === undefined) return declined
  const { root, rest } = globals
  const [command, ...args] = rest
  if (command === "exec-waiter" || command === "container-waiter") return wait(command, args)
  const force = command === "delete" && args[0] === "--force"
  const operands = force ? args.slice(1) : args
  if (operands.some((a) => a.startsWith("-"))) return declined
  const id = operands[0]
  if (id === undefined || !isPlainContainerId(id)) return declined
  const record = readRecord(root, id)
  if (record === undefined) {
    // delete --force of a container that does not exist (nothing of it here) succeeds.
    const traces = [".state.json", ".sock", ".fds", ".exit", ".lock"].some((s) => {
      try {
        Fs.lstatSync(Path.join(root, `${id}${s}`))
        return true
      } catch {
        return false
      }
    })
    return command === "delete" && force && operands.length === 1 && !traces ? done() : declined
  }
  if (record.phase === "creating" || (record.phase === "created" && neverConfirmed(root, id))) return declined
  let connection: Promise<Connection> | undefined
  const conn = () => (connection ??= connect(record.socket))
  try {
    switch (command) {
      case "state":
        return operands.length === 1 ? await state(record, conn, stdout) : declined
      case "kill": {
        const signo = operands.length <= 2 ? parseSignal(operands[1] ?? "TERM") : undefined
        return signo === undefined ? declined : await kill(record, conn, signo)
      }
      case "start":
        return operands.length === 1 ? await start(record, conn) : declined
      case "delete":
        return operands.length === 1 ? await remove(root, record, conn, force) : declined
      default:
        return declined
    }
  } catch {
    // A call failed before the command changed anything (a start's or kill's own call is
    // answered in `changing`; a delete's kill is what the full CLI does first anyway).
    return declined
  } finally {
    if (connection !== undefined) connection.then((c) => c.close(), () => {})
  }
}
