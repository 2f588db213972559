/**
 * Socket addresses in the guest's ABI and in logs: a Unix path's addr_port round trip, abstract
 * names byte for byte, refusals (no NUL in 108 bytes, a path that is not UTF-8), and a guest's
 * name that cannot forge a log line.
 */
import { assert, describe, it } from "@effect/vitest"
import { AddressFamily, AddrPort, Errno } from "@runsc/abi"
import { decodeAddrPort, encodeAddrPort, formatAddress } from "../src/net/addrPort.js"

const unixStruct = (bytes: ReadonlyArray<number>): Uint8Array => {
  const out = new Uint8Array(AddrPort.unixSizeOf)
  out[AddrPort.tag] = AddressFamily.UNIX
  out.set(bytes, AddrPort.path)
  return out
}

describe("addr_port", () => {
  it("a Unix path, an abstract name and the unnamed address go in and out whole", () => {
    for (const path of ["/run/app.sock", "\0svc\u00ff", ""]) {
      const encoded = encodeAddrPort({ family: "unix", path })
      assert.strictEqual(encoded.length, AddrPort.unixSizeOf)
      assert.deepStrictEqual(decodeAddrPort(encoded), { family: "unix", path })
    }
  })

  it("refuses a path with no room for its NUL, and one that is not UTF-8", () => {
    assert.strictEqual(decodeAddrPort(unixStruct(Array(108).fill(0x61))), Errno.INVAL)
    assert.strictEqual(decodeAddrPort(unixStruct([0x2f, 0xff, 0xfe])), Errno.ILSEQ)
    assert.strictEqual(decodeAddrPort(unixStruct([0x2f]).subarray(0, 20)), Errno.INVAL)
  })

  it("logs a guest's name with its control characters escaped", () => {
    assert.strictEqual(formatAddress({ family: "unix", path: "/tmp/a\nE sock_open(evil)" }), "/tmp/a\\x0aE sock_open(evil)")
    assert.strictEqual(formatAddress({ family: "unix", path: "\0x\u001b[31m" }), "@x\\x1b[31m")
    assert.strictEqual(formatAddress({ family: "unix", path: "" }), "(unnamed)")
  })
})
