/**
 * The ABI as data: exit-status encodings, signal parsing and names, errno mapping.
 *
 * The domains are small (256 exit codes, 31 signals, 77 errnos), so the round-trip properties
 * are checked exhaustively rather than by sampling. (`@runsc/abi` has no dependency on
 * `effect`, so its FastCheck is not importable from this package.)
 */
import { assert, describe, it } from "@effect/vitest"
import {
  defaultAction,
  describe as describeStatus,
  Errno,
  errnoFromHostCode,
  errnoName,
  type ExitStatus,
  exited,
  forwardableHostSignals,
  fromWaitStatus,
  importModules,
  isValidSignal,
  MAX_STANDARD_SIGNAL,
  parseSignal,
  signaled,
  signalFromWasi,
  signalName,
  signalToWasi,
  syscallNames,
  syscallNumber,
  toShellCode,
  toWaitStatus
} from "../src/index.js"

const codes = Array.from({ length: 256 }, (_, i) => i)
const signals = Array.from({ length: MAX_STANDARD_SIGNAL }, (_, i) => i + 1)

describe("exit status", () => {
  it("every exit code 0..255 round-trips through the wait status", () => {
    for (const code of codes) {
      const ws = toWaitStatus(exited(code))
      assert.strictEqual(ws & 0x7f, 0, `WIFEXITED for code ${code}`)
      assert.strictEqual((ws >> 8) & 0xff, code, `WEXITSTATUS for code ${code}`)
      assert.deepStrictEqual(fromWaitStatus(ws), { _tag: "Exited", code })
    }
  })

  it("every signal 1..31 round-trips through the wait status", () => {
    for (const signal of signals) {
      const ws = toWaitStatus(signaled(signal))
      assert.strictEqual(ws & 0x7f, signal, `WTERMSIG for ${signal}`)
      assert.deepStrictEqual(fromWaitStatus(ws), { _tag: "Signaled", signal })
    }
  })

  it("decoding ignores the core-dump bit", () => {
    assert.deepStrictEqual(fromWaitStatus(0x80 | 11), signaled(11))
  })

  it("exit codes are taken modulo 256, as the kernel does", () => {
    assert.deepStrictEqual(exited(256), { _tag: "Exited", code: 0 })
    assert.deepStrictEqual(exited(300), { _tag: "Exited", code: 44 })
    assert.deepStrictEqual(exited(-1), { _tag: "Exited", code: 255 })
  })

  it("toShellCode is the code, or 128 + the signal", () => {
    for (const code of codes) assert.strictEqual(toShellCode(exited(code)), code)
    for (const signal of signals) assert.strictEqual(toShellCode(signaled(signal)), 128 + signal)
  })

  it("describe names the code or the signal", () => {
    assert.strictEqual(describeStatus(exited(3)), "exited with code 3")
    assert.strictEqual(describeStatus(signaled(9)), "killed by SIGKILL")
    const statuses: Array<ExitStatus> = [exited(0), signaled(15)]
    assert.deepStrictEqual(statuses.map(toShellCode), [0, 143])
  })
})

describe("signals", () => {
  it("parses names, SIG-names, numbers and lowercase", () => {
    assert.strictEqual(parseSignal("TERM"), 15)
    assert.strictEqual(parseSignal("SIGTERM"), 15)
    assert.strictEqual(parseSignal("15"), 15)
    assert.strictEqual(parseSignal("sigkill"), 9)
    assert.strictEqual(parseSignal("kill"), 9)
    assert.strictEqual(parseSignal(" HUP "), 1)
    assert.strictEqual(parseSignal("0"), 0)
  })

  it("rejects junk and numbers outside the table", () => {
    for (const junk of ["", " ", "SIG", "SIGFOO", "foo", "32", "64", "-9", "9x", "1e1", "0x0f", "SIG15", "TERM!"]) {
      assert.isUndefined(parseSignal(junk), JSON.stringify(junk))
    }
  })

  it("every standard signal parses from its number, its name and its short name", () => {
    for (const n of signals) {
      const name = signalName(n)
      assert.match(name, /^SIG[A-Z0-9]+$/)
      assert.strictEqual(parseSignal(String(n)), n)
      assert.strictEqual(parseSignal(name), n)
      assert.strictEqual(parseSignal(name.slice(3).toLowerCase()), n)
      assert.isTrue(isValidSignal(n))
    }
    assert.isFalse(isValidSignal(0))
    assert.isFalse(isValidSignal(32))
    assert.strictEqual(signalName(40), "signal 40")
  })

  it("default actions follow signal(7)", () => {
    assert.strictEqual(defaultAction(9), "terminate")
    assert.strictEqual(defaultAction(15), "terminate")
    assert.strictEqual(defaultAction(11), "core")
    assert.strictEqual(defaultAction(17), "ignore")
    assert.strictEqual(defaultAction(28), "ignore")
    assert.strictEqual(defaultAction(19), "stop")
    assert.strictEqual(defaultAction(20), "stop")
    assert.strictEqual(defaultAction(18), "continue")
  })

  it("SIGKILL and SIGSTOP are never forwarded from the host", () => {
    assert.notInclude(forwardableHostSignals, "SIGKILL")
    assert.notInclude(forwardableHostSignals, "SIGSTOP")
    assert.include(forwardableHostSignals, "SIGTERM")
  })
})

describe("errno", () => {
  it("maps Node host codes to WASI errnos", () => {
    assert.strictEqual(errnoFromHostCode("ENOENT"), Errno.NOENT)
    assert.strictEqual(errnoFromHostCode("EACCES"), Errno.ACCES)
    assert.strictEqual(errnoFromHostCode("ENOTDIR"), Errno.NOTDIR)
    assert.strictEqual(errnoFromHostCode("ELOOP"), Errno.LOOP)
    assert.strictEqual(errnoFromHostCode("ENAMETOOLONG"), Errno.NAMETOOLONG)
    assert.strictEqual(errnoFromHostCode("EROFS"), Errno.ROFS)
    assert.strictEqual(errnoFromHostCode("E2BIG"), Errno.TOOBIG)
    assert.strictEqual(errnoFromHostCode("EWOULDBLOCK"), Errno.AGAIN)
    assert.strictEqual(errnoFromHostCode("EOPNOTSUPP"), Errno.NOTSUP)
    assert.strictEqual(errnoFromHostCode("ENOTSUP"), Errno.NOTSUP)
  })

  it("unknown or missing codes become EIO", () => {
    for (const code of [undefined, "", "E", "ESUCCESS", "ERR_OUT_OF_RANGE", "enoent", "EUNKNOWN", "UNKNOWN"]) {
      assert.strictEqual(errnoFromHostCode(code), Errno.IO, String(code))
    }
  })

  it("every errno round-trips through its name", () => {
    const values = Object.values(Errno)
    assert.strictEqual(values.length, 77)
    assert.deepStrictEqual(values, Array.from({ length: 77 }, (_, i) => i))
    for (const v of values.filter((v) => v !== 0)) assert.strictEqual(errnoFromHostCode(errnoName(v)), v, errnoName(v))
    assert.strictEqual(errnoName(0), "ESUCCESS")
    assert.strictEqual(errnoName(Errno.NOENT), "ENOENT")
    assert.strictEqual(errnoName(999), "E?999")
  })

  it("WASI.md values", () => {
    assert.deepStrictEqual(
      [Errno.BADF, Errno.FAULT, Errno.ILSEQ, Errno.INVAL, Errno.LOOP, Errno.NAMETOOLONG, Errno.NOENT, Errno.ROFS, Errno.NOTCAPABLE],
      [8, 21, 25, 28, 32, 37, 44, 69, 76]
    )
  })
})

describe("syscall numbers", () => {
  it("are the 46 preview1 functions in witx order, then the 6 WASIX process, 14 WASIX socket calls, WASIX resolve, sock_pair and the two socket time options, then our 8 process calls, then the sentry's own memory_grow, and invert syscallNames", () => {
    assert.strictEqual(syscallNames.length, 46 + 6 + 14 + 1 + 3 + 8 + 1)
    syscallNames.forEach((name, i) => assert.strictEqual(syscallNumber[name], i))
    assert.strictEqual(syscallNumber.args_get, 0)
    assert.strictEqual(syscallNumber.sock_shutdown, 45)
    assert.deepStrictEqual(importModules.wasi_snapshot_preview1, syscallNames.slice(0, 46))
    // Every syscall belongs to an import module, except the sentry's own (no guest may import
    // it); only preview1's socket calls are in two (WASIX programs import them from wasix_32v1).
    const all = Object.values(importModules).flat()
    assert.deepStrictEqual([...new Set([...all, "memory_grow"])].sort(), [...syscallNames].sort())
    assert.deepStrictEqual(all.filter((name, i) => all.indexOf(name) !== i).sort(), ["sock_recv", "sock_send", "sock_shutdown"])
    assert.strictEqual(syscallNumber.resolve, 66)
    assert.strictEqual(syscallNumber.sock_pair, 67)
    assert.strictEqual(syscallNumber.sock_get_opt_time, 69)
    assert.strictEqual(syscallNumber.memory_grow, 78)
  })

  it("signal numbers: WASI's enum skips SIGSTKFLT; the conversions invert each other", () => {
    assert.strictEqual(signalFromWasi(15), 15)
    assert.strictEqual(signalFromWasi(16), 17) // SIGCHLD
    assert.strictEqual(signalFromWasi(30), 31) // SIGSYS
    assert.strictEqual(signalFromWasi(31), undefined)
    assert.strictEqual(signalFromWasi(-1), undefined)
    for (let wasi = 0; wasi <= 30; wasi++) assert.strictEqual(signalToWasi(signalFromWasi(wasi)!), wasi)
    assert.strictEqual(signalToWasi(16), 0)
  })
})
