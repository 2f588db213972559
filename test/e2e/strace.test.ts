/**
 * --strace end to end: entry (E) and exit (X) lines per syscall on stderr, --strace-syscalls
 * filtering, and --debug-log sending them to a file instead of stderr.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { afterAll, beforeAll } from "vitest"
import { cFixture, describeResult, lines, makeTempDir, putFile, removeDir, runsc } from "./helpers.js"

describe.concurrent("--strace", () => {
  let root = ""
  let logs = ""

  beforeAll(async () => {
    root = await makeTempDir()
    logs = await makeTempDir("runsc-e2e-logs-")
    await putFile(root, "etc/motd", "strace motd\n")
  })

  afterAll(async () => {
    await removeDir(root)
    await removeDir(logs)
  })

  // The fixture lies outside the root: the guest knows it by its file name only.
  const echoStdout = (program: string) => `argv[0]=${Path.basename(program)}\nargv[1]=x\n`

  it("prints E and X lines for fd_write (with the result) on stderr; stdout is the guest's", async () => {
    const program = cFixture("echo_args")
    const r = await runsc(["--strace", "do", "--root-dir", root, program, "x"], { cwd: root })
    assert.strictEqual(r.code, 0, describeResult(r))
    assert.strictEqual(r.stdout, echoStdout(program))
    const errLines = lines(r.stderr)
    const entries = errLines.filter((l) => l.includes("E fd_write("))
    const exits = errLines.filter((l) => l.includes("X fd_write("))
    assert.isAbove(entries.length, 0, r.stderr)
    assert.strictEqual(entries.length, exits.length, r.stderr)
    for (const l of exits) assert.match(l, /\) = \d+/, l)
    // The buffer written is shown, and the exit line carries the byte count of "argv[1]=x\n".
    assert.isTrue(exits.some((l) => l.includes("argv[1]=x") && / = 10\b/.test(l)), r.stderr)
    // Every entry line precedes its exit line.
    assert.isBelow(
      errLines.findIndex((l) => l.includes("E fd_write(")),
      errLines.findIndex((l) => l.includes("X fd_write(")),
      r.stderr
    )
  })

  it("socket calls show their family, type and addresses, and their results", async () => {
    const r = await runsc(["--strace", "--strace-syscalls", "sock_open,sock_bind,sock_connect,sock_send_to", "do", "--root-dir", root, cFixture("net_echo"), "udp"], { cwd: root })
    assert.strictEqual(r.code, 0, describeResult(r))
    const exits = lines(r.stderr).filter((l) => l.includes(" X "))
    assert.isTrue(exits.some((l) => /sock_open\(AF_INET, SOCK_DGRAM, 0\) = 4 /.test(l)), r.stderr)
    assert.isTrue(exits.some((l) => /sock_bind\(4, 127\.0\.0\.1:9000\) = 0 /.test(l)), r.stderr)
    assert.isTrue(exits.some((l) => /sock_send_to\(5, "ping", 4, 0x0, to 127\.0\.0\.1:9000\) = 4 /.test(l)), r.stderr)
    assert.isTrue(exits.some((l) => /sock_connect\(\d+, 127\.0\.0\.1:\d+\) = 0 /.test(l)), r.stderr)
  })

  it("Unix socket calls show their paths, abstract names and socketpair's two fds", async () => {
    const r = await runsc(["--strace", "--strace-syscalls", "sock_open,sock_pair,sock_bind,sock_connect,sock_send_to", "do", "--root-dir", root, cFixture("unix"), "selftest", "/"], { cwd: root })
    assert.strictEqual(r.code, 0, describeResult(r))
    const exits = lines(r.stderr).filter((l) => l.includes(" X "))
    assert.isTrue(exits.some((l) => /sock_open\(AF_UNIX, SOCK_STREAM, 0\) = \d+ /.test(l)), r.stderr)
    assert.isTrue(exits.some((l) => /sock_bind\(\d+, \/\/server\.sock\) = 0 /.test(l)), r.stderr)
    assert.isTrue(exits.some((l) => /sock_bind\(\d+, \/\/server\.sock\) = -1 EADDRINUSE /.test(l)), r.stderr)
    assert.isTrue(exits.some((l) => /sock_connect\(\d+, @selftest\) = 0 /.test(l)), r.stderr)
    assert.isTrue(exits.some((l) => /sock_pair\(AF_UNIX, SOCK_STREAM, 0\) = \[\d+, \d+\] /.test(l)), r.stderr)
    assert.isTrue(exits.some((l) => /sock_send_to\(\d+, "datagram", 8, 0x0, to \/\/datagram\.sock\) = 8 /.test(l)), r.stderr)
  })

  it("--strace-syscalls path_open shows only path_open lines", async () => {
    const r = await runsc(["--strace", "--strace-syscalls", "path_open", "do", "--root-dir", root, cFixture("cat"), "/etc/motd"], {
      cwd: root
    })
    assert.strictEqual(r.code, 0, describeResult(r))
    assert.strictEqual(r.stdout, "strace motd\n")
    const errLines = lines(r.stderr)
    assert.isAbove(errLines.length, 0, "some path_open lines")
    for (const l of errLines) assert.match(l, /[EX] path_open\(/, `not a path_open line: ${l}`)
    assert.isTrue(errLines.some((l) => / E path_open\(.*etc\/motd/.test(l)), r.stderr)
    assert.isTrue(errLines.some((l) => / X path_open\(.*etc\/motd.*\) = \d+/.test(l)), r.stderr)
  })

  it("--debug-log FILE receives the strace lines; stderr gets none", async () => {
    const program = cFixture("echo_args")
    const log = Path.join(logs, "debug.log")
    const r = await runsc(["--strace", "--debug-log", log, "do", "--root-dir", root, program, "x"], { cwd: root })
    assert.strictEqual(r.code, 0, describeResult(r))
    assert.strictEqual(r.stdout, echoStdout(program))
    assert.strictEqual(r.stderr, "")
    const text = Fs.readFileSync(log, "utf8")
    assert.include(text, "E fd_write(")
    assert.include(text, "X fd_write(")
    assert.match(text, /X fd_write\(.*\) = \d+/)
  })

  it("without --strace there are no strace lines", async () => {
    const program = cFixture("echo_args")
    const r = await runsc(["do", "--root-dir", root, program, "x"], { cwd: root })
    assert.strictEqual(r.code, 0, describeResult(r))
    assert.strictEqual(r.stdout, echoStdout(program))
    assert.strictEqual(r.stderr, "")
  })
})
