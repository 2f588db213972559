/**
 * A sweep of preview1 functions through their raw calls (test/fixtures/c/conformance.c): readdir
 * cookies across cut records, pread/pwrite and offsets, fd_fdstat_set_flags, rights that only
 * drop and bound what a directory opens, NUL bytes and over-long names, readlink truncation,
 * fd_renumber, poll_oneoff over pipes, files, stdin and clocks, sock_* on files, proc_raise, and
 * the offset of a host file the worker reads itself, through lseek, pread and a dup.
 */
import { assert, describe, it } from "@effect/vitest"
import { exited } from "@runsc/abi"
import { Effect } from "effect"
import { execFileSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { makeBundle, makeOutput, makeSandbox, tempDir, waitUntil } from "./helpers.js"

describe("preview1 conformance sweep", () => {
  it.scopedLive("each function answers as WASI and Linux define it", () =>
    Effect.gen(function*() {
      const loader = yield* makeSandbox
      // The rootfs's own symlink with an absolute target (a guest cannot make one).
      const bundle = yield* makeBundle({ args: ["conformance"], populate: (rootfs) => Fs.symlinkSync("/etc/passwd", Path.join(rootfs, "data/abs")) })
      const dir = yield* tempDir
      const stdinPath = Path.join(dir, "stdin")
      Fs.writeFileSync(stdinPath, "stdin data\n")
      const stdin = yield* Effect.acquireRelease(Effect.sync(() => Fs.openSync(stdinPath, "r")), (fd) => Effect.sync(() => Fs.closeSync(fd)))
      const out = yield* makeOutput
      yield* loader.createSubcontainer("sweep")
      yield* loader.startSubcontainer({ containerId: "sweep", bundle, stdio: { stdin, stdout: out.fd, stderr: out.fd } })
      assert.deepStrictEqual(yield* loader.wait("sweep"), exited(0), out.read())
      assert.deepStrictEqual(out.read().split("\n"), [
        "stdin 11 stdin data",
        // 100 files, "." and "..": each once, through 128-byte buffers that always end with a cut record.
        "readdir entries 102 dots 2",
        "readdir restart .",
        // pread and pwrite leave the offset where it was.
        "pread 567 offset 2",
        "pwrite offset 2",
        "seek-end 7",
        "seek-negative EINVAL",
        // O_APPEND set after the open: the next write goes to the end.
        "set-flags-append ok",
        "append-write offset 11",
        "set-flags-bad EINVAL",
        "datasync ok",
        "sync ok",
        // Rights only drop; a directory's inheriting rights bound what it opens.
        "drop-write ok",
        "write-without-right ENOTCAPABLE",
        "regain-write ENOTCAPABLE",
        "open-beyond-inheriting ENOTCAPABLE",
        "open-within-inheriting ok",
        "nul-in-path EINVAL",
        "name-too-long ENAMETOOLONG",
        // readlink truncates to the buffer, as readlink(2).
        "readlink-truncated 3 off",
        "lstat-type symlink",
        "stat-type file size 11",
        "open-dir-for-write EISDIR",
        "directory-flag-on-file ENOTDIR",
        // WASI, not Linux: beneath the directory fd, never above it or absolute.
        "abs-open ENOTCAPABLE",
        "abs-open-root ENOTCAPABLE",
        "abs-stat ENOTCAPABLE",
        "abs-mkdir ENOTCAPABLE",
        "abs-unlink ENOTCAPABLE",
        "abs-link-target ENOTCAPABLE",
        "dotdot-above-fd ENOTCAPABLE",
        "dotdot-above-and-back ENOTCAPABLE",
        "dotdot-as-name ENOTCAPABLE",
        "dotdot-within ok",
        // `..` of the container's root is the root, as on Linux (and node:wasi's "/" preopen).
        "dotdot-of-root ok",
        "symlink-leaves-fd ENOTCAPABLE",
        "symlink-stays-in-fd ok",
        "abs-target-from-root ok",
        "abs-target-from-dir ENOTCAPABLE",
        "symlink-absolute EPERM",
        "symlink-relative-up ok",
        "trunc-without-right ENOTCAPABLE",
        "untruncated file",
        "link-trailing-slash ENOENT",
        "link-dir-trailing-slash ENOENT",
        "link-existing-trailing-slash EEXIST",
        // pwrite on an APPEND fd appends (as Linux); once APPEND is cleared, writes go to the offset.
        "clear-append ok",
        "after-clear 0XY3456P offset 3",
        "renumber ok",
        "renumbered reads A",
        "old-fd-closed EBADF",
        "renumber-bad EBADF",
        // An empty pipe, a file, a 5 s clock: the file. Then a pipe with data and stdin: both.
        "poll-file 1 userdata 2",
        "poll-streams 2 mask 18",
        "poll-clock 1 userdata 3",
        "poll-past 1 userdata 7",
        "accept-on-file ENOTSOCK",
        "recv-on-file ENOTSOCK",
        "shutdown-bad-fd EBADF",
        // A rootfs file read by the worker itself, its offset seen by lseek; dup shares it.
        "host-read root: 5 x:0: ot: root offset 5",
        "host-dup x: 0: offset 9",
        "host-after-close 0: offset 11",
        "raise-ignored ok",
        ""
      ])
    }))

  it.scopedLive("poll_oneoff waits for a host pipe as stdin: a clock fires first while it is empty, then the host's bytes", () =>
    Effect.gen(function*() {
      const loader = yield* makeSandbox
      const bundle = yield* makeBundle({ args: ["poll_stdin"] })
      const dir = yield* tempDir
      const fifo = Path.join(dir, "stdin")
      execFileSync("mkfifo", [fifo])
      // Read-write: opening a FIFO so never blocks, and the test writes through the same fd.
      const stdin = yield* Effect.acquireRelease(Effect.sync(() => Fs.openSync(fifo, "r+")), (fd) => Effect.sync(() => Fs.closeSync(fd)))
      const out = yield* makeOutput
      yield* loader.createSubcontainer("poller")
      yield* loader.startSubcontainer({ containerId: "poller", bundle, stdio: { stdin, stdout: out.fd, stderr: out.fd } })
      yield* waitUntil(Effect.sync(() => out.read().includes("first")), "the first poll")
      Fs.writeSync(stdin, "late data\n")
      assert.deepStrictEqual(yield* loader.wait("poller"), exited(0), out.read())
      assert.deepStrictEqual(out.read().split("\n"), ["first 1 userdata 2", "then 1 userdata 1", "read 10 late data", ""])
    }))
})
