/**
 * runsc behind a real engine: Debian's podman with runsc as its OCI runtime, driving wasm
 * images built here from the C fixtures (`FROM scratch`, no registry): run (stdout, exit code,
 * piped stdin), detached + logs + wait, exec (output, exit code, stdin), pause/unpause, stop,
 * rm, and no state left behind. `.ci/run` installs podman; where it is not installed or cannot
 * run here, the tests are skipped and say which check failed.
 *
 * podman is given its own containers.conf and storage.conf under a temporary directory (vfs
 * storage, no network namespace, cgroupfs, file events), so nothing of the machine's podman
 * setup is used or changed. runsc is reached through a wrapper named `runsc` (podman passes
 * gVisor-style flags to a runtime of that name) that adds a private `--root`.
 */
import { assert, describe, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { afterAll, beforeAll } from "vitest"
import { fixturesDir, makeTempDir, removeDir, runscBin } from "./helpers.js"

/** Why podman cannot be used here, or undefined when it can. */
const unusable = (): string | undefined => {
  const version = spawnSync("podman", ["--version"], { encoding: "utf8" })
  if (version.error !== undefined || version.status !== 0) return "podman is not installed (apt-get install podman; .ci/run installs it)"
  if (process.getuid?.() !== 0) return "not root (this test runs podman rootful, with its own storage)"
  return undefined
}
const skipReason = unusable()
if (skipReason !== undefined) console.warn(`podman.test.ts: skipped: ${skipReason}`)

let dir = ""
const IMAGE = "localhost/runsc-e2e-fixtures"

/** podman with this test's configuration; bounded, so that a hung engine fails the test instead of CI. */
const podman = (args: ReadonlyArray<string>, input?: string) => {
  const r = spawnSync("podman", args, {
    encoding: "utf8",
    input: input ?? "",
    timeout: 90_000,
    killSignal: "SIGKILL",
    env: { ...process.env, CONTAINERS_CONF: Path.join(dir, "containers.conf"), CONTAINERS_STORAGE_CONF: Path.join(dir, "storage.conf") }
  })
  return { code: r.status, stdout: r.stdout ?? "", stderr: r.stderr ?? "", describe: () => `podman ${args.join(" ")}: status ${r.status}${r.error ? ` (${r.error.message})` : ""}\n${r.stderr}` }
}

const ok = (args: ReadonlyArray<string>, input?: string) => {
  const r = podman(args, input)
  assert.strictEqual(r.code, 0, r.describe())
  return r.stdout
}

beforeAll(async () => {
  if (skipReason !== undefined) return
  dir = await makeTempDir("runsc-e2e-podman-")
  const state = Path.join(dir, "state")
  Fs.mkdirSync(Path.join(dir, "bin"))
  Fs.writeFileSync(Path.join(dir, "bin", "runsc"), `#!/bin/sh\nexec ${JSON.stringify(runscBin)} --root ${JSON.stringify(state)} "$@"\n`, { mode: 0o755 })
  Fs.writeFileSync(
    Path.join(dir, "containers.conf"),
    [
      "[containers]",
      `netns = "none"`,
      "[engine]",
      `cgroup_manager = "cgroupfs"`,
      `events_logger = "file"`,
      `tmp_dir = "${Path.join(dir, "tmp")}"`,
      `runtime = "runsc"`,
      "[engine.runtimes]",
      `runsc = ["${Path.join(dir, "bin", "runsc")}"]`,
      ""
    ].join("\n")
  )
  Fs.writeFileSync(
    Path.join(dir, "storage.conf"),
    ["[storage]", `driver = "vfs"`, `runroot = "${Path.join(dir, "run")}"`, `graphroot = "${Path.join(dir, "storage")}"`, ""].join("\n")
  )
  const context = Path.join(dir, "context")
  Fs.mkdirSync(context)
  const programs = ["cat", "exit", "sleep", "echo_args"]
  for (const p of programs) Fs.copyFileSync(Path.join(fixturesDir, "c", `${p}.wasm`), Path.join(context, p))
  Fs.writeFileSync(Path.join(context, "Containerfile"), ["FROM scratch", ...programs.map((p) => `COPY ${p} /${p}`), ""].join("\n"))
  ok(["build", "-q", "-t", IMAGE, context])
}, 180_000)

afterAll(async () => {
  if (skipReason !== undefined) return
  podman(["rm", "-af", "-t", "0"])
  podman(["system", "reset", "-f"])
  await removeDir(dir)
}, 180_000)

describe.skipIf(skipReason !== undefined)("podman with runsc as its runtime", () => {
  it("run: the guest's output, its exit code, piped stdin, a terminal, a missing entrypoint (127); --rm leaves no container state in runsc", () => {
    assert.strictEqual(ok(["run", "--rm", IMAGE, "/echo_args", "a", "b c"]), "argv[0]=/echo_args\nargv[1]=a\nargv[2]=b c\n")
    assert.strictEqual(podman(["run", "--rm", IMAGE, "/exit", "7"]).code, 7)
    assert.strictEqual(ok(["run", "--rm", "-i", IMAGE, "/cat"], "hi from the host\n"), "hi from the host\n")
    // -t: the container's stdio is a terminal runsc opened and sent podman (--console-socket).
    assert.strictEqual(ok(["run", "--rm", "-t", IMAGE, "/echo_args", "on a tty"]), "argv[0]=/echo_args\r\nargv[1]=on a tty\r\n")
    // A missing entrypoint fails the create, with a reason podman knows: 127, as with runc.
    const missing = podman(["run", "--rm", "--entrypoint", "/nope", IMAGE])
    assert.strictEqual(missing.code, 127, missing.describe())
    assert.match(missing.stderr, /\/nope: no such file or directory/)
    assert.deepStrictEqual(Fs.readdirSync(Path.join(dir, "state")), [], "runsc's state root is empty")
  }, 180_000)

  it("detached: exec (output, exit code, stdin), pause/unpause, stop (SIGTERM: 143), logs and wait, rm", () => {
    ok(["run", "-d", "--name", "sleeper", IMAGE, "/sleep", "120"])
    assert.strictEqual(ok(["exec", "sleeper", "/echo_args", "x"]), "argv[0]=/echo_args\nargv[1]=x\n")
    assert.strictEqual(podman(["exec", "sleeper", "/exit", "5"]).code, 5)
    assert.strictEqual(ok(["exec", "-i", "sleeper", "/cat"], "into the exec\n"), "into the exec\n")
    ok(["pause", "sleeper"])
    assert.strictEqual(ok(["inspect", "sleeper", "--format", "{{.State.Status}}"]).trim(), "paused")
    ok(["unpause", "sleeper"])
    assert.strictEqual(ok(["inspect", "sleeper", "--format", "{{.State.Status}}"]).trim(), "running")
    ok(["stop", "-t", "5", "sleeper"])
    assert.strictEqual(ok(["inspect", "sleeper", "--format", "{{.State.ExitCode}}"]).trim(), "143")
    ok(["rm", "sleeper"])

    ok(["run", "-d", "--name", "logger", IMAGE, "/echo_args", "logged"])
    assert.strictEqual(ok(["wait", "logger"]).trim(), "0")
    assert.strictEqual(ok(["logs", "logger"]), "argv[0]=/echo_args\nargv[1]=logged\n")
    ok(["rm", "logger"])
    assert.deepStrictEqual(Fs.readdirSync(Path.join(dir, "state")), [], "runsc's state root is empty")
  }, 300_000)
})
