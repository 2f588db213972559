/**
 * `runsc run` and `runsc do` end to end: the hello example, argv and environment of a guest,
 * exit codes and traps, stdin.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { afterAll, beforeAll } from "vitest"
import {
  DEFAULT_GUEST_PATH,
  cFixture,
  describeResult,
  helloBundle,
  HOST_SECRET_VAR,
  installFixtures,
  lines,
  makeBundle,
  makeTempDir,
  putExecutable,
  putFile,
  removeDir,
  runsc,
  uniqueId,
  watFixture
} from "./helpers.js"

const expectedHello = () => {
  const motd = Fs.readFileSync(Path.join(helloBundle, "rootfs", "etc", "motd"), "utf8")
  return [
    "Hello from WebAssembly in the runsc sandbox!\n",
    // The root init, as its own /proc/self (procfs is mounted by the bundle's config.json).
    "pid: 1\n",
    "argv[0]=/bin/hello\n",
    "argv[1]=from\n",
    "argv[2]=the\n",
    "argv[3]=sandbox\n",
    "HOME=/root\n",
    motd,
    "Listing of /:\n",
    "  bin\n",
    "  etc\n",
    "  proc\n",
    "  root\n"
  ].join("")
}

describe.concurrent("runsc run: the hello example", () => {
  it("prints the greeting, its pid, its argv, HOME, /etc/motd and the listing of /, and exits 0", async () => {
    const r = await runsc(["run", "--bundle", helloBundle, uniqueId("e2e-hello")])
    assert.strictEqual(r.code, 0, describeResult(r))
    assert.strictEqual(r.signal, null)
    assert.strictEqual(r.stdout, expectedHello())
    assert.strictEqual(r.stderr, "")
  })

  it("uses the current directory as the bundle by default", async () => {
    const r = await runsc(["run", uniqueId("e2e-hello-cwd")], { cwd: helloBundle })
    assert.strictEqual(r.code, 0, describeResult(r))
    assert.strictEqual(r.stdout, expectedHello())
    assert.strictEqual(r.stderr, "")
  })
})

describe.concurrent("runsc do: argv, environment, exit codes, stdin", () => {
  let root = ""
  let rootWithPasswd = ""

  beforeAll(async () => {
    root = await makeTempDir()
    await installFixtures(root, ["echo_args", "print_env", "exit", "spin", "sleep"])
    await putFile(root, "etc/motd", "e2e motd\n")
    for (const name of ["trap_unreachable", "trap_oob", "trap_divzero", "trap_stack", "exit_code", "hello"]) {
      await putExecutable(root, `bin/${name}`, await watFixture(name))
    }
    rootWithPasswd = await makeTempDir()
    await installFixtures(rootWithPasswd, ["print_env"])
    await putFile(rootWithPasswd, "etc/passwd", "root:x:0:0:root:/home/e2e-root:/bin/sh\n")
  })

  afterAll(async () => {
    await removeDir(root)
    await removeDir(rootWithPasswd)
  })

  it("passes argv verbatim: PROGRAM as given, dashed args and args with spaces", async () => {
    const r = await runsc(["do", "--root-dir", root, "/bin/echo_args", "-l", "a b  c", "--env", "X=1", "", "--clean-env"], {
      cwd: root
    })
    assert.strictEqual(r.code, 0, describeResult(r))
    assert.strictEqual(
      r.stdout,
      [
        "argv[0]=/bin/echo_args",
        "argv[1]=-l",
        "argv[2]=a b  c",
        "argv[3]=--env",
        "argv[4]=X=1",
        "argv[5]=",
        "argv[6]=--clean-env",
        ""
      ].join("\n")
    )
    assert.strictEqual(r.stderr, "")
  })

  it("finds a bare PROGRAM name on the container's PATH, argv[0] stays the bare name", async () => {
    const r = await runsc(["do", "--root-dir", root, "echo_args", "--help"], { cwd: root })
    assert.strictEqual(r.code, 0, describeResult(r))
    assert.strictEqual(r.stdout, "argv[0]=echo_args\nargv[1]=--help\n")
  })

  it("passes a `--` among the guest's args verbatim", async () => {
    const r = await runsc(["do", "--root-dir", root, "/bin/echo_args", "-l", "--", "x"], { cwd: root })
    assert.strictEqual(r.code, 0, describeResult(r))
    assert.strictEqual(r.stdout, "argv[0]=/bin/echo_args\nargv[1]=-l\nargv[2]=--\nargv[3]=x\n")
  })

  it("default env: PATH, TERM, HOME (\"/\" without /etc/passwd) and --env; never a host variable", async () => {
    const r = await runsc(["do", "--root-dir", root, "--env", "FOO=bar", "--env", "EMPTY=", "/bin/print_env"], {
      cwd: root,
      env: { TERM: "xterm" }
    })
    assert.strictEqual(r.code, 0, describeResult(r))
    const env = lines(r.stdout)
    assert.deepStrictEqual(
      [...env].sort(),
      ["EMPTY=", "FOO=bar", "HOME=/", `PATH=${DEFAULT_GUEST_PATH}`, "TERM=xterm"].sort(),
      r.stdout
    )
    assert.notInclude(r.stdout, HOST_SECRET_VAR)
    assert.strictEqual(r.stderr, "")
  })

  it("--env overrides a default (last wins, one entry)", async () => {
    const r = await runsc(["do", "--root-dir", root, "--env", "PATH=/bin", "--env", "A=1", "--env", "A=2", "/bin/print_env"], {
      cwd: root,
      env: { TERM: "xterm" }
    })
    assert.strictEqual(r.code, 0, describeResult(r))
    assert.deepStrictEqual([...lines(r.stdout)].sort(), ["A=2", "HOME=/", "PATH=/bin", "TERM=xterm"])
  })

  it("HOME comes from the container's /etc/passwd", async () => {
    const r = await runsc(["do", "--root-dir", rootWithPasswd, "/bin/print_env"], { cwd: rootWithPasswd, env: { TERM: "xterm" } })
    assert.strictEqual(r.code, 0, describeResult(r))
    assert.deepStrictEqual(
      [...lines(r.stdout)].sort(),
      ["HOME=/home/e2e-root", `PATH=${DEFAULT_GUEST_PATH}`, "TERM=xterm"].sort()
    )
    assert.notInclude(r.stdout, HOST_SECRET_VAR)
  })

  it("--clean-env: the guest sees only the --env variables", async () => {
    const r = await runsc(["do", "--root-dir", root, "--clean-env", "--env", "FOO=bar", "--env", "ONLY=this", "/bin/print_env"], {
      cwd: root
    })
    assert.strictEqual(r.code, 0, describeResult(r))
    assert.strictEqual(r.stdout, "FOO=bar\nONLY=this\n")
    assert.notInclude(r.stdout, HOST_SECRET_VAR)
  })

  for (const code of [0, 7, 123]) {
    it(`exit ${code} passes through`, async () => {
      const r = await runsc(["do", "--root-dir", root, "/bin/exit", String(code)], { cwd: root })
      assert.strictEqual(r.code, code, describeResult(r))
      assert.strictEqual(r.signal, null)
      assert.strictEqual(r.stdout, "")
      assert.strictEqual(r.stderr, "")
    })
  }

  it("WAT exit_code (proc_exit 7) exits 7; WAT hello prints hello and exits 0", async () => {
    const [a, b] = await Promise.all([
      runsc(["do", "--root-dir", root, "/bin/exit_code"], { cwd: root }),
      runsc(["do", "--root-dir", root, "/bin/hello"], { cwd: root })
    ])
    assert.strictEqual(a.code, 7, describeResult(a))
    assert.strictEqual(a.stdout, "")
    assert.strictEqual(b.code, 0, describeResult(b))
    assert.strictEqual(b.stdout, "hello\n")
  })

  const traps: ReadonlyArray<readonly [string, number, string]> = [
    ["trap_unreachable", 128 + 4, "SIGILL (wasm trap: unreachable instruction executed)"],
    ["trap_oob", 128 + 11, "SIGSEGV (wasm trap: memory access out of bounds)"],
    ["trap_divzero", 128 + 8, "SIGFPE (wasm trap: divide by zero)"],
    ["trap_stack", 128 + 11, "SIGSEGV (wasm trap: call stack exhausted)"]
  ]
  for (const [name, expected, cause] of traps) {
    it(`${name} is killed by its signal: exit ${expected}, and one stderr line says why`, async () => {
      const r = await runsc(["do", "--root-dir", root, `/bin/${name}`], { cwd: root })
      assert.strictEqual(r.code, expected, describeResult(r))
      assert.strictEqual(r.signal, null)
      assert.strictEqual(r.stdout, "")
      // As a shell reports a signal death, naming the command; not a CLI failure ("runsc: ...", 128).
      assert.strictEqual(r.stderr, `/bin/${name}: killed by ${cause}\n`)
    })
  }

  it("--timeout: a guest that runs over is killed (137) and one stderr line says so, computing or blocked; one that ends in time is not; a bad value is refused", async () => {
    const [spin, sleep, quick, bad, long] = await Promise.all([
      runsc(["do", "--timeout", "500ms", "--root-dir", root, "/bin/spin"], { cwd: root }),
      runsc(["do", "--timeout", "0.5", "--root-dir", root, "sleep", "600"], { cwd: root }),
      runsc(["do", "--timeout", "2m", "--root-dir", root, "/bin/exit", "3"], { cwd: root }),
      runsc(["do", "--timeout", "soon", "--root-dir", root, "/bin/exit", "3"], { cwd: root }),
      // Past a timer's range it would never fire: refused, not ignored.
      runsc(["do", "--timeout", "1000h", "--root-dir", root, "/bin/exit", "3"], { cwd: root })
    ])
    assert.strictEqual(spin.code, 137, describeResult(spin))
    assert.strictEqual(spin.stdout, "spinning\n")
    assert.strictEqual(spin.stderr, "/bin/spin: killed by SIGKILL (ran over --timeout 500ms)\n")
    assert.strictEqual(sleep.code, 137, describeResult(sleep))
    assert.strictEqual(sleep.stderr, "sleep: killed by SIGKILL (ran over --timeout 0.5)\n")
    assert.strictEqual(quick.code, 3, describeResult(quick))
    assert.strictEqual(quick.stderr, "")
    assert.strictEqual(bad.code, 128, describeResult(bad))
    assert.match(bad.stderr, /--timeout: "soon" is not a duration/)
    assert.strictEqual(long.code, 128, describeResult(long))
    assert.match(long.stderr, /--timeout: must be at most 596h/)
  })

  it("a guest that exits or is killed from outside gets no such line", async () => {
    const r = await runsc(["do", "--root-dir", root, "/bin/exit", "3"], { cwd: root })
    assert.strictEqual(r.code, 3, describeResult(r))
    assert.strictEqual(r.stderr, "")
  })

  it("a PROGRAM given as a host file gets an argv[0] the guest can see: its path in the root, else its file name", async () => {
    await putExecutable(root, "tmp/hidden", await Fs.promises.readFile(cFixture("echo_args")))
    const cases: ReadonlyArray<readonly [string, string]> = [
      [Path.join(root, "bin", "echo_args"), "/bin/echo_args"],
      ["./bin/echo_args", "/bin/echo_args"],
      // Outside the root, or where a mount hides it (/tmp is a tmpfs): no path reaches it.
      [cFixture("echo_args"), "echo_args.wasm"],
      [Path.join(root, "tmp", "hidden"), "hidden"]
    ]
    for (const [program, argv0] of cases) {
      const r = await runsc(["do", "--root-dir", root, program, "x"], { cwd: root })
      assert.strictEqual(r.code, 0, describeResult(r))
      assert.strictEqual(r.stdout, `argv[0]=${argv0}\nargv[1]=x\n`, program)
    }
  })

  it("run: a bundle's exit code passes through", async () => {
    const bundle = await makeBundle(["/bin/exit", "123"], ["exit"])
    try {
      const r = await runsc(["run", "--bundle", bundle.dir, uniqueId("e2e-exit")])
      assert.strictEqual(r.code, 123, describeResult(r))
      assert.strictEqual(r.stdout, "")
      assert.strictEqual(r.stderr, "")
    } finally {
      await removeDir(bundle.dir)
    }
  })

  it("stdin: cat with no args copies piped stdin to stdout", async () => {
    const input = "first line\nsecond line with  spaces\n\u00e9t\u00e9 \u2603\nno newline at the end"
    const r = await runsc(["do", "--root-dir", root, cFixture("cat")], { cwd: root, input })
    assert.strictEqual(r.code, 0, describeResult(r))
    assert.strictEqual(r.stdout, input)
    assert.strictEqual(r.stderr, "")
  })

  it("stdin: a large input (256 KiB) is copied intact", async () => {
    const input = Array.from({ length: 4096 }, (_, i) => `${String(i).padStart(6, "0")} ${"x".repeat(56)}\n`).join("")
    const r = await runsc(["do", "--root-dir", root, cFixture("cat")], { cwd: root, input })
    assert.strictEqual(r.code, 0, describeResult({ ...r, stdout: r.stdout.slice(0, 200) }))
    assert.strictEqual(r.stdout.length, input.length)
    assert.isTrue(r.stdout === input, "stdout differs from stdin")
  })
})
