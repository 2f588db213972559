/**
 * What runsc is, for engines: `runsc --version` in runc's shape, and `runsc features`, the
 * runtime-spec's features document (what of config.json this runtime recognizes). Each list
 * names only what runsc acts on; what it accepts and ignores is left out, as the spec asks.
 */
import { Command } from "@effect/cli"
import { ociSpecVersion } from "@runsc/spec"
import { print } from "./container.js"

export const RUNSC_VERSION = "0.1.0"

/** `runsc --version` (and `-v`): runc's first lines, `runsc version X` and `spec: V`. */
export const versionText = `runsc version ${RUNSC_VERSION}\nspec: ${ociSpecVersion}`

/** The features document (runtime-spec features.md). */
export const features = {
  ociVersionMin: "1.0.0",
  ociVersionMax: ociSpecVersion,
  // Hooks are not run: none is recognized.
  hooks: [],
  // Mount options acted on: bind mounts and their read-only flag (others are ignored).
  mountOptions: ["bind", "rbind", "ro", "rw"],
  linux: {
    // A container gets its own mount namespace, and a PID namespace when the spec asks; the
    // other kinds are accepted and have no effect on a wasm guest.
    namespaces: ["mount", "pid"],
    capabilities: [],
    // The sandbox process goes into the spec's cgroup (cgroups.ts); systemd's paths are made
    // directly in cgroupfs, with no unit (so no systemdUser).
    cgroup: { v1: true, v2: true, systemd: true, systemdUser: false, rdma: false },
    seccomp: { enabled: false },
    apparmor: { enabled: false },
    selinux: { enabled: false },
    intelRdt: { enabled: false }
  },
  annotations: {
    "dev.runsc.version": RUNSC_VERSION,
    "dev.runsc.guest": "WebAssembly (WASI preview1) modules"
  }
} as const

export const featuresCommand = Command.make("features", {}, () => print(JSON.stringify(features, null, 2))).pipe(
  Command.withDescription("print the OCI features document: what of config.json this runtime recognizes")
)
