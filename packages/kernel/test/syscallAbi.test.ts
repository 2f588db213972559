/**
 * The declared syscall ABI (platform/syscallAbi.ts): the worker's side and the sentry's side of
 * every declared call agree on where each argument and result is, and the worker provides
 * exactly the declared imports.
 */
import { assert, describe, it } from "@effect/vitest"
import { AddressFamily, AddrPort, Errno, importModules, importSignatures, type SyscallName, syscallNames } from "@runsc/abi"
import { Effect, FastCheck } from "effect"
import { ChannelViews, DATA_SIZE, Word } from "../src/platform/channel.js"
import {
  argPlace,
  args,
  compileGuestStub,
  declarations,
  type Field,
  type GuestSide,
  guestImports,
  I64_RESULT_SLOT,
  plan,
  plans,
  results,
  type SyscallPlan
} from "../src/platform/syscallAbi.js"

const MEMORY = 64 * 1024
/** Each pointer field gets its own region of guest memory, so that nothing overlaps. */
const REGION = 2048

const i32 = FastCheck.oneof(
  FastCheck.constantFrom(0, 1, -1, 0x7fffffff, -0x80000000, 65535),
  FastCheck.integer({ min: -0x80000000, max: 0x7fffffff })
)
const i64 = FastCheck.oneof(
  FastCheck.constantFrom(0n, -1n, (1n << 63n) - 1n, -(1n << 63n)),
  FastCheck.bigInt({ min: -(1n << 63n), max: (1n << 63n) - 1n })
)

/** What the guest passes for one field, and what the sentry answers for it. */
type Drawn =
  | { readonly kind: "value"; readonly param: number | bigint }
  | { readonly kind: "bytes"; readonly ptr: number; readonly content: Uint8Array }
  | { readonly kind: "struct"; readonly ptr: number; readonly content: Uint8Array }
  | { readonly kind: "capacity"; readonly ptr: number; readonly len: number; readonly payload: Uint8Array }
  | { readonly kind: "out"; readonly ptr: number; readonly answer: number | bigint | Uint8Array }

/** A struct's bytes: `f.size` of them; for an addr_port, often a Unix one (tag 3), whose struct is `f.unixSize` long. */
const addrPortOr = (f: Field): FastCheck.Arbitrary<Uint8Array> => {
  const { size, unixSize } = f
  if (unixSize === undefined) return FastCheck.uint8Array({ minLength: size, maxLength: size })
  return FastCheck.tuple(FastCheck.constantFrom(AddressFamily.INET4, AddressFamily.INET6, AddressFamily.UNIX), FastCheck.uint8Array({ minLength: unixSize, maxLength: unixSize }))
    .map(([tag, bytes]) => {
      bytes[0] = tag
      return bytes.subarray(0, tag === AddressFamily.UNIX ? unixSize : size)
    })
}

const drawField = (p: SyscallPlan, i: number): FastCheck.Arbitrary<Drawn> => {
  const f = p.fields[i]!
  const region = i * REGION
  const ptr = FastCheck.integer({ min: region, max: region + 256 })
  switch (f.kind) {
    case "u32":
    case "s32":
      return i32.map((param) => ({ kind: "value", param }))
    case "u64":
      return i64.map((param) => ({ kind: "value", param }))
    case "bytes":
      return FastCheck.record({ ptr, content: FastCheck.uint8Array({ maxLength: 300 }) }).map((r) => ({ kind: "bytes", ...r }))
    case "structIn":
      return FastCheck.record({ ptr, content: addrPortOr(f) }).map((r) => ({ kind: "struct", ...r }))
    case "capacity": {
      // `len` counts elements of f.size bytes (capacityOf), or bytes.
      const element = f.size || 1
      return FastCheck.record({ ptr, len: FastCheck.integer({ min: 0, max: Math.floor(1024 / element) }), payload: FastCheck.uint8Array({ maxLength: 1024 }) })
        .map((r) => ({ kind: "capacity", ...r, payload: r.payload.subarray(0, r.len * element) }))
    }
    case "u32Out":
      return FastCheck.record({ ptr, answer: i32 }).map((r) => ({ kind: "out", ...r }))
    case "u64Out":
      return FastCheck.record({ ptr, answer: i64 }).map((r) => ({ kind: "out", ...r }))
    case "structOut":
      return FastCheck.record({ ptr, answer: addrPortOr(f) }).map((r) => ({ kind: "out", ...r }))
    default:
      throw new Error(`${p.name}: ${f.kind} in a generic declaration`)
  }
}

/** The wasm parameters the guest passes for `drawn`, in import order. */
const paramsOf = (drawn: ReadonlyArray<Drawn>): Array<number | bigint> =>
  drawn.flatMap((d) => {
    switch (d.kind) {
      case "value":
        return [d.param]
      case "bytes":
        return [d.ptr, d.content.length]
      case "struct":
        return [d.ptr]
      case "capacity":
        return [d.ptr, d.len]
      case "out":
        return [d.ptr]
    }
  })

const genericPlans = plans.filter((p) => p.stub === "generic")

describe("the declared syscall ABI", () => {
  it("declares every syscall on the channel, and every import a guest may use", () => {
    assert.deepStrictEqual(Object.keys(declarations).sort(), [...syscallNames].sort())
    for (const names of Object.values(importModules)) for (const name of names) assert.isDefined(declarations[name], name)
    // A generic stub takes exactly the parameters of the import's wasm type.
    for (const p of genericPlans) {
      const params = p.fields.flatMap((f) =>
        f.kind === "u64" ? ["i64"] : f.kind === "bytes" || f.kind === "capacity" ? ["i32", "i32"] : ["i32"]
      )
      assert.deepStrictEqual(params, importSignatures[p.name as keyof typeof importSignatures].params, p.name)
    }
  })

  it("gives each argument its own place: words and request slots distinct, below the u64 result slot", () => {
    for (const p of plans) {
      const words = new Set<number>()
      const slots = new Set<number>()
      p.fields.forEach((f, i) => {
        const place = p.place[i]!
        if (["u32", "s32", "bytes", "structIn", "capacity", "iovecsIn", "iovecsOut"].includes(f.kind)) {
          assert.isFalse(words.has(place), `${p.name}.${f.name}: word ${place} taken twice`)
          assert.isAtLeast(place, Word.ARG0)
          words.add(place)
        }
        if (f.kind === "u64") {
          assert.isFalse(slots.has(place), `${p.name}.${f.name}`)
          assert.isBelow(place, I64_RESULT_SLOT)
          slots.add(place)
        }
        if (f.kind === "u64Out") assert.strictEqual(place, I64_RESULT_SLOT)
      })
      assert.strictEqual(p.nargs, words.size, p.name)
    }
  })

  for (const p of genericPlans) {
    it.prop(
      `${p.name}: what the worker's stub encodes is what the sentry decodes, and what the sentry answers reaches the guest`,
      [FastCheck.tuple(...p.fields.map((_, i) => drawField(p, i))) as FastCheck.Arbitrary<ReadonlyArray<Drawn>>],
      ([drawn]) => {
        const channel = ChannelViews.allocate()
        const mem = new Uint8Array(MEMORY)
        const view = new DataView(mem.buffer)
        for (const d of drawn) if (d.kind === "bytes" || d.kind === "struct") mem.set(d.content, d.ptr)
        const params = paramsOf(drawn)
        const c = { channel }
        let served = 0
        const side: GuestSide = {
          channel,
          enter: () => {},
          refresh: () => {},
          memory: () => mem,
          view: () => view,
          roundTrip: (n) => {
            served++
            assert.strictEqual(n, p.number)
            serve()
            return Errno.SUCCESS
          }
        }
        // The guest's side: the stub compiled from the declaration, as the worker compiles it.
        const stub = compileGuestStub(p, side)
        assert.strictEqual(stub.length, params.length)

        // The sentry's side: the declared accessors decode the request, then answer it.
        const serve = () => {
        assert.strictEqual(channel.words[Word.NARGS], p.nargs)
        const decode = args[p.name] as Record<string, unknown>
        p.fields.forEach((f, i) => {
          const d = drawn[i]!
          const accessor = decode[f.name]
          if (f.kind === "u32") assert.strictEqual((accessor as (c: unknown) => number)(c), Number((d as { param: number }).param) >>> 0, f.name)
          if (f.kind === "s32") assert.strictEqual((accessor as (c: unknown) => number)(c), Number((d as { param: number }).param) | 0, f.name)
          if (f.kind === "u64") assert.strictEqual((accessor as (c: unknown) => bigint)(c), (d as { param: bigint }).param, f.name)
          if (f.kind === "capacity") {
            assert.strictEqual((accessor as (c: unknown) => number)(c), Math.min((d as { len: number }).len * (f.size || 1), DATA_SIZE), f.name)
          }
          if (f.kind === "bytes" || f.kind === "structIn") {
            const field = accessor as { at: (c: unknown) => number; length: (c: unknown) => number }
            const at = field.at(c)
            assert.deepStrictEqual(channel.data.slice(at, at + field.length(c)), (d as { content: Uint8Array }).content, f.name)
          }
        })

        // The sentry answers; the guest's side copies the answer out.
        const answer = results[p.name] as Record<string, (c: unknown, v: number | bigint) => void>
        p.fields.forEach((f, i) => {
          const d = drawn[i]!
          if (f.kind === "u32Out" || f.kind === "u64Out") answer[f.name]!(c, (d as { answer: number | bigint }).answer as never)
          const payload = d.kind === "capacity" ? d.payload : f.kind === "structOut" ? (d as { answer: Uint8Array }).answer : undefined
          if (payload !== undefined) {
            channel.data.set(payload)
            channel.words[Word.RESULT_LENGTH] = payload.length
          }
        })
        }
        assert.strictEqual(stub(...params), Errno.SUCCESS)
        assert.strictEqual(served, 1)
        p.fields.forEach((f, i) => {
          const d = drawn[i]!
          if (f.kind === "u32Out") assert.strictEqual(view.getUint32(d.kind === "out" ? d.ptr : -1, true), Number((d as { answer: number }).answer) >>> 0, f.name)
          if (f.kind === "u64Out") assert.strictEqual(view.getBigUint64(d.kind === "out" ? d.ptr : -1, true), BigInt.asUintN(64, (d as { answer: bigint }).answer), f.name)
          if (f.kind === "structOut" && d.kind === "out") assert.deepStrictEqual(mem.slice(d.ptr, d.ptr + (d.answer as Uint8Array).length), d.answer, f.name)
          if (d.kind === "capacity") assert.deepStrictEqual(mem.slice(d.ptr, d.ptr + d.payload.length), d.payload, f.name)
        })
      },
      { fastCheck: { numRuns: 30 } }
    )
  }

  it("a hand-written stub's places are the ones the sentry decodes", () => {
    const channel = ChannelViews.allocate()
    const c = { channel }
    for (const p of plans.filter((p) => p.stub === "worker")) {
      const decode = args[p.name] as Record<string, unknown>
      p.fields.forEach((f, i) => {
        if (f.kind === "u32" || f.kind === "s32" || f.kind === "iovecsOut") {
          channel.words[argPlace(p.name, f.name as never)] = -(i + 2)
          const expected = f.kind === "s32" ? -(i + 2) : (-(i + 2)) >>> 0
          assert.strictEqual((decode[f.name] as (c: unknown) => number)(c), expected, `${p.name}.${f.name}`)
        }
        if (f.kind === "u64") {
          channel.i64[argPlace(p.name, f.name as never)] = BigInt(-(i + 2))
          assert.strictEqual((decode[f.name] as (c: unknown) => bigint)(c), BigInt(-(i + 2)), `${p.name}.${f.name}`)
        }
      })
    }
  })

  it("proc_spawn's strings are packed in declaration order: path, argv, envp", () => {
    const channel = ChannelViews.allocate()
    const c = { channel }
    channel.words[argPlace("proc_spawn", "path")] = 3
    channel.words[argPlace("proc_spawn", "argv")] = 5
    channel.words[argPlace("proc_spawn", "envp")] = 7
    assert.deepStrictEqual([args.proc_spawn.path.at(c), args.proc_spawn.argv.at(c), args.proc_spawn.envp.at(c)], [0, 3, 8])
  })

  it("a generic stub answers EFAULT for a pointer outside guest memory and ENAMETOOLONG past the data area (without a request), as the shims did", () => {
    const channel = ChannelViews.allocate()
    let mem = new Uint8Array(MEMORY)
    let requests = 0
    const side: GuestSide = {
      channel,
      enter: () => {},
      refresh: () => {},
      memory: () => mem,
      view: () => new DataView(mem.buffer),
      roundTrip: () => (requests++, Errno.SUCCESS)
    }
    const stub = (name: SyscallName) => compileGuestStub(plan(name), side)
    assert.strictEqual(stub("fd_fdstat_get")(1, MEMORY - 8), Errno.FAULT)
    assert.strictEqual(stub("fd_fdstat_get")(1, -1), Errno.FAULT)
    assert.strictEqual(stub("path_unlink_file")(3, MEMORY - 4, 5), Errno.FAULT)
    assert.strictEqual(stub("fd_tell")(3, MEMORY - 4), Errno.FAULT)
    assert.strictEqual(stub("path_readlink")(3, 0, 1, MEMORY - 2, 4, 0), Errno.FAULT)
    assert.strictEqual(requests, 0)
    assert.strictEqual(stub("fd_fdstat_get")(1, MEMORY - 24), Errno.SUCCESS)
    assert.strictEqual(requests, 1)
    mem = new Uint8Array(DATA_SIZE + 2)
    assert.strictEqual(stub("path_unlink_file")(3, 0, DATA_SIZE + 1), Errno.NAMETOOLONG)
    assert.strictEqual(requests, 1)
  })

  it("an addr_port is a Unix one's whole 110 bytes where its tag says so, and an answer's needs room for one before the call (no connection accepted, then lost to EFAULT)", () => {
    const channel = ChannelViews.allocate()
    const mem = new Uint8Array(MEMORY)
    let requests = 0
    const side: GuestSide = {
      channel,
      enter: () => {},
      refresh: () => {},
      memory: () => mem,
      view: () => new DataView(mem.buffer),
      roundTrip: () => (requests++, Errno.SUCCESS)
    }
    const stub = (name: SyscallName) => compileGuestStub(plan(name), side)
    assert.strictEqual(stub("sock_accept_v2")(3, 0, 0, MEMORY - AddrPort.sizeOf), Errno.FAULT)
    assert.strictEqual(stub("sock_addr_peer")(3, MEMORY - 100), Errno.FAULT)
    mem[MEMORY - AddrPort.sizeOf] = AddressFamily.UNIX
    assert.strictEqual(stub("sock_bind")(3, MEMORY - AddrPort.sizeOf), Errno.FAULT)
    assert.strictEqual(requests, 0)
    mem[MEMORY - AddrPort.sizeOf] = AddressFamily.INET4
    assert.strictEqual(stub("sock_bind")(3, MEMORY - AddrPort.sizeOf), Errno.SUCCESS)
    assert.strictEqual(channel.words[plan("sock_bind").place[1]!], AddrPort.sizeOf, "an IP one moves 20 bytes")
    assert.strictEqual(stub("sock_accept_v2")(3, 0, 0, MEMORY - AddrPort.unixSizeOf), Errno.SUCCESS)
    assert.strictEqual(requests, 2)
  })
})

describe("the worker's imports", () => {
  const stub = () => 0
  /** Stubs for exactly the calls declared `worker` or `served` that a guest may import, as worker.ts writes them. */
  const written = (): Record<string, () => number> =>
    Object.fromEntries(
      Object.values(importModules).flat().filter((name) => plan(name).stub !== "generic").map((name) => [name, stub])
    )

  it.effect("are every import of every module: generic from the declaration, the others written in the worker", () =>
    Effect.sync(() => {
      const generic: Array<SyscallName> = []
      const imports = guestImports((p) => {
        generic.push(p.name)
        return () => p.number
      }, written())
      for (const [module, names] of Object.entries(importModules)) {
        assert.deepStrictEqual(Object.keys(imports[module]!).sort(), [...names].sort(), module)
      }
      assert.deepStrictEqual(generic.sort(), genericPlans.map((p) => p.name).sort())
      assert.strictEqual(imports["wasi_snapshot_preview1"]!["fd_write"], stub)
    }))

  it("refuses a stub the declarations do not ask for, a missing one, and a second stub for a generic call", () => {
    assert.throws(() => guestImports(() => stub, { ...written(), sock_listen: stub }), /sock_listen/)
    const missing = written()
    delete missing["fd_read"]
    assert.throws(() => guestImports(() => stub, missing), /fd_read is declared worker/)
    assert.throws(() => guestImports(() => stub, { ...written(), fd_close: stub }), /fd_close is generic/)
    assert.throws(() => guestImports(() => stub, { ...written(), memory_grow: stub }), /memory_grow/)
  })
})
