/**
 * The spec's tmpfs mounts: a C guest (test/fixtures/c/fsops.c) changes them as programs do, and
 * every change stays inside the sandbox — the read-only root refuses, other mounts are EXDEV,
 * symlinks resolve inside the container, nothing lands on the host.
 */
import { assert, describe, it } from "@effect/vitest"
import { exited } from "@runsc/abi"
import { Context, Effect, Layer } from "effect"
import { spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { NODE_HEAP, PROCESS_MEMORY } from "@runsc/kernel"
import { Loader } from "../src/index.js"
import { makeBundle, makeOutput, makeSandbox, tempDir } from "./helpers.js"

const withSmall = { mounts: [{ destination: "/small", type: "tmpfs", source: "tmpfs", options: ["size=4k", "mode=755"] }] }

describe("tmpfs mounts", () => {
  it.scopedLive("files, directories, renames, links, symlinks, sizes and times as on Linux; EXDEV, EROFS and ENOSPC where due", () =>
    Effect.gen(function*() {
      const loader = yield* makeSandbox
      const bundle = yield* makeBundle({ args: ["fsops"], ...withSmall })
      const out = yield* makeOutput
      yield* loader.createSubcontainer("fs")
      yield* loader.startSubcontainer({ containerId: "fs", bundle, stdio: { stdout: out.fd, stderr: out.fd } })
      assert.deepStrictEqual(yield* loader.wait("fs"), exited(0), out.read())
      assert.deepStrictEqual(out.read().split("\n"), [
        "create ok",
        "read \"hello\"",
        "excl EEXIST",
        "append ok",
        "size 11 nlink 1",
        "trunc ok",
        "read \"new\"",
        "mkdir ok",
        "mkdir-again EEXIST",
        "create-in ok",
        "rmdir-full ENOTEMPTY",
        "unlink-dir EISDIR",
        "rmdir-file ENOTDIR",
        "unlink-slash ENOTDIR",
        "unlink ok",
        "rmdir ok",
        "rename ok",
        "read-old ENOENT",
        "read-new \"new\"",
        "rename-xdev EXDEV",
        "rename-rofs EROFS",
        "mkdir-subdir ok",
        "rename-into-self EINVAL",
        "link ok",
        "nlink 2",
        "unlink-b ok",
        "read-link \"new\"",
        "link-dir EPERM",
        // WASI: an absolute target is refused; a relative one is stored as written.
        "symlink-absolute EPERM",
        "symlink ok",
        "readlink ../etc/passwd",
        // Resolved inside the container: its /etc/passwd, not the host's.
        "read-rel \"root:x:0:0:root:/root:/bin/sh\"",
        "symlink-up ok",
        // ".." stops at the container's root: nothing of the host is reachable.
        "read-up ENOENT",
        "symlink-loop ok",
        "read-loop ELOOP",
        "unlink-loop ok",
        // O_CREAT through a dangling symlink creates its target, as on Linux; O_EXCL stops at the link.
        "symlink-dangling ok",
        "create-through-link ok",
        "read-target \"via link\"",
        "create-excl-link EEXIST",
        // A hard link cannot bring a file of another mount (the host-backed root) in.
        "link-xdev EXDEV",
        "rename-to-dev EXDEV",
        "ftruncate ok",
        "size 10",
        "fallocate ok",
        "size 20",
        "futimens ok",
        "times 1000.5 2000.7",
        "small-write-2k 2048",
        "small-write-4k ENOSPC",
        "create-rofs EROFS",
        "mkdir-rofs EROFS",
        "mkdir-exists-rofs EEXIST",
        "rmdir-mountpoint EBUSY",
        "ls . .. d2 c rel up dangling made-through-link",
        ""
      ])
      // Nothing of it reached the host: the rootfs has no /tmp and no new file.
      assert.isFalse(Fs.existsSync(Path.join(bundle.rootPath, "tmp")))
      assert.isFalse(Fs.existsSync(Path.join(bundle.rootPath, "etc", "new")))
    }))

  it.scopedLive("a container's tmpfs is its own: shared by its processes, invisible to another container, gone with it", () =>
    Effect.gen(function*() {
      const loader = yield* makeSandbox
      const first = yield* makeBundle({ args: ["sleep", "600"] })
      const second = yield* makeBundle({ args: ["sleep", "600"] })
      for (const [id, bundle] of [["one", first], ["two", second]] as const) {
        yield* loader.createSubcontainer(id)
        yield* loader.startSubcontainer({ containerId: id, bundle, stdio: {} })
      }
      const run = (id: string, argv: ReadonlyArray<string>) =>
        Effect.gen(function*() {
          const out = yield* makeOutput
          const pid = yield* loader.execute({ containerId: id, argv, stdio: { stdout: out.fd, stderr: out.fd } })
          const status = yield* loader.waitPid(id, pid)
          return { status, out: out.read() }
        })
      // The fsops guest leaves /tmp/c behind in container one.
      yield* run("one", ["fsops"])
      assert.deepStrictEqual(yield* run("one", ["cat", "/tmp/c"]), { status: exited(0), out: "new\n\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0" })
      const other = yield* run("two", ["cat", "/tmp/c"])
      assert.notStrictEqual(other.status, exited(0))
      assert.match(other.out, /No such file or directory/)
    }))

  it.scopedLive("a bad tmpfs option is a typed InvalidMount at start, naming the mount; the container can still be destroyed", () =>
    Effect.gen(function*() {
      const loader = yield* makeSandbox
      for (
        const [option, reason] of [
          ["size=lots", /size=lots is not a number of bytes/],
          ["mode=rwx", /mode=rwx is not an octal mode/],
          // Beyond any size a number of bytes can hold exactly.
          ["size=99999999999999999999g", /size=99999999999999999999g is beyond any size/],
          ["size=9007199254740992", /size=9007199254740992 is beyond any size/]
        ] as const
      ) {
        const bundle = yield* makeBundle({ args: ["exit"], mounts: [{ destination: "/scratch", type: "tmpfs", source: "tmpfs", options: [option] }] })
        const id = `bad-${option.split("=")[0]}-${option.length}`
        yield* loader.createSubcontainer(id)
        const error = yield* Effect.flip(loader.startSubcontainer({ containerId: id, bundle, stdio: {} }))
        assert.strictEqual(error._tag, "InvalidMount")
        assert.match(error.message, /^mount at \/scratch: /)
        assert.match(error.message, reason)
        yield* loader.destroySubcontainer(id)
      }
    }))

  it.scopedLive("a mount of a type the sandbox cannot serve (nfs, ext4, …) is a typed InvalidMount; Linux's own pseudo-filesystems are left out", () =>
    Effect.gen(function*() {
      const loader = yield* makeSandbox
      for (const type of ["nfs", "ext4", "overlay", "fuse.sshfs"]) {
        const bundle = yield* makeBundle({ args: ["exit"], mounts: [{ destination: "/data/remote", type, source: "server:/export" }] })
        const id = `type-${type.replace(".", "-")}`
        yield* loader.createSubcontainer(id)
        const error = yield* Effect.flip(loader.startSubcontainer({ containerId: id, bundle, stdio: {} }))
        assert.strictEqual(error._tag, "InvalidMount", type)
        assert.strictEqual(error.message, `mount at /data/remote: type ${type} cannot be served by the sandbox`)
        yield* loader.destroySubcontainer(id)
      }
      // What runc's and containerd's default specs mount for Linux programs starts all the same.
      const defaults = yield* makeBundle({
        args: ["exit", "0"],
        mounts: [
          { destination: "/dev/pts", type: "devpts", source: "devpts", options: ["nosuid", "noexec", "newinstance"] },
          { destination: "/dev/shm", type: "tmpfs", source: "shm", options: ["nosuid", "size=65536k"] },
          { destination: "/dev/mqueue", type: "mqueue", source: "mqueue" },
          { destination: "/sys", type: "sysfs", source: "sysfs", options: ["ro"] },
          { destination: "/sys/fs/cgroup", type: "cgroup", source: "cgroup", options: ["ro"] },
          { destination: "/run", type: "tmpfs", source: "tmpfs" }
        ]
      })
      yield* loader.createSubcontainer("defaults")
      yield* loader.startSubcontainer({ containerId: "defaults", bundle: defaults, stdio: {} })
      assert.deepStrictEqual(yield* loader.wait("defaults"), exited(0))
    }))

})

describe("bind mounts", () => {
  it.scopedLive("appends to a host file in an rw bind mount are O_APPEND writes: none overwrites what a host process appends meanwhile", () =>
    Effect.gen(function*() {
      const loader = yield* makeSandbox
      const host = yield* tempDir
      const log = Path.join(host, "log")
      Fs.writeFileSync(log, "")
      const rounds = 20_000
      const bundle = yield* makeBundle({
        args: ["append_many", "/rw/log", String(rounds), "g"],
        mounts: [{ destination: "/rw", type: "bind", source: host, options: ["rbind", "rw"] }]
      })
      const out = yield* makeOutput
      // A host process appending to the same file all the while the guest runs (until told to
      // stop), one O_APPEND write(2) per byte, as fast as the guest; perl is essential on Debian.
      const stop = Path.join(host, "stop")
      const hostCount = yield* Effect.sync(() => {
        const writer = spawn("perl", ["-e", `open(my $f, ">>", $ARGV[0]) or die; my $n = 0; my $t = time; until (-e $ARGV[1] || time - $t > 60) { syswrite($f, "h") for 1..100; $n += 100 } print $n`, log, stop])
        let said = ""
        writer.stdout.on("data", (chunk) => (said += chunk))
        return new Promise<number>((resolve) => writer.once("close", () => resolve(Number(said))))
      })
      yield* loader.createSubcontainer("appender")
      yield* loader.startSubcontainer({ containerId: "appender", bundle, stdio: { stdout: out.fd, stderr: out.fd } })
      assert.deepStrictEqual(yield* loader.wait("appender"), exited(0), out.read())
      Fs.writeFileSync(stop, "")
      const hostWrites = yield* Effect.promise(() => hostCount)
      assert.strictEqual(out.read(), `appended ${rounds}\n`)
      const text = Fs.readFileSync(log, "utf8")
      assert.strictEqual(text.replace(/h/g, "").length, rounds, "the guest's bytes")
      assert.strictEqual(text.replace(/g/g, "").length, hostWrites, "the host's bytes")
    }))

  it.scopedLive("a host directory or file appears where the spec binds it; its symlinks and .. stay inside the container", () =>
    Effect.gen(function*() {
      const loader = yield* makeSandbox
      const host = yield* tempDir
      const shared = Path.join(host, "shared")
      Fs.mkdirSync(shared)
      Fs.writeFileSync(Path.join(shared, "data.txt"), "shared data\n")
      Fs.writeFileSync(Path.join(host, "outside.txt"), "host secret next to the bind source\n")
      Fs.writeFileSync(Path.join(host, "hosts"), "127.0.0.1 bound\n")
      Fs.symlinkSync(Path.join(host, "outside.txt"), Path.join(shared, "escape_abs"))
      Fs.symlinkSync("../outside.txt", Path.join(shared, "escape_rel"))
      const bundle = yield* makeBundle({
        args: ["sleep", "600"],
        mounts: [
          { destination: "/mnt", type: "bind", source: shared, options: ["rbind", "ro"] },
          { destination: "/etc/hosts", type: "bind", source: Path.join(host, "hosts"), options: ["bind"] }
        ]
      })
      yield* loader.createSubcontainer("binds")
      yield* loader.startSubcontainer({ containerId: "binds", bundle, stdio: {} })
      const cat = (path: string) =>
        Effect.gen(function*() {
          const out = yield* makeOutput
          const pid = yield* loader.execute({ containerId: "binds", argv: ["cat", path], stdio: { stdout: out.fd, stderr: out.fd } })
          const status = yield* loader.waitPid("binds", pid)
          return status._tag === "Exited" && status.code === 0 ? out.read() : `failed: ${out.read()}`
        })
      assert.strictEqual(yield* cat("/mnt/data.txt"), "shared data\n")
      assert.strictEqual(yield* cat("/etc/hosts"), "127.0.0.1 bound\n")
      // An absolute target starts at the container's root, a relative one climbs to it at most.
      for (const path of ["/mnt/escape_abs", "/mnt/escape_rel", "/mnt/../outside.txt"]) {
        assert.match(yield* cat(path), /^failed: .*No such file or directory/, path)
      }
    }))

  it.scopedLive("an rw bind mount takes the guest's changes to the host, and nothing beyond its source; an ro one refuses (EROFS)", () =>
    Effect.gen(function*() {
      const loader = yield* makeSandbox
      const host = yield* tempDir
      const rw = Path.join(host, "rw")
      const ro = Path.join(host, "ro")
      Fs.mkdirSync(Path.join(rw, "full"), { recursive: true })
      Fs.mkdirSync(ro)
      Fs.writeFileSync(Path.join(rw, "gone"), "to be removed\n")
      Fs.writeFileSync(Path.join(rw, "full", "keep"), "kept\n")
      Fs.writeFileSync(Path.join(ro, "data"), "read only\n")
      Fs.writeFileSync(Path.join(host, "file.txt"), "before\n")
      const secret = Path.join(host, "secret")
      Fs.writeFileSync(secret, "host secret\n")
      Fs.symlinkSync(secret, Path.join(rw, "escape"))
      const bundle = yield* makeBundle({
        args: ["bindrw"],
        mounts: [
          { destination: "/rw", type: "bind", source: rw, options: ["rbind", "rw"] },
          { destination: "/rw.txt", type: "bind", source: Path.join(host, "file.txt"), options: ["bind"] },
          { destination: "/ro", type: "bind", source: ro, options: ["rbind", "ro"] }
        ]
      })
      const out = yield* makeOutput
      yield* loader.createSubcontainer("rw")
      yield* loader.startSubcontainer({ containerId: "rw", bundle, stdio: { stdout: out.fd, stderr: out.fd } })
      assert.deepStrictEqual(yield* loader.wait("rw"), exited(0), out.read())
      assert.deepStrictEqual(out.read().split("\n"), [
        "create ok",
        "append ok",
        "read \"one|two|\"",
        "mkdir ok",
        "rename ok",
        "link ok",
        "nlink 2",
        "link-xdev EXDEV",
        "rename-xdev EXDEV",
        "unlink ok",
        "rmdir-full ENOTEMPTY",
        "unlink-dir EISDIR",
        // ../etc/passwd from the mount: the container's, not the file beside the host source.
        "symlink ok",
        "via-link \"root:x:0:0:root:/root:/bin/sh|\"",
        // /rw/escape points at the host secret's path, which the container does not have.
        "write-via-host-symlink ENOENT",
        "ftruncate ok",
        "fsync ok",
        "fdatasync ok",
        "utimens ok",
        "mtime 2000 size 2",
        "write-file-bind ok",
        "file-bind \"file bind|\"",
        "create-ro EROFS",
        "write-ro EROFS",
        "mkdir-ro EROFS",
        ""
      ])
      assert.deepStrictEqual(Fs.readdirSync(rw).sort(), ["dir", "escape", "full", "hard", "link"])
      assert.strictEqual(Fs.readFileSync(Path.join(rw, "dir", "moved"), "utf8"), "on")
      assert.strictEqual(Fs.statSync(Path.join(rw, "hard")).ino, Fs.statSync(Path.join(rw, "dir", "moved")).ino)
      assert.strictEqual(Fs.statSync(Path.join(rw, "dir", "moved")).mtimeMs, 2_000_000)
      assert.strictEqual(Fs.readlinkSync(Path.join(rw, "link")), "../etc/passwd", "the target is stored verbatim")
      assert.strictEqual(Fs.readFileSync(Path.join(host, "file.txt"), "utf8"), "file bind\n")
      assert.strictEqual(Fs.readFileSync(secret, "utf8"), "host secret\n")
      assert.strictEqual(Fs.readFileSync(Path.join(ro, "data"), "utf8"), "read only\n")
      assert.deepStrictEqual(Fs.readdirSync(ro), ["data"])
      assert.deepStrictEqual(Fs.readdirSync(host).sort(), ["file.txt", "ro", "rw", "secret"])
    }))

  it.scopedLive("a bind mount of a missing source is a typed InvalidMount at start", () =>
    Effect.gen(function*() {
      const loader = yield* makeSandbox
      const bundle = yield* makeBundle({ args: ["exit"], mounts: [{ destination: "/mnt", type: "bind", source: "/nonexistent/runsc-source", options: ["rbind"] }] })
      yield* loader.createSubcontainer("missing")
      const error = yield* Effect.flip(loader.startSubcontainer({ containerId: "missing", bundle, stdio: {} }))
      assert.strictEqual(error._tag, "InvalidMount")
      assert.match(error.message, /^mount at \/mnt: \/nonexistent\/runsc-source: /)
    }))
})

describe("the sandbox's memory", () => {
  it.scopedLive("the root container's memory limit is /proc/meminfo's total; a tmpfs without size= holds half of it, all in-memory files together no more than the processes leave (ENOSPC), and a destroyed container gives its share back", () =>
    Effect.gen(function*() {
      const MiB = 1024 * 1024
      const base = yield* makeBundle({ args: ["sleep", "600"], writableRoot: true })
      const limited = { ...base, spec: { ...base.spec, linux: { ...base.spec.linux, resources: { memory: { limit: 128 * MiB } } } } }
      const out = yield* makeOutput
      const loader = yield* Effect.map(
        Layer.build(Loader.layer({ containerId: "limited", bundle: limited, stdio: { stdout: out.fd, stderr: out.fd } })),
        Context.get(Loader)
      )
      yield* loader.startRoot
      const run = (id: string, argv: ReadonlyArray<string>) =>
        Effect.gen(function*() {
          const out = yield* makeOutput
          const pid = yield* loader.execute({ containerId: id, argv, stdio: { stdout: out.fd, stderr: out.fd } })
          yield* loader.waitPid(id, pid)
          return out.read()
        })
      const container = (id: string) =>
        Effect.zipRight(loader.createSubcontainer(id), loader.startSubcontainer({ containerId: id, bundle: base, stdio: {} }))
      assert.match(yield* run("limited", ["cat", "/proc/meminfo"]), /^MemTotal: +131072 kB\n/)
      yield* container("filler")
      assert.strictEqual(yield* run("filler", ["fsbench", "write", "/tmp/big", "100"]), `write ENOSPC after ${64 * MiB}\n`)
      // The overlay roots share with /tmp's 64 MiB what the processes leave of the sandbox's
      // memory: the two sleepers' shares, and that of the fsbench writing (its share and first pages).
      const { memory } = yield* loader.sandboxStats
      assert.strictEqual(memory.total, 128 * MiB)
      const left = memory.total - memory.used - PROCESS_MEMORY
      const written = Number(/^write ENOSPC after (\d+)\n$/.exec(yield* run("filler", ["fsbench", "write", "/big", "100"]))?.[1])
      assert.isAtMost(written, left)
      assert.isAbove(written, left - MiB)
      assert.strictEqual(yield* run("limited", ["fsbench", "write", "/big", "1"]), "write ENOSPC after 0\n")
      yield* loader.destroySubcontainer("filler")
      assert.strictEqual(yield* run("limited", ["fsbench", "write", "/big", "6"]), `wrote ${6 * MiB}\n`)
    }))
})

describe("inodes and names", () => {
  const MiB = 1024 * 1024
  /** Runs `inodes KIND DIR` in the sandbox's root container; its two rounds' counts, and the errno they stopped at. */
  const fill = (loader: Loader["Type"], kind: string, dir: string) =>
    Effect.gen(function*() {
      const out = yield* makeOutput
      const pid = yield* loader.execute({ containerId: "c", argv: ["inodes", kind, dir], stdio: { stdout: out.fd, stderr: out.fd } })
      const status = yield* loader.waitPid("c", pid)
      const rounds = [...out.read().matchAll(/^made (\d+) (\w+)$/gm)].map((m) => ({ made: Number(m[1]), errno: m[2] }))
      assert.deepStrictEqual(status, exited(0), `${kind}: both rounds made as many (${JSON.stringify(rounds)})`)
      assert.lengthOf(rounds, 2)
      for (const round of rounds) assert.strictEqual(round.errno, "ENOSPC", kind)
      return rounds[0]!.made
    })
  const sandbox = (memoryLimit: number, kernel?: { readonly heapShare: number }) =>
    Effect.gen(function*() {
      const base = yield* makeBundle({ args: ["sleep", "600"], writableRoot: true })
      const bundle = { ...base, spec: { ...base.spec, linux: { ...base.spec.linux, resources: { memory: { limit: memoryLimit } } } } }
      const loader = yield* Effect.map(
        Layer.build(Loader.layer({ containerId: "c", bundle, stdio: {}, ...(kernel !== undefined ? { kernel } : {}) })),
        Context.get(Loader)
      )
      yield* loader.startRoot
      return loader
    })

  // Before, each empty file cost the sentry's heap ~1 KiB and nothing of any account: a guest
  // making them in a loop aborted the whole sandbox process (V8's heap out of memory) after 4.5
  // minutes of collections that stalled every other container.
  it.scopedLive("empty files, directories and symlinks in a tmpfs and the overlay count against the sandbox's memory: ENOSPC, then all of it back, and the sandbox serves on", () =>
    Effect.gen(function*() {
      const loader = yield* sandbox(48 * MiB)
      const { memory } = yield* loader.sandboxStats
      const files = yield* fill(loader, "files", "/tmp")
      // Each costs at least a node's charge: never more files than the memory has room for.
      assert.isAtMost(files * NODE_HEAP, memory.total)
      assert.isAbove(files * (NODE_HEAP + 100), memory.total - memory.used - 2 * PROCESS_MEMORY)
      assert.isBelow(yield* fill(loader, "dirs", "/tmp"), files)
      assert.isBelow(yield* fill(loader, "links", "/"), files)
      const { memory: after } = yield* loader.sandboxStats
      assert.strictEqual(after.used, memory.used, "every charge went back")
      const out = yield* makeOutput
      const pid = yield* loader.execute({ containerId: "c", argv: ["echo_args", "still", "serving"], stdio: { stdout: out.fd } })
      assert.deepStrictEqual(yield* loader.waitPid("c", pid), exited(0))
      assert.match(out.read(), /still/)
    }), { timeout: 120_000 })

  it.scopedLive("directory fds of a deep tree, each opened by its full path, count against the heap share: ENOMEM past it, all back at their close", () =>
    Effect.gen(function*() {
      const loader = yield* sandbox(1024 * MiB, { heapShare: 8 * MiB })
      const out = yield* makeOutput
      const pid = yield* loader.execute({ containerId: "c", argv: ["deep_dirs", "/tmp", "1000"], stdio: { stdout: out.fd, stderr: out.fd } })
      assert.deepStrictEqual(yield* loader.waitPid("c", pid), exited(0), out.read())
      const rounds = [...out.read().matchAll(/^opened (\d+) (\w+)$/gm)].map((m) => ({ opened: Number(m[1]), errno: m[2] }))
      assert.lengthOf(rounds, 2)
      // Each fd's chain of 1,000 links is charged 66 KB: beside the 1,000 directories' own 3 MB,
      // the share holds ~75 of them (not the 1,020 fds the limit allows).
      for (const round of rounds) {
        assert.strictEqual(round.errno, "ENOMEM")
        assert.isAtMost(round.opened * 1000 * 66, 8 * MiB)
        assert.isAtLeast(round.opened, 10)
      }
    }), { timeout: 120_000 })

  it.scopedLive("with memory to spare, the sentry's heap share bounds them (KernelOptions.heapShare)", () =>
    Effect.gen(function*() {
      const loader = yield* sandbox(1024 * MiB, { heapShare: 4 * MiB })
      const files = yield* fill(loader, "files", "/tmp")
      assert.isAtMost(files * NODE_HEAP, 4 * MiB)
      assert.isAbove(files * (NODE_HEAP + 100), 4 * MiB - 4 * NODE_HEAP)
    }), { timeout: 120_000 })
})

describe("RLIMIT_NOFILE", () => {
  it.scopedLive("the spec's soft limit bounds the fds of a container's processes, execs included (EMFILE); closing one frees it", () =>
    Effect.gen(function*() {
      const loader = yield* makeSandbox
      const run = (id: string, nofile: number | undefined) =>
        Effect.gen(function*() {
          const bundle = yield* makeBundle({ args: ["sleep", "600"], ...(nofile !== undefined ? { nofile } : {}) })
          yield* loader.createSubcontainer(id)
          yield* loader.startSubcontainer({ containerId: id, bundle, stdio: {} })
          const out = yield* makeOutput
          const pid = yield* loader.execute({ containerId: id, argv: ["fd_limit"], stdio: { stdout: out.fd, stderr: out.fd } })
          assert.deepStrictEqual(yield* loader.waitPid(id, pid), exited(0))
          return out.read()
        })
      // fds 0-2 and the preopen 3 are taken: 12 more fit below 16.
      assert.strictEqual(yield* run("limited", 16), "opened 12 EMFILE last 15\nagain 15\n")
      assert.strictEqual(yield* run("default", undefined), "opened 1020 EMFILE last 1023\nagain 1023\n")
    }))
})
