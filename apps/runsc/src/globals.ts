/**
 * Global flags (they come before the command, as in runsc) and what they configure: logging
 * (--debug, --debug-log, --log-format), strace and the panic signal.
 */
import { Options } from "@effect/cli"
import { parseSignal } from "@runsc/abi"
import type { StraceOptions } from "@runsc/kernel"
import { Effect, Layer, Logger, LogLevel, Option } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { CannotWrite, InvalidFlag } from "./errors.js"

export const globalOptions = {
  root: Options.text("root").pipe(
    Options.withDescription("directory of container state and control sockets (default: $XDG_RUNTIME_DIR/runsc, else /var/run/runsc)"),
    Options.optional
  ),
  log: Options.text("log").pipe(
    Options.withDescription("append errors to this file as JSON lines {msg, level, time} (what containerd reads)"),
    Options.optional
  ),
  debug: Options.boolean("debug").pipe(Options.withDescription("enable debug logging")),
  debugLog: Options.text("debug-log").pipe(
    Options.withDescription("write debug logs and strace output to this file (default: stderr)"),
    Options.optional
  ),
  logFormat: Options.choice("log-format", ["text", "json"]).pipe(
    Options.withDescription("log format"),
    Options.withDefault("text" as const)
  ),
  strace: Options.boolean("strace").pipe(Options.withDescription("log every syscall of the sandbox")),
  straceSyscalls: Options.text("strace-syscalls").pipe(
    Options.withDescription("comma-separated syscalls to trace (default: all)"),
    Options.optional
  ),
  straceLogSize: Options.integer("strace-log-size").pipe(
    Options.withDescription("bytes of each buffer shown in strace output"),
    Options.withDefault(1024)
  ),
  panicSignal: Options.text("panic-signal").pipe(
    Options.withDescription("a signal that makes the sandbox dump its state and exit"),
    Options.optional
  ),
  watchdogAction: Options.choice("watchdog-action", ["log", "panic"]).pipe(
    Options.withDescription("what the watchdog does about tasks stuck in the sentry"),
    Options.withDefault("log" as const)
  ),
  unconfined: Options.boolean("unconfined").pipe(
    Options.withDescription("run sandbox processes without Node's permission model: they can then read every host file you can (not recommended)")
  ),
  allowRead: Options.text("allow-read").pipe(
    Options.withDescription("another host path a sandbox process may read, e.g. where a pod's other bundles live (repeatable)"),
    Options.repeated
  ),
  allowWrite: Options.text("allow-write").pipe(
    Options.withDescription("another host path a sandbox process may write, e.g. the rw bind sources of a pod's other containers (repeatable)"),
    Options.repeated
  ),
  network: Options.choice("network", ["sandbox", "none", "host"]).pipe(
    Options.withDescription(
      "the sandbox's network: sandbox (its own loopback, ports the spec publishes, TCP egress where dev.runsc.egress allows), none (its loopback alone), host (the host's, for TCP: trusted workloads only)"
    ),
    Options.withDefault("sandbox" as const)
  ),
  // Sent by engines (containerd with --runc-systemd-cgroup, rootless podman), with runc's meaning
  // for the sandbox's cgroup (cgroups.ts).
  systemdCgroup: Options.boolean("systemd-cgroup").pipe(
    Options.withDescription("runc's: linux.cgroupsPath is systemd's slice:prefix:name (made in cgroupfs, no unit)")
  ),
  rootless: Options.text("rootless").pipe(
    Options.withDescription("runc's: true, false or auto; with true a cgroup that cannot be managed is skipped with a warning"),
    Options.optional
  )
}

export interface GlobalFlags {
  readonly root: Option.Option<string>
  readonly log: Option.Option<string>
  readonly debug: boolean
  readonly debugLog: Option.Option<string>
  readonly logFormat: "text" | "json"
  readonly strace: boolean
  readonly straceSyscalls: Option.Option<string>
  readonly straceLogSize: number
  readonly panicSignal: Option.Option<string>
  readonly watchdogAction: "log" | "panic"
  readonly unconfined: boolean
  readonly allowRead: ReadonlyArray<string>
  readonly allowWrite: ReadonlyArray<string>
  readonly network: "sandbox" | "none" | "host"
  readonly systemdCgroup: boolean
  readonly rootless: Option.Option<string>
}

/** The fd logs and strace lines go to: the --debug-log file (appended), or stderr. */
const openLogFd = (flags: GlobalFlags) =>
  Option.match(flags.debugLog, {
    onNone: () => Effect.succeed(2),
    onSome: (path) =>
      Effect.acquireRelease(
        Effect.try({
          try: () => Fs.openSync(path, "a"),
          catch: (e) => new CannotWrite({ path, reason: (e as Error).message })
        }),
        (fd) => Effect.sync(() => Fs.closeSync(fd))
      )
  })

/** Everything the global flags decide, ready for the commands. */
export interface Runtime {
  readonly strace: StraceOptions | undefined
  readonly panicSignal: number | undefined
  readonly logger: Layer.Layer<never>
}

export const configure = (flags: GlobalFlags) =>
  Effect.gen(function*() {
    const fd = yield* openLogFd(flags)
    const write = (line: string) => {
      Fs.writeSync(fd, `${line}\n`)
    }
    const logger = Logger.make(({ date, logLevel, message }) => {
      const text = (Array.isArray(message) ? message : [message]).map((m) => (typeof m === "string" ? m : JSON.stringify(m))).join(" ")
      write(
        flags.logFormat === "json"
          ? JSON.stringify({ time: date.toISOString(), level: logLevel.label.toLowerCase(), msg: text })
          : `${date.toISOString()} ${logLevel.label} ${text}`
      )
    })
    const panicSignal = yield* Option.match(flags.panicSignal, {
      onNone: () => Effect.succeed(undefined),
      onSome: (text) => {
        const signo = parseSignal(text)
        return signo === undefined || signo === 0
          ? Effect.fail(new InvalidFlag({ flag: "--panic-signal", reason: `unknown signal ${JSON.stringify(text)}` }))
          : Effect.succeed(signo)
      }
    })
    const strace: StraceOptions | undefined = flags.strace
      ? {
        logSize: flags.straceLogSize,
        emit: (line) => write(`strace ${line}`),
        ...Option.match(flags.straceSyscalls, {
          onNone: () => ({}),
          onSome: (list) => ({ syscalls: new Set(list.split(",").map((s) => s.trim()).filter((s) => s.length > 0)) })
        })
      }
      : undefined
    // --log: errors also go there, one JSON line each.
    const errorLog = yield* Option.match(flags.log, {
      onNone: () => Effect.succeed(undefined),
      onSome: (path) =>
        Effect.map(
          Effect.acquireRelease(
            Effect.try({ try: () => Fs.openSync(path, "a"), catch: (e) => new CannotWrite({ path, reason: (e as Error).message }) }),
            (fd) => Effect.sync(() => Fs.closeSync(fd))
          ),
          (fd) =>
            Logger.make(({ date, logLevel, message }) => {
              if (!LogLevel.greaterThanEqual(logLevel, LogLevel.Error)) return
              const text = (Array.isArray(message) ? message : [message]).map((m) => (typeof m === "string" ? m : JSON.stringify(m))).join(" ")
              Fs.writeSync(fd, `${JSON.stringify({ msg: text, level: "error", time: date.toISOString() })}\n`)
            })
        )
    })
    const logLayer = Layer.mergeAll(
      errorLog ? Logger.replace(Logger.defaultLogger, Logger.zip(logger, errorLog)) : Logger.replace(Logger.defaultLogger, logger),
      Logger.minimumLogLevel(flags.debug ? LogLevel.Debug : LogLevel.Warning)
    )
    return { strace, panicSignal, logger: logLayer } satisfies Runtime
  })

/** The state root: --root, else $XDG_RUNTIME_DIR/runsc, else /var/run/runsc (absolute). */
export const rootDirOf = (flags: GlobalFlags): string =>
  Path.resolve(Option.getOrElse(flags.root, () => {
    const xdg = process.env["XDG_RUNTIME_DIR"]
    return xdg ? Path.join(xdg, "runsc") : "/var/run/runsc"
  }))

/** The global flags again, as arguments: what a sandbox process started by `create` gets. */
export const globalArgs = (flags: GlobalFlags): Array<string> => [
  "--root",
  rootDirOf(flags),
  ...Option.match(flags.log, { onNone: () => [], onSome: (f) => ["--log", Path.resolve(f)] }),
  ...(flags.debug ? ["--debug"] : []),
  ...Option.match(flags.debugLog, { onNone: () => [], onSome: (f) => ["--debug-log", Path.resolve(f)] }),
  "--log-format",
  flags.logFormat,
  ...(flags.strace ? ["--strace"] : []),
  ...Option.match(flags.straceSyscalls, { onNone: () => [], onSome: (s) => ["--strace-syscalls", s] }),
  "--strace-log-size",
  `${flags.straceLogSize}`,
  ...Option.match(flags.panicSignal, { onNone: () => [], onSome: (s) => ["--panic-signal", s] }),
  "--watchdog-action",
  flags.watchdogAction,
  "--network",
  flags.network
]
