/**
 * The template `config.json` that `runsc spec` writes, and its serialisation. The template mirrors
 * runc's so that people who know that one recognise this one, except that argv names a wasm module.
 */
import { Schema } from "effect"
import { defaultPath } from "./env.js"
import { Spec } from "./schema.js"

const defaultCapabilities = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"] as const

/** The runtime-spec version runsc's model of config.json follows (what `runsc spec` writes). */
export const ociSpecVersion = "1.0.2"

/** `args` defaults to `["hello.wasm"]`; an empty `args` also gets the default, since argv must not be empty. */
export const defaultSpec = (args?: ReadonlyArray<string>): Spec => {
  const argv: readonly [string, ...Array<string>] = args !== undefined && args.length > 0
    ? [args[0]!, ...args.slice(1)]
    : ["hello.wasm"]
  return {
    ociVersion: ociSpecVersion,
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      args: argv,
      env: [`PATH=${defaultPath}`, "TERM=xterm"],
      cwd: "/",
      capabilities: {
        bounding: [...defaultCapabilities],
        effective: [...defaultCapabilities],
        permitted: [...defaultCapabilities]
      },
      rlimits: [{ type: "RLIMIT_NOFILE", hard: 1024, soft: 1024 }],
      noNewPrivileges: true
    },
    root: { path: "rootfs", readonly: true },
    hostname: "runsc",
    mounts: [
      { destination: "/proc", type: "proc", source: "proc" },
      { destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "strictatime", "mode=755", "size=65536k"] },
      { destination: "/tmp", type: "tmpfs", source: "tmpfs", options: ["nosuid", "nodev", "mode=1777"] }
    ],
    linux: {
      namespaces: [{ type: "pid" }, { type: "network" }, { type: "ipc" }, { type: "uts" }, { type: "mount" }]
    }
  }
}

const encode = Schema.encodeSync(Spec)

/**
 * Pretty JSON (2-space indent, trailing newline) as `runsc spec` writes it. A `Spec` value that
 * violates the schema (built by hand, bypassing decode) is a bug, so encoding throws rather than
 * returning a typed error.
 */
export const encodeSpecJson = (spec: Spec): string => `${JSON.stringify(encode(spec), null, 2)}\n`
