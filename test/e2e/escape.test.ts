/**
 * Escape attempts end to end: nothing a guest names (`..`, absolute host paths, symlinks that
 * point outside, directory symlinks to "/") may reach a host file outside the container root,
 * for reading or for writing.
 *
 * A host "secret" file lives in its own temp directory, outside the root; the root has symlinks
 * planted towards it. Decoys (/etc/motd, /etc/hostname inside the root) prove that such paths
 * resolve inside the root instead.
 */
import { assert, describe, it } from "@effect/vitest"
import { randomBytes } from "node:crypto"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { afterAll, beforeAll } from "vitest"
import { assembleWat, cFixture, describeResult, makeTempDir, putExecutable, putFile, removeDir, runsc, type RunResult } from "./helpers.js"

const token = randomBytes(8).toString("hex")
const SECRET = `HOST-SECRET-${token}\n`
const MOTD = `rootfs motd ${token}\n`
const HOSTNAME = `rootfs-hostname-${token}\n`
const UPWARDS = "../../../../../../../../../.." // more than enough to climb to the host's /

/** A guest that opens `path` (relative to the preopened "/", fd 3) with O_CREAT|O_TRUNC for
 * writing and writes "pwned\n" into it. Exits with the WASI errno of path_open when it fails,
 * 100 + the errno of fd_write when the open succeeded. */
const writerWat = (path: string) => `
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "pwned\\n")
  (data (i32.const 256) ${JSON.stringify(path)})
  (func (export "_start") (local $r i32)
    ;; dirflags SYMLINK_FOLLOW, oflags CREAT|TRUNC, rights FD_WRITE
    (local.set $r (call $path_open (i32.const 3) (i32.const 1) (i32.const 256) (i32.const ${Buffer.byteLength(path)})
      (i32.const 9) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 8)))
    (if (local.get $r) (then (call $proc_exit (local.get $r))))
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 6))
    (local.set $r (call $fd_write (i32.load (i32.const 8)) (i32.const 0) (i32.const 1) (i32.const 12)))
    (call $proc_exit (i32.add (i32.const 100) (local.get $r)))))
`

const WASI_ENOENT = 44
const WASI_ENOTCAPABLE = 76

describe.concurrent("escape attempts", () => {
  let secretDir = ""
  let secret = "" // absolute host path of the secret file
  let secretRel = "" // the same, relative to the host's /
  let root = ""
  let writers = "" // host directory holding the writer guests (outside the root)

  beforeAll(async () => {
    secretDir = await makeTempDir("runsc-e2e-secret-")
    secret = Path.join(secretDir, "secret.txt")
    Fs.writeFileSync(secret, SECRET)
    secretRel = secret.replace(/^\/+/, "")

    root = await makeTempDir("runsc-e2e-root-")
    await putFile(root, "etc/motd", MOTD)
    await putFile(root, "etc/hostname", HOSTNAME)
    Fs.mkdirSync(Path.join(root, "sub"))
    Fs.symlinkSync(secret, Path.join(root, "escape_abs"))
    Fs.symlinkSync(`../../../../../..${secret}`, Path.join(root, "escape_rel"))
    Fs.symlinkSync("..", Path.join(root, "dotdot"))
    Fs.symlinkSync(secretDir, Path.join(root, "escape_dir"))
    Fs.symlinkSync("/etc/hostname", Path.join(root, "etc_abs"))
    Fs.symlinkSync(`${UPWARDS}/etc/hostname`, Path.join(root, "etc_rel"))
    Fs.symlinkSync("/", Path.join(root, "sub", "rootlink"))

    writers = await makeTempDir("runsc-e2e-writers-")
    const targets = {
      w_escape_abs: "escape_abs",
      w_escape_rel: "escape_rel",
      w_dotdot: `${UPWARDS}/${secretRel}`,
      w_absolute: secret,
      w_motd: "etc/motd",
      w_new: "newfile"
    }
    for (const [name, path] of Object.entries(targets)) {
      await putExecutable(writers, `${name}.wasm`, await assembleWat(writerWat(path), `${name}.wat`))
    }
  })

  afterAll(async () => {
    await removeDir(root)
    await removeDir(secretDir)
    await removeDir(writers)
  })

  const cat = (paths: ReadonlyArray<string>, flags: ReadonlyArray<string> = []) =>
    runsc(["do", "--root-dir", root, ...flags, cFixture("cat"), ...paths], { cwd: root })

  const assertNoSecret = (r: RunResult) => {
    assert.notInclude(r.stdout, SECRET.trim(), `the host secret leaked\n${describeResult(r)}`)
    assert.notInclude(r.stderr, SECRET.trim(), `the host secret leaked\n${describeResult(r)}`)
  }

  /** cat of `path` must fail as if the file did not exist (it does not, inside the root). */
  const assertNotFound = (r: RunResult, path: string) => {
    assertNoSecret(r)
    assert.strictEqual(r.code, 1, describeResult(r))
    assert.strictEqual(r.stdout, "")
    assert.strictEqual(r.stderr, `cat: ${path}: No such file or directory\n`)
  }

  it("cat ../../../../<secret> (relative, from /) does not reach the host", async () => {
    const path = `../../../../${secretRel}`
    assertNotFound(await cat([path]), path)
  })

  it("cat <absolute host path of the secret> does not reach the host", async () => {
    assertNotFound(await cat([secret]), secret)
  })

  it("cat /escape_abs (symlink to the absolute host path) does not reach the host", async () => {
    assertNotFound(await cat(["/escape_abs"]), "/escape_abs")
  })

  it("cat /escape_rel (symlink ../../../../../..<secret>) does not reach the host", async () => {
    assertNotFound(await cat(["/escape_rel"]), "/escape_rel")
  })

  it("cat /dotdot/dotdot/... (symlink to ..) does not reach the host", async () => {
    const path = `/dotdot/dotdot/dotdot/dotdot/${secretRel}`
    assertNotFound(await cat([path]), path)
  })

  it("cat /sub/rootlink/../../.. (directory symlink to /) does not reach the host", async () => {
    const path = `/sub/rootlink/../../../../${secretRel}`
    assertNotFound(await cat([path]), path)
  })

  it("cat /escape_dir/secret.txt (directory symlink to the host dir) does not reach the host", async () => {
    assertNotFound(await cat(["/escape_dir/secret.txt"]), "/escape_dir/secret.txt")
  })

  it("--cwd /sub and ../../../../<secret> does not reach the host", async () => {
    const path = `../../../../${secretRel}`
    assertNotFound(await cat([path], ["--cwd", "/sub"]), path)
  })

  it("--cwd /escape_dir (symlink to the host dir) + cat secret.txt does not reach the host", async () => {
    const r = await cat(["secret.txt"], ["--cwd", "/escape_dir"])
    assertNoSecret(r)
    assert.notStrictEqual(r.code, 0, describeResult(r))
    assert.strictEqual(r.stdout, "")
  })

  it("`..` stops at the root; symlinks (absolute, relative, to / or ..) resolve inside the root", async () => {
    const r = await cat([
      "/../../etc/motd",
      "../../../etc/motd",
      "/dotdot/etc/motd",
      "/dotdot/dotdot/etc/motd",
      "/sub/rootlink/etc/motd",
      "/sub/rootlink/../../etc/motd",
      "/sub/rootlink/sub/rootlink/etc/motd",
      "/etc_abs",
      "/etc_rel"
    ])
    assertNoSecret(r)
    assert.strictEqual(r.code, 0, describeResult(r))
    assert.strictEqual(r.stdout, MOTD.repeat(7) + HOSTNAME.repeat(2))
    assert.strictEqual(r.stderr, "")
  })

  it("stat (lstat) reports the planted links as symlinks, and their targets only inside the root", async () => {
    const r = await runsc(
      ["do", "--root-dir", root, cFixture("stat"), "/escape_abs", "/escape_rel", "/dotdot", "/sub/rootlink", secret, "/escape_dir/secret.txt"],
      { cwd: root }
    )
    assert.strictEqual(r.code, 0, describeResult(r))
    assert.strictEqual(
      r.stdout,
      [
        `/escape_abs symlink ${Buffer.byteLength(secret)}`,
        `/escape_rel symlink ${Buffer.byteLength(`../../../../../..${secret}`)}`,
        "/dotdot symlink 2",
        "/sub/rootlink symlink 1",
        `${secret} error No such file or directory`,
        "/escape_dir/secret.txt error No such file or directory",
        ""
      ].join("\n")
    )
  })

  // dev, proc and tmp are the mount points of `do`'s spec, listed though the root lacks them.
  const rootListing = [
    "d dev",
    "l dotdot",
    "l escape_abs",
    "l escape_dir",
    "l escape_rel",
    "d etc",
    "l etc_abs",
    "l etc_rel",
    "d proc",
    "d sub",
    "d tmp",
    ""
  ].join("\n")

  for (const dir of ["/", "/..", "/dotdot/dotdot", "/sub/rootlink", "/sub/rootlink/.."]) {
    it(`ls ${dir} lists the root's entries only`, async () => {
      const r = await runsc(["do", "--root-dir", root, cFixture("ls"), dir], { cwd: root })
      assert.strictEqual(r.code, 0, describeResult(r))
      assert.strictEqual(r.stdout, rootListing)
      assert.strictEqual(r.stderr, "")
    })
  }

  // The secret's host path, however it is reached (a host symlink planted in the root, ".."),
  // names a directory the container does not have: ENOENT, and the file is never created; given
  // to path_open as an absolute path, it is refused before any lookup (WASI: NOTCAPABLE). Files the root does have, or could hold, are written in `do`'s
  // copy-on-write overlay (the guest's write succeeds: exit 100) and never on the host.
  const WRITTEN_IN_OVERLAY = 100
  const writes: ReadonlyArray<readonly [string, string, number]> = [
    ["w_escape_abs", "/escape_abs (symlink to the host secret)", WASI_ENOENT],
    ["w_escape_rel", "/escape_rel", WASI_ENOENT],
    ["w_dotdot", "../../..<secret>", WASI_ENOENT],
    ["w_absolute", "<absolute host path of the secret>", WASI_ENOTCAPABLE],
    ["w_motd", "/etc/motd (exists in the root)", WRITTEN_IN_OVERLAY],
    ["w_new", "/newfile", WRITTEN_IN_OVERLAY]
  ]
  for (const [name, what, code] of writes) {
    it(`open(O_CREAT|O_TRUNC) + write of ${what} ${code === WASI_ENOENT ? "fails (ENOENT)" : code === WASI_ENOTCAPABLE ? "fails (ENOTCAPABLE)" : "lands in the overlay"} and changes nothing on the host`, async () => {
      const r = await runsc(["do", "--root-dir", root, Path.join(writers, `${name}.wasm`)], { cwd: root })
      assert.strictEqual(r.code, code, describeResult(r))
      assert.strictEqual(Fs.readFileSync(secret, "utf8"), SECRET, "the host secret was modified")
      assert.strictEqual(Fs.readFileSync(Path.join(root, "etc", "motd"), "utf8"), MOTD, "the root's /etc/motd was modified")
      assert.isFalse(Fs.existsSync(Path.join(root, "newfile")), "a file was created in the host's root")
      assert.deepStrictEqual(Fs.readdirSync(secretDir), ["secret.txt"], "a file was created next to the host secret")
    })
  }

  it("what the overlay lets a guest change (its own symlinks, copied-up, linked and moved host symlinks, the host path rebuilt) never reaches the host", async () => {
    const r = await runsc(["do", "--root-dir", root, cFixture("overlay_escape"), secret], { cwd: root })
    assert.strictEqual(r.code, 0, describeResult(r))
    assertNoSecret(r)
    assert.deepStrictEqual(r.stdout.split("\n"), [
      "symlink-absolute EPERM",
      "symlink-to-host ok",
      "write-via-symlink ENOENT",
      "copy-up-host-symlink ok",
      "write-via-copied-symlink ENOENT",
      "link-host-symlink ok",
      "write-via-link ENOENT",
      "rename-host-symlink ok",
      "write-via-moved ENOENT",
      "mkdir-host-path ok",
      "write-host-path ok",
      "read-host-path \"pwned\"",
      "read-via-symlink \"pwned\"",
      "write-motd ok",
      "read-motd \"pwned\"",
      ""
    ])
    assert.strictEqual(Fs.readFileSync(secret, "utf8"), SECRET, "the host secret was modified")
    assert.deepStrictEqual(Fs.readdirSync(secretDir), ["secret.txt"])
    assert.strictEqual(Fs.readFileSync(Path.join(root, "etc", "motd"), "utf8"), MOTD)
    assert.strictEqual(Fs.readlinkSync(Path.join(root, "escape_abs")), secret, "the host symlink was changed")
    assert.isTrue(Fs.lstatSync(Path.join(root, "escape_rel")).isSymbolicLink(), "the host symlink was moved")
    assert.deepStrictEqual(Fs.readdirSync(Path.join(root, "sub")), ["rootlink"])
    assert.isFalse(Fs.existsSync(Path.join(root, "mine")))
  })
})
