/**
 * Filesystem confinement (invariant 6): nothing a guest names — `..`, absolute paths, symlinks
 * planted in the rootfs pointing anywhere on the host — reaches a host file outside the root.
 * Checked with direct `resolve()` calls (including a property over random paths) and with
 * guests (cat, stat, ls, and WAT guests calling path_open / fd_readdir and returning the errno).
 */
import { Errno, FileType } from "@runsc/abi"
import { afterAll, assert, describe, it, layer } from "@effect/vitest"
import { Effect, Either, FastCheck } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { type Dentry, HostFdBudget, hostMount, hostRoot, readAll, resolve, SyscallError } from "../src/index.js"
import { Dentry as DentryClass } from "../src/index.js"
import { Exited, fixture, kernelLayer, probe, runGuest } from "./helpers.js"

// ---- the tree ---------------------------------------------------------------------------------

const HOST_SECRET = "HOST-SECRET-8c1f\n"
const HOST_SECRET_2 = "HOST-SECRET-2-77aa\n"
const PASSWD = "root:x:0:0:container passwd:/root:/bin/sh\n"
const HELLO = "hello from the container\n"
const MIRROR = "in-root mirror of the host path\n"

const top = Fs.mkdtempSync(Path.join(Os.tmpdir(), "runsc-confine-"))
const rootHost = Path.join(top, "root")
afterAll(() => Fs.rmSync(top, { recursive: true, force: true }))

const build = () => {
  Fs.writeFileSync(Path.join(top, "secret.txt"), HOST_SECRET)
  Fs.mkdirSync(Path.join(top, "secretdir"))
  Fs.writeFileSync(Path.join(top, "secretdir", "secret2.txt"), HOST_SECRET_2)
  Fs.mkdirSync(rootHost)
  const at = (p: string) => Path.join(rootHost, p)
  Fs.writeFileSync(at("hello.txt"), HELLO)
  Fs.mkdirSync(at("etc"))
  Fs.writeFileSync(at("etc/passwd"), PASSWD)
  Fs.symlinkSync("/etc/passwd", at("etc/evil"))
  Fs.mkdirSync(at("sub/deeper"), { recursive: true })
  Fs.writeFileSync(at("sub/inner.txt"), "inner\n")
  Fs.symlinkSync("../hello.txt", at("sub/rel"))
  Fs.symlinkSync("../../..", at("sub/up"))
  Fs.symlinkSync("sub", at("dirlink"))
  Fs.symlinkSync("..", at("parentlink"))
  Fs.symlinkSync(Path.join(top, "secret.txt"), at("hostabs"))
  Fs.symlinkSync(top, at("hostdir"))
  Fs.symlinkSync("../../../../secret.txt", at("escape"))
  Fs.symlinkSync("../secret.txt", at("escape2"))
  Fs.symlinkSync("../secretdir", at("escapedir"))
  Fs.symlinkSync("loop2", at("loop1"))
  Fs.symlinkSync("loop1", at("loop2"))
  Fs.symlinkSync("selfloop", at("selfloop"))
  Fs.symlinkSync("nowhere", at("dangling"))
  Fs.mkdirSync(at("é"))
  // The host path of the secret, mirrored inside the root: an absolute symlink names this.
  Fs.mkdirSync(at(top), { recursive: true })
  Fs.writeFileSync(at(Path.join(top, "secret.txt")), MIRROR)
  Fs.mkdirSync(at("big"))
  for (let i = 0; i < 300; i++) Fs.writeFileSync(at(`big/${String(i).padStart(3, "0")}-${"n".repeat(100)}`), "")
  // More dirents (2200 × 144 bytes) than the channel's data area (256 KiB) holds.
  Fs.mkdirSync(at("huge"))
  for (let i = 0; i < 2200; i++) Fs.writeFileSync(at(`huge/${String(i).padStart(4, "0")}-${"h".repeat(116)}`), "")
}
build()

const topLevel = Fs.readdirSync(rootHost).sort()
const hostIno = (p: string) => Fs.lstatSync(p, { bigint: true }).ino
const secretInos = new Set([hostIno(Path.join(top, "secret.txt")), hostIno(Path.join(top, "secretdir", "secret2.txt")), hostIno(top)])

const hostPasswd = (() => {
  try {
    return Fs.readFileSync("/etc/passwd", "utf8")
  } catch {
    return undefined
  }
})()

// ---- direct resolution ------------------------------------------------------------------------

const rootDentry = Effect.map(Effect.flatMap(HostFdBudget.ofProcess, (fds) => hostRoot(rootHost, { fds })), DentryClass.root)

const errnoOf = (e: Either.Either<Dentry, SyscallError>) => (Either.isLeft(e) ? e.left.errno : 0)

const resolveFrom = (path: string, options: { follow?: boolean; from?: string } = {}) =>
  Effect.gen(function*() {
    const root = yield* rootDentry
    const start = options.from === undefined ? root : yield* resolve(root, root, options.from, { followFinal: true })
    return yield* Effect.either(resolve(root, start, path, { followFinal: options.follow ?? true }))
  })

const contentOf = (d: Dentry) =>
  Effect.map(readAll(d.inode.open({ read: true, write: false })), (b) => new TextDecoder().decode(b))

describe("resolve()", () => {
  it.scopedLive("`..` stops at the root", () =>
    Effect.gen(function*() {
      for (const p of ["..", "../..", "../../../../../../..", "/..", "sub/../../..", "./../."]) {
        const r = yield* resolveFrom(p)
        assert.isTrue(Either.isRight(r), p)
        assert.strictEqual(Either.getOrThrow(r).path, "/", p)
      }
      const passwd = Either.getOrThrow(yield* resolveFrom("../../../../etc/passwd"))
      assert.strictEqual(passwd.path, "/etc/passwd")
      assert.strictEqual(yield* contentOf(passwd), PASSWD)
    }))

  it.scopedLive("absolute paths start at the container root, from any directory", () =>
    Effect.gen(function*() {
      const d = Either.getOrThrow(yield* resolveFrom("/etc/passwd", { from: "sub/deeper" }))
      assert.strictEqual(d.path, "/etc/passwd")
      assert.strictEqual(yield* contentOf(d), PASSWD)
      const rel = Either.getOrThrow(yield* resolveFrom("../inner.txt", { from: "sub/deeper" }))
      assert.strictEqual(rel.path, "/sub/inner.txt")
    }))

  it.scopedLive("relative symlinks resolve inside the root; a final symlink is kept without follow", () =>
    Effect.gen(function*() {
      const followed = Either.getOrThrow(yield* resolveFrom("sub/rel"))
      assert.strictEqual(followed.path, "/hello.txt")
      assert.strictEqual(yield* contentOf(followed), HELLO)
      const link = Either.getOrThrow(yield* resolveFrom("sub/rel", { follow: false }))
      assert.strictEqual(link.path, "/sub/rel")
      assert.strictEqual(link.inode.filetype, FileType.SYMBOLIC_LINK)
      assert.strictEqual(Either.getOrThrow(yield* resolveFrom("dirlink/inner.txt")).path, "/sub/inner.txt")
      assert.strictEqual(Either.getOrThrow(yield* resolveFrom("dirlink/..")).path, "/")
      assert.strictEqual(Either.getOrThrow(yield* resolveFrom("sub/up")).path, "/")
      assert.strictEqual(Either.getOrThrow(yield* resolveFrom("sub/up/../sub/up/hello.txt")).path, "/hello.txt")
      assert.strictEqual(Either.getOrThrow(yield* resolveFrom("parentlink/parentlink/etc")).path, "/etc")
    }))

  it.scopedLive("an absolute symlink target names that path inside the root, never the host's", () =>
    Effect.gen(function*() {
      const evil = Either.getOrThrow(yield* resolveFrom("etc/evil"))
      assert.strictEqual(evil.path, "/etc/passwd")
      const content = yield* contentOf(evil)
      assert.strictEqual(content, PASSWD)
      if (hostPasswd !== undefined) assert.notStrictEqual(content, hostPasswd)
      // hostabs -> <host tmp>/secret.txt: the root has its own file at that path.
      const mirror = Either.getOrThrow(yield* resolveFrom("hostabs"))
      assert.strictEqual(mirror.path, Path.join(top, "secret.txt"))
      assert.strictEqual(yield* contentOf(mirror), MIRROR)
    }))

  it.scopedLive("symlinks planted to reach host files outside the root find nothing there", () =>
    Effect.gen(function*() {
      for (const p of ["escape", "escape2", "escapedir/secret2.txt", "hostdir/secretdir/secret2.txt", "sub/up/secret.txt"]) {
        assert.strictEqual(errnoOf(yield* resolveFrom(p)), Errno.NOENT, p)
      }
      // hostdir -> <host tmp dir>: inside the root that is the mirror directory.
      const dir = Either.getOrThrow(yield* resolveFrom("hostdir"))
      assert.strictEqual(dir.path, top)
      assert.isFalse(secretInos.has((yield* dir.inode.stat).ino))
    }))

  it.scopedLive("symlink loops give ELOOP; a final loop without follow is the link itself", () =>
    Effect.gen(function*() {
      for (const p of ["loop1", "loop2", "selfloop", "loop1/x", "selfloop/"]) {
        assert.strictEqual(errnoOf(yield* resolveFrom(p)), Errno.LOOP, p)
      }
      const link = Either.getOrThrow(yield* resolveFrom("loop1", { follow: false }))
      assert.strictEqual(link.inode.filetype, FileType.SYMBOLIC_LINK)
      assert.strictEqual(errnoOf(yield* resolveFrom("loop1/", { follow: false })), Errno.LOOP)
      assert.strictEqual(errnoOf(yield* resolveFrom("dangling")), Errno.NOENT)
      assert.strictEqual(Either.getOrThrow(yield* resolveFrom("dangling", { follow: false })).path, "/dangling")
    }))

  it.scopedLive("ENAMETOOLONG for a component over 255 bytes or a path over PATH_MAX; EINVAL for NUL; ENOENT for ''", () =>
    Effect.gen(function*() {
      assert.strictEqual(errnoOf(yield* resolveFrom("a".repeat(256))), Errno.NAMETOOLONG)
      assert.strictEqual(errnoOf(yield* resolveFrom("a".repeat(255))), Errno.NOENT)
      assert.strictEqual(errnoOf(yield* resolveFrom(`sub/${"b".repeat(300)}/x`)), Errno.NAMETOOLONG)
      assert.strictEqual(errnoOf(yield* resolveFrom("./".repeat(2049))), Errno.NAMETOOLONG)
      assert.strictEqual(errnoOf(yield* resolveFrom("hello.txt\0")), Errno.INVAL)
      assert.strictEqual(errnoOf(yield* resolveFrom("\0")), Errno.INVAL)
      assert.strictEqual(errnoOf(yield* resolveFrom("sub/\0/x")), Errno.INVAL)
      assert.strictEqual(errnoOf(yield* resolveFrom("")), Errno.NOENT)
    }))

  it.scopedLive("name and path limits are in bytes (UTF-8), as on Linux", () =>
    Effect.gen(function*() {
      // 128 two-byte characters: 256 bytes.
      assert.strictEqual(errnoOf(yield* resolveFrom("é".repeat(128))), Errno.NAMETOOLONG)
      // 4000 characters but 4800 bytes: over PATH_MAX (4096).
      const longInBytes = "é/../".repeat(800)
      assert.strictEqual(Buffer.byteLength(longInBytes), 4800)
      assert.strictEqual(errnoOf(yield* resolveFrom(longInBytes)), Errno.NAMETOOLONG)
    }))

  it.scopedLive("a trailing slash or a path through a file gives ENOTDIR", () =>
    Effect.gen(function*() {
      for (const p of ["hello.txt/", "hello.txt/.", "hello.txt/..", "hello.txt/x", "sub/rel/"]) {
        assert.strictEqual(errnoOf(yield* resolveFrom(p)), Errno.NOTDIR, p)
      }
      assert.strictEqual(Either.getOrThrow(yield* resolveFrom("dirlink/", { follow: false })).path, "/sub")
    }))

  const component = FastCheck.constantFrom(
    "..", ".", "", "sub", "deeper", "etc", "evil", "passwd", "hello.txt", "rel", "up", "dirlink", "parentlink",
    "hostabs", "hostdir", "escape", "escape2", "escapedir", "secretdir", "secret.txt", "secret2.txt", "loop1",
    "dangling", "nonexistent", "tmp", top.slice(1)
  )
  it.live.prop(
    "every path that resolves names a file inside the root (the one at its in-root path), never a host secret",
    [FastCheck.boolean(), FastCheck.array(component, { minLength: 1, maxLength: 8 }), FastCheck.boolean(), FastCheck.constantFrom("", "sub", "sub/deeper", "etc")],
    ([absolute, parts, follow, from]) =>
      Effect.gen(function*() {
        const path = (absolute ? "/" : "") + parts.join("/")
        const r = yield* resolveFrom(path, from === "" ? { follow } : { follow, from })
        if (Either.isLeft(r)) {
          assert.include([Errno.NOENT, Errno.NOTDIR, Errno.LOOP], r.left.errno, `${path}: ${r.left.message}`)
          return
        }
        const d = r.right
        assert.match(d.path, /^\/([^/]+(\/[^/]+)*)?$/, "a canonical in-root path")
        const st = yield* d.inode.stat
        const atPath = Fs.lstatSync(Path.join(rootHost, d.path), { bigint: true })
        assert.strictEqual(st.ino, atPath.ino, `${path} -> ${d.path} is not the file at that path in the root`)
        assert.strictEqual(st.dev, atPath.dev)
        assert.isFalse(secretInos.has(st.ino), `${path} reached a host secret`)
      }).pipe(Effect.scoped),
    { fastCheck: { numRuns: 300 } }
  )
})

// ---- guests ---------------------------------------------------------------------------------

const run = (name: string, argv: ReadonlyArray<string>) =>
  Effect.flatMap(rootDentry, (root) => runGuest({ bytes: fixture(name), argv: [name, ...argv], root }))

const noSecrets = (text: string) => {
  assert.notInclude(text, "HOST-SECRET")
}

/**
 * A guest that path_opens `path` under the preopen (fd 3) and copies up to 8 KiB of it to
 * stdout; it exits with the errno of the first call that fails (0 when all succeed).
 */
const openGuest = (
  path: string | Uint8Array,
  o: { lookup?: number; oflags?: number; base?: bigint; inheriting?: bigint; fdflags?: number; dirfd?: number } = {}
) => {
  const bytes = typeof path === "string" ? new TextEncoder().encode(path) : path
  return probe({
    pages: 2,
    data: [[1024, bytes]],
    extra: `
  (func $run (result i32) (local $e i32) (local $fd i32)
    (local.set $e (call $path_open (i32.const ${o.dirfd ?? 3}) (i32.const ${o.lookup ?? 1}) (i32.const 1024) (i32.const ${bytes.length})
      (i32.const ${o.oflags ?? 0}) (i64.const ${o.base ?? 0x6n}) (i64.const ${o.inheriting ?? 0n}) (i32.const ${o.fdflags ?? 0}) (i32.const 0)))
    (if (local.get $e) (then (return (local.get $e))))
    (local.set $fd (i32.load (i32.const 0)))
    ;; iovec {65536, 8192} at 16, nread at 24
    (i32.store (i32.const 16) (i32.const 65536))
    (i32.store (i32.const 20) (i32.const 8192))
    (local.set $e (call $fd_read (local.get $fd) (i32.const 16) (i32.const 1) (i32.const 24)))
    (if (local.get $e) (then (return (local.get $e))))
    ;; ciovec {65536, nread} at 32
    (i32.store (i32.const 32) (i32.const 65536))
    (i32.store (i32.const 36) (i32.load (i32.const 24)))
    (local.set $e (call $fd_write (i32.const 1) (i32.const 32) (i32.const 1) (i32.const 40)))
    (if (local.get $e) (then (return (local.get $e))))
    (call $fd_close (local.get $fd)))`,
    body: "(call $run)"
  })
}

/** A guest that calls one path syscall on the preopen and exits with its errno. */
const pathCall = (call: string, path: string) =>
  probe({ data: [[1024, path], [2048, "target"]], body: call.replace("PATH", `(i32.const 1024) (i32.const ${Buffer.byteLength(path)})`) })

/** fd_readdir on fd 3 (or on `dir` opened first) from `cookie` into a `len`-byte buffer, copied to stdout. */
const readdirGuest = (o: { len: number; cookie?: number; dir?: string; pages?: number }) =>
  probe({
    pages: o.pages ?? 2,
    data: [[1024, o.dir ?? ""]],
    extra: `
  (func $run (result i32) (local $e i32) (local $fd i32)
    (local.set $fd (i32.const 3))
    ${o.dir === undefined ? "" : `
    (local.set $e (call $path_open (i32.const 3) (i32.const 1) (i32.const 1024) (i32.const ${Buffer.byteLength(o.dir)})
      (i32.const 2) (i64.const 0x4000) (i64.const 0) (i32.const 0) (i32.const 0)))
    (if (local.get $e) (then (return (local.get $e))))
    (local.set $fd (i32.load (i32.const 0)))`}
    (local.set $e (call $fd_readdir (local.get $fd) (i32.const 65536) (i32.const ${o.len}) (i64.const ${o.cookie ?? 0}) (i32.const 8)))
    (if (local.get $e) (then (return (local.get $e))))
    (i32.store (i32.const 16) (i32.const 65536))
    (i32.store (i32.const 20) (i32.load (i32.const 8)))
    (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))`,
    body: "(call $run)"
  })

interface Dirent {
  readonly next: bigint
  readonly ino: bigint
  readonly type: number
  readonly name: string
}

/** Parses packed dirents; a truncated last record is returned with `truncated`. */
const parseDirents = (bytes: Buffer): { entries: Array<Dirent>; truncated: boolean } => {
  const entries: Array<Dirent> = []
  let at = 0
  while (at + 24 <= bytes.length) {
    const namlen = bytes.readUInt32LE(at + 16)
    if (at + 24 + namlen > bytes.length) return { entries, truncated: true }
    entries.push({
      next: bytes.readBigUInt64LE(at),
      ino: bytes.readBigUInt64LE(at + 8),
      type: bytes.readUInt8(at + 20),
      name: bytes.subarray(at + 24, at + 24 + namlen).toString("utf8")
    })
    at += 24 + namlen
  }
  return { entries, truncated: at !== bytes.length }
}

const runProbe = (bytes: Uint8Array) => Effect.flatMap(rootDentry, (root) => runGuest({ bytes, root }))

layer(kernelLayer, { excludeTestServices: true })("guests in the confined root", (it) => {
  it.scoped("cat reads files of the root by absolute and relative paths, through symlinks", () =>
    Effect.gen(function*() {
      const r = yield* run("cat", ["/etc/passwd", "etc/evil", "/sub/rel", "/dirlink/inner.txt", "/sub/up/hello.txt", "/hostabs"])
      assert.deepStrictEqual(r.status, Exited(0), r.stderr)
      assert.strictEqual(r.stdout, PASSWD + PASSWD + HELLO + "inner\n" + HELLO + MIRROR)
      if (hostPasswd !== undefined) assert.notInclude(r.stdout, hostPasswd)
    }))

  it.scoped("cat never yields a host secret through any planted path", () =>
    Effect.gen(function*() {
      const attempts = [
        "../../../../../secret.txt",
        "/../secret.txt",
        "/escape",
        "/escape2",
        "/escapedir/secret2.txt",
        "/hostdir/secretdir/secret2.txt",
        "/sub/up/../secret.txt",
        Path.join(top, "secretdir", "secret2.txt")
      ]
      for (const p of attempts) {
        const r = yield* run("cat", [p])
        assert.deepStrictEqual(r.status, Exited(1), `${p}: ${r.stdout}`)
        assert.strictEqual(r.stdout, "", p)
        noSecrets(r.stderr)
      }
      // The host path of the secret names the root's own file at that path.
      const r = yield* run("cat", [Path.join(top, "secret.txt")])
      assert.strictEqual(r.stdout, MIRROR)
    }))

  it.scoped("stat (lstat) sees links as links, loops as ELOOP, and sizes from the root", () =>
    Effect.gen(function*() {
      const r = yield* run("stat", ["/hello.txt", "/etc/evil", "/sub", "/loop1", "/loop1/x", "/dangling", "/nonexistent", "/escape", "/sub/up/etc/passwd"])
      assert.deepStrictEqual(r.status, Exited(0))
      const lines = r.stdout.trimEnd().split("\n")
      assert.strictEqual(lines[0], `/hello.txt file ${HELLO.length}`)
      assert.strictEqual(lines[1], "/etc/evil symlink 11")
      assert.match(lines[2]!, /^\/sub dir \d+$/)
      assert.strictEqual(lines[3], "/loop1 symlink 5")
      assert.match(lines[4]!, /^\/loop1\/x error .*(loop|levels)/i)
      assert.strictEqual(lines[5], "/dangling symlink 7")
      assert.match(lines[6]!, /^\/nonexistent error No such file or directory$/)
      assert.strictEqual(lines[7], `/escape symlink ${"../../../../secret.txt".length}`)
      assert.strictEqual(lines[8], `/sub/up/etc/passwd file ${PASSWD.length}`)
    }))

  it.scoped("ls lists the root, and `..`-escaping symlinked directories list the root again", () =>
    Effect.gen(function*() {
      const typeOf = (name: string) => {
        const st = Fs.lstatSync(Path.join(rootHost, name))
        return st.isDirectory() ? "d" : st.isSymbolicLink() ? "l" : st.isFile() ? "f" : "?"
      }
      const expected = topLevel.map((n) => `${typeOf(n)} ${n}\n`).join("")
      for (const dir of ["/", "/..", "/sub/up", "/parentlink", "/dirlink/.."]) {
        const r = yield* run("ls", [dir])
        assert.deepStrictEqual(r.status, Exited(0), `${dir}: ${r.stderr}`)
        assert.strictEqual(r.stdout, expected, dir)
      }
      const sub = yield* run("ls", ["/dirlink"])
      assert.strictEqual(sub.stdout, "d deeper\nf inner.txt\nl rel\nl up\n")
    }))

  it.scoped("ls of a directory larger than one readdir buffer lists every entry once", () =>
    Effect.gen(function*() {
      const r = yield* run("ls", ["/big"])
      assert.deepStrictEqual(r.status, Exited(0))
      assert.strictEqual(r.stdout, Fs.readdirSync(Path.join(rootHost, "big")).sort().map((n) => `f ${n}\n`).join(""))
    }))

  it.scoped("fd_readdir lists `.`, `..` and every entry with its inode, type and next cookie", () =>
    Effect.gen(function*() {
      const r = yield* runProbe(yield* readdirGuest({ len: 8192 }))
      assert.deepStrictEqual(r.status, Exited(0))
      const { entries, truncated } = parseDirents(r.stdoutBytes)
      assert.isFalse(truncated)
      assert.deepStrictEqual(entries.map((e) => e.name), [".", "..", ...topLevel])
      const rootIno = hostIno(rootHost)
      assert.strictEqual(entries[0]!.ino, rootIno)
      assert.strictEqual(entries[1]!.ino, rootIno, "`..` of the root is the root")
      entries.forEach((e, i) => assert.strictEqual(e.next, BigInt(i + 1)))
      for (const e of entries.slice(2)) {
        const name = e.name
        const st = Fs.lstatSync(Path.join(rootHost, name), { bigint: true })
        assert.strictEqual(e.ino, st.ino, name)
        assert.strictEqual(e.type, st.isDirectory() ? FileType.DIRECTORY : st.isSymbolicLink() ? FileType.SYMBOLIC_LINK : FileType.REGULAR_FILE, name)
      }
    }))

  it.scoped("fd_readdir of a subdirectory: `..` is its parent; cookies resume; a short buffer is filled and cut", () =>
    Effect.gen(function*() {
      const sub = yield* runProbe(yield* readdirGuest({ len: 8192, dir: "sub" }))
      assert.deepStrictEqual(sub.status, Exited(0))
      const { entries } = parseDirents(sub.stdoutBytes)
      assert.deepStrictEqual(entries.map((e) => e.name), [".", "..", "deeper", "inner.txt", "rel", "up"])
      assert.strictEqual(entries[0]!.ino, hostIno(Path.join(rootHost, "sub")))
      assert.strictEqual(entries[1]!.ino, hostIno(rootHost))

      const resumed = yield* runProbe(yield* readdirGuest({ len: 8192, dir: "sub", cookie: 3 }))
      assert.deepStrictEqual(parseDirents(resumed.stdoutBytes).entries.map((e) => e.name), ["inner.txt", "rel", "up"])

      const short = yield* runProbe(yield* readdirGuest({ len: 30, dir: "sub" }))
      assert.deepStrictEqual(short.status, Exited(0))
      assert.strictEqual(short.stdoutBytes.length, 30, "bufused == len: the buffer was filled")
      const parsed = parseDirents(short.stdoutBytes)
      assert.deepStrictEqual(parsed.entries.map((e) => e.name), ["."])
      assert.isTrue(parsed.truncated)

      const past = yield* runProbe(yield* readdirGuest({ len: 8192, dir: "sub", cookie: 100 }))
      assert.strictEqual(past.stdout, "")
    }))

  it.scoped("fd_readdir into a buffer larger than the channel's data area returns every entry once", () =>
    Effect.gen(function*() {
      // /huge holds 2200 × 144-byte records (~310 KiB); the guest asks with a 600 KiB buffer.
      const r = yield* runProbe(yield* readdirGuest({ len: 600 * 1024, dir: "huge", pages: 12 }))
      assert.deepStrictEqual(r.status, Exited(0))
      const { entries, truncated } = parseDirents(r.stdoutBytes)
      assert.isFalse(truncated)
      assert.deepStrictEqual(entries.map((e) => e.name), [".", "..", ...Fs.readdirSync(Path.join(rootHost, "huge")).sort()])
      entries.forEach((e, i) => assert.strictEqual(e.next, BigInt(i + 1)))
      assert.strictEqual(r.stdoutBytes.length, entries.reduce((n, e) => n + 24 + Buffer.byteLength(e.name), 0))
    }))

  it.scoped("path_open from the root preopen: `..` stops at the root, symlinks resolve inside it (absolute targets from the root)", () =>
    Effect.gen(function*() {
      const cases: Array<[string, string]> = [
        ["hello.txt", HELLO],
        ["../../etc/passwd", PASSWD],
        ["../../../../../../etc/passwd", PASSWD],
        ["etc/evil", PASSWD],
        ["sub/up/sub/rel", HELLO],
        ["hostabs", MIRROR]
      ]
      for (const [path, content] of cases) {
        const r = yield* runProbe(yield* openGuest(path))
        assert.deepStrictEqual(r.status, Exited(0), path)
        assert.strictEqual(r.stdout, content, path)
      }
    }))

  it.scoped("path_open errors: ENOENT for escapes, NOTCAPABLE for absolute paths (WASI), ELOOP, ENAMETOOLONG, EINVAL, ENOTDIR, EILSEQ", () =>
    Effect.gen(function*() {
      const cases: Array<[string | Uint8Array, number, Parameters<typeof openGuest>[1]?]> = [
        ["escape", Errno.NOENT],
        // WASI paths are relative to their directory fd: an absolute one, even from "/", is refused.
        ["/etc/passwd", Errno.NOTCAPABLE],
        ["/", Errno.NOTCAPABLE],
        ["escape2", Errno.NOENT],
        ["hostdir/secretdir/secret2.txt", Errno.NOENT],
        ["escapedir/secret2.txt", Errno.NOENT],
        ["loop1", Errno.LOOP],
        ["selfloop", Errno.LOOP],
        ["etc/evil", Errno.LOOP, { lookup: 0 }], // O_NOFOLLOW on a symlink
        ["a".repeat(256), Errno.NAMETOOLONG],
        ["x/".repeat(2100), Errno.NAMETOOLONG],
        ["hello.txt\0.png", Errno.INVAL],
        ["", Errno.NOENT],
        ["hello.txt/", Errno.NOTDIR],
        ["hello.txt", Errno.NOTDIR, { oflags: 2 }], // O_DIRECTORY
        [new Uint8Array([0x68, 0xff, 0xfe, 0x2e]), Errno.ILSEQ]
      ]
      for (const [path, errno, options] of cases) {
        const r = yield* runProbe(yield* openGuest(path, options))
        assert.deepStrictEqual(r.status, Exited(errno), typeof path === "string" ? JSON.stringify(path.slice(0, 40)) : "bytes")
        noSecrets(r.stdout)
      }
    }))

  it.scoped("nothing can be written: O_CREAT, O_TRUNC, write rights, mkdir, unlink, rmdir, symlink, rename give EROFS", () =>
    Effect.gen(function*() {
      const FD_WRITE = 0x40n
      const openCases: Array<[string, number, Parameters<typeof openGuest>[1]]> = [
        ["newfile", Errno.ROFS, { oflags: 1, base: 0x46n }],
        ["newfile", Errno.ROFS, { oflags: 1 }],
        ["sub/newfile", Errno.ROFS, { oflags: 1 }],
        ["escape", Errno.ROFS, { oflags: 1 }], // a dangling link would be created through
        ["hello.txt", Errno.ROFS, { base: 0x2n | FD_WRITE }],
        ["hello.txt", Errno.ROFS, { oflags: 8 }], // O_TRUNC
        ["hello.txt", Errno.ROFS, { oflags: 1, base: 0x2n | FD_WRITE }],
        ["hello.txt", Errno.EXIST, { oflags: 1 | 4 }], // O_CREAT|O_EXCL
        ["sub", Errno.ISDIR, { base: FD_WRITE }]
      ]
      for (const [path, errno, options] of openCases) {
        const r = yield* runProbe(yield* openGuest(path, options))
        assert.deepStrictEqual(r.status, Exited(errno), `${path} ${JSON.stringify(options, (_, v) => typeof v === "bigint" ? `${v}` : v)}`)
      }
      const calls: Array<[string, string]> = [
        ["(call $path_create_directory (i32.const 3) PATH)", "newdir"],
        ["(call $path_unlink_file (i32.const 3) PATH)", "hello.txt"],
        ["(call $path_remove_directory (i32.const 3) PATH)", "sub/deeper"],
        ["(call $path_symlink (i32.const 2048) (i32.const 6) (i32.const 3) PATH)", "newlink"],
        ["(call $path_rename (i32.const 3) PATH (i32.const 3) (i32.const 2048) (i32.const 6))", "hello.txt"],
        ["(call $path_link (i32.const 3) (i32.const 0) PATH (i32.const 3) (i32.const 2048) (i32.const 6))", "hello.txt"],
        ["(call $path_filestat_set_times (i32.const 3) (i32.const 0) PATH (i64.const 0) (i64.const 0) (i32.const 10))", "hello.txt"]
      ]
      for (const [call, path] of calls) {
        const r = yield* runProbe(yield* pathCall(call, path))
        assert.deepStrictEqual(r.status, Exited(Errno.ROFS), call)
      }
      // The host tree is untouched.
      assert.deepStrictEqual(Fs.readdirSync(rootHost).sort(), topLevel)
      assert.strictEqual(Fs.readFileSync(Path.join(rootHost, "hello.txt"), "utf8"), HELLO)
      assert.isTrue(Fs.existsSync(Path.join(rootHost, "sub", "deeper")))
    }))

  it.scoped("path_filestat_get and path_readlink see the link, never its host target", () =>
    Effect.gen(function*() {
      // readlink of /etc/evil returns the stored target text; following it stats the root's passwd.
      const link = yield* runProbe(yield* probe({
        data: [[1024, "etc/evil"]],
        extra: `
  (func $run (result i32) (local $e i32)
    (local.set $e (call $path_readlink (i32.const 3) (i32.const 1024) (i32.const 8) (i32.const 4096) (i32.const 64) (i32.const 8)))
    (if (local.get $e) (then (return (local.get $e))))
    (i32.store (i32.const 16) (i32.const 4096))
    (i32.store (i32.const 20) (i32.load (i32.const 8)))
    (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))
    (local.set $e (call $path_filestat_get (i32.const 3) (i32.const 1) (i32.const 1024) (i32.const 8) (i32.const 8192)))
    (if (local.get $e) (then (return (local.get $e))))
    ;; size (u64 at 32) as 8 raw bytes
    (i32.store (i32.const 16) (i32.const 8224))
    (i32.store (i32.const 20) (i32.const 8))
    (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))`,
        body: "(call $run)"
      }))
      assert.deepStrictEqual(link.status, Exited(0))
      const out = link.stdoutBytes
      assert.strictEqual(out.subarray(0, 11).toString(), "/etc/passwd")
      assert.strictEqual(out.readBigUInt64LE(11), BigInt(PASSWD.length))
    }))
})

describe("a writable host tree (rw bind mount)", () => {
  it.scoped("a directory the guest swapped for a symlink to the host is not followed through an inode looked up before", () =>
    Effect.gen(function*() {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "runsc-bind-rw-"))
      const outside = Fs.mkdtempSync(Path.join(Os.tmpdir(), "runsc-bind-outside-"))
      Fs.mkdirSync(Path.join(dir, "a"))
      Fs.writeFileSync(Path.join(dir, "a", "secret"), "the container's own\n")
      Fs.writeFileSync(Path.join(outside, "secret"), HOST_SECRET)
      const root = yield* hostMount(dir, { writable: true, fds: yield* HostFdBudget.ofProcess })
      const held = yield* root.lookup("a") // as a guest's cwd or directory fd holds it
      const file = yield* held.lookup("secret")
      // The guest moves the directory away and plants a symlink to the host in its place.
      yield* root.changes!.rename("a", root.changes!, "b")
      yield* root.changes!.symlink("a", outside)
      const refused = (effect: Effect.Effect<unknown, SyscallError>) => Effect.map(Effect.either(effect), (r) => (Either.isLeft(r) ? r.left.errno : "succeeded"))
      assert.strictEqual(yield* refused(held.lookup("secret")), Errno.NOENT)
      assert.strictEqual(yield* refused(held.readdir), Errno.NOENT)
      assert.strictEqual(yield* refused(held.changes!.create("planted")), Errno.NOENT)
      assert.strictEqual(yield* refused(held.changes!.unlink("secret")), Errno.NOENT)
      assert.strictEqual(yield* refused(held.changes!.symlink("s", "x")), Errno.NOENT)
      assert.strictEqual(yield* refused(root.changes!.link("hard", file)), Errno.NOENT)
      assert.strictEqual(yield* refused(file.open({ read: true, write: true })), Errno.NOENT)
      assert.strictEqual(yield* refused(file.truncate!(0n)), Errno.NOENT)
      assert.strictEqual(yield* refused(file.setTimes!(0n, 0n)), Errno.NOENT)
      assert.deepStrictEqual(Fs.readdirSync(outside), ["secret"])
      assert.strictEqual(Fs.readFileSync(Path.join(outside, "secret"), "utf8"), HOST_SECRET)
      assert.deepStrictEqual(Fs.readdirSync(dir).sort(), ["a", "b"])
      // Through the new path the symlink is just a symlink: resolved inside the container.
      assert.strictEqual((yield* root.lookup("a")).filetype, FileType.SYMBOLIC_LINK)
      Fs.rmSync(dir, { recursive: true })
      Fs.rmSync(outside, { recursive: true })
    }))
})
