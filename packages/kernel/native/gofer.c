/*
 * The gofer's core: every host file operation of a mounted host tree, made relative to a
 * directory descriptor, never by a host path name. Node has no openat, so this addon does it.
 *
 * A tree is a descriptor opened once, when the tree is mounted (openRoot). Every operation
 * names a directory of the tree by its path below that descriptor ("" for the tree's root,
 * "a/b" otherwise) together with the device and inode number the sentry looked it up as, and
 * at most one entry of it by name. The directory is opened beneath the tree's descriptor with
 * no host symlink followed anywhere (openat2 with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, or
 * openat with O_NOFOLLOW one component at a time where the kernel lacks openat2), checked to
 * still be the directory the sentry looked up, and the operation is then made on the entry
 * relative to it (fstatat, openat, mkdirat, mknodat, unlinkat, renameat, linkat, symlinkat, readlinkat,
 * utimensat), never following a symlink in the entry either.
 *
 * So whatever a guest renames or swaps through another mount of the same host tree, or another
 * sandbox through its own, no operation can reach a file outside the tree: a path is only ever
 * walked downwards from the tree's descriptor, and a symlink anywhere on it is a failure. What
 * changed under a directory the sentry holds is ENOENT, as when the directory was removed.
 *
 * Besides, the few calls on descriptors the sandbox already holds that Node lacks (or makes
 * slowly: positional reads and writes, for a guest's worker): an append
 * that is one O_APPEND write, a non-blocking description of the sandbox's own of a pipe or
 * terminal it was given as stdio, a send or receive on a socket it was given that does not wait
 * (the socket's description is shared, so its O_NONBLOCK flag is not ours to set), whether a
 * read would wait (poll), and raising its RLIMIT_NOFILE.
 *
 * Conventions: functions return a result or -errno (a number), never throw; every descriptor
 * this addon makes is close-on-exec; names are single components ("" for the directory itself
 * where a function allows it), and a path with "", "." or ".." components is EINVAL.
 *
 *   openRoot(path)                                  -> fd        a tree's descriptor (O_PATH)
 *   close(fd)                                       -> 0
 *   stat(root, dir, dev, ino, name, out)            -> 0         lstat of name ("" the dir) into out
 *   fstat(fd, out)                                  -> 0
 *   open(root, dir, dev, ino, name, flags, mode, out) -> fd      a regular file or directory; its stat in out
 *   reopen(fd, flags, out)                          -> fd        a tree whose root is a file: the file, opened
 *   readdir(root, dir, dev, ino)                    -> [names, inos, types]
 *   readlink(root, dir, dev, ino, name)             -> string
 *   mkdir(root, dir, dev, ino, name, mode)          -> 0
 *   mksock(root, dir, dev, ino, name, mode, out)    -> 0         a socket file (mknodat S_IFSOCK, no device); its stat in out
 *   unlink(root, dir, dev, ino, name, isDir)        -> 0
 *   symlink(target, root, dir, dev, ino, name)      -> 0
 *   rename(root, dir, dev, ino, name, root2, dir2, dev2, ino2, name2) -> 0
 *   link(root, dir, dev, ino, name, fileIno, root2, dir2, dev2, ino2, name2) -> 0
 *   utimens(root, dir, dev, ino, name, atime, mtime) -> 0        nanoseconds; -1n leaves one as it is
 *   futimens(fd, atime, mtime)                      -> 0
 *   fsync(fd, dataOnly)                             -> 0
 *   pread(fd, bytes, at, length, position)          -> n         pread into bytes[at, at + length), checked against bytes
 *   pwrite(fd, bytes, at, length, position)         -> n         pwrite of bytes[at, at + length), checked against bytes
 *   appendWrite(fd, bytes, out)                     -> n         one write at the end of the file, as O_APPEND;
 *                                                                  the descriptor's offset after it in out[0]
 *   reopenStream(fd)                                -> [fd, access]  the same pipe or terminal, a description of our own
 *   sendNow(fd, bytes)                              -> n         a socket send that does not wait (-EAGAIN), no SIGPIPE
 *   receiveNow(fd, bytes)                           -> n         a socket receive that does not wait (-EAGAIN)
 *   readable(fd)                                    -> 0 or 1    whether a read would not wait: data, end of file or an error
 *   raiseFdLimit()                                  -> n         raises RLIMIT_NOFILE's soft limit to the hard one; returns the soft limit then
 *   useOpenat2(enabled)                             -> whether it was in use   (tests: the walk without it)
 *   listenDonations(path)                           -> fd        a non-blocking listening Unix socket at path, 0600
 *   takeDonation(listenFd)                          -> [payload, fds] | -EAGAIN   one queued donation, never waiting
 *   donate(path, payload, fds)                      -> 0         fds (at most DONATION_FDS) sent to the socket at path
 *
 * Donations carry descriptors to the sandbox from the CLI that creates a container in it (its
 * root's and bind mounts' trees, opened where the sandbox may not open paths): the donor
 * connects and sends one message, payload and SCM_RIGHTS together, before it asks the sandbox
 * by its control socket to take it; so the sandbox finds the message queued and never waits
 * for one. Only a peer of the sandbox's own user (or root) is heard; a connection that carries
 * nothing, or more descriptors than one message may, is closed with whatever it carried.
 *
 * stat's `out` is a BigInt64Array of 8: dev, ino, mode (st_mode, type included), nlink, size,
 * atime, mtime, ctime (nanoseconds).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <node_api.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define PATH_BYTES 4097
#define NAME_BYTES 1024
/* Descriptors in one donation: Linux's own limit on one SCM_RIGHTS message (SCM_MAX_FD) is 253. */
#define DONATION_FDS 253
#define DONATION_PAYLOAD 1024
/* Donations queued before the sandbox takes them, at most (a longer queue is EAGAIN to its donors). */
#define DONATION_QUEUE 128

/* Whether openat2 is known to be missing (ENOSYS, or refused by a seccomp filter). */
static int no_openat2 = 0;

/* ---- arguments and results ---------------------------------------------------------------- */

static napi_value number(napi_env env, int64_t value) {
  napi_value v;
  napi_create_int64(env, value, &v);
  return v;
}

static napi_value errno_result(napi_env env, int err) {
  return number(env, -(int64_t)err);
}

static int arg_int(napi_env env, napi_value value, int *out) {
  return napi_get_value_int32(env, value, out) == napi_ok ? 0 : -1;
}

static int arg_u64(napi_env env, napi_value value, uint64_t *out) {
  bool lossless;
  return napi_get_value_bigint_uint64(env, value, out, &lossless) == napi_ok ? 0 : -1;
}

static int arg_i64(napi_env env, napi_value value, int64_t *out) {
  bool lossless;
  return napi_get_value_bigint_int64(env, value, out, &lossless) == napi_ok ? 0 : -1;
}

static int arg_string(napi_env env, napi_value value, char *buf, size_t size) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, value, buf, size, &len) != napi_ok || len >= size - 1) return -1;
  /* A NUL inside would cut the name short: refuse it rather than act on another name. */
  return strlen(buf) == len ? 0 : -1;
}

static int arg_out(napi_env env, napi_value value, int64_t **out) {
  napi_typedarray_type type;
  size_t length;
  void *data;
  if (napi_get_typedarray_info(env, value, &type, &length, &data, NULL, NULL) != napi_ok) return -1;
  if (type != napi_bigint64_array || length < 8) return -1;
  *out = data;
  return 0;
}

static void fill_stat(const struct stat *st, int64_t *out) {
  out[0] = (int64_t)st->st_dev;
  out[1] = (int64_t)st->st_ino;
  out[2] = (int64_t)st->st_mode;
  out[3] = (int64_t)st->st_nlink;
  out[4] = (int64_t)st->st_size;
  out[5] = (int64_t)st->st_atim.tv_sec * 1000000000 + st->st_atim.tv_nsec;
  out[6] = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
  out[7] = (int64_t)st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec;
}

/* A single path component: not empty, not "." or "..", no "/". */
static int valid_name(const char *name) {
  return name[0] != '\0' && strcmp(name, ".") != 0 && strcmp(name, "..") != 0 && strchr(name, '/') == NULL;
}

/* ---- directories beneath a tree ------------------------------------------------------------- */

static int path_is_valid(const char *path) {
  const char *start = path;
  for (const char *p = path;; p++) {
    if (*p == '/' || *p == '\0') {
      size_t len = (size_t)(p - start);
      if (len == 0 || (len == 1 && start[0] == '.') || (len == 2 && start[0] == '.' && start[1] == '.')) return 0;
      if (*p == '\0') return 1;
      start = p + 1;
    }
  }
}

/* The directory at `path` (valid, not empty) below `root`, one component at a time, following no symlink. */
static int walk_beneath(int root, const char *path) {
  char copy[PATH_BYTES];
  strcpy(copy, path);
  int current = root;
  char *save = NULL;
  for (char *name = strtok_r(copy, "/", &save); name != NULL; name = strtok_r(NULL, "/", &save)) {
    int next = openat(current, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int err = errno;
    if (current != root) close(current);
    if (next < 0) return -err;
    current = next;
  }
  return current;
}

/* The directory at `path` (valid, not empty) below `root`: openat2 confined beneath it, else the walk. */
static int open_beneath(int root, const char *path) {
  if (!no_openat2) {
    struct open_how how = {
      .flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
      .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    int fd = -1;
    /* EAGAIN: a rename raced the lookup somewhere on the host, and the kernel asks for a retry. */
    for (int tries = 0; tries < 4 && fd < 0; tries++) {
      fd = (int)syscall(SYS_openat2, root, path, &how, sizeof how);
      if (fd < 0 && errno != EAGAIN) break;
    }
    if (fd >= 0) return fd;
    /* ENOSYS: an older kernel; EPERM: a seccomp filter that does not know openat2. */
    if (errno == ENOSYS || errno == EPERM) no_openat2 = 1;
    else if (errno != EAGAIN) return -errno;
  }
  return walk_beneath(root, path);
}

/*
 * The directory `path` below `root` (O_PATH), checked to be the one looked up as (dev, ino):
 * `root` itself for "" (a descriptor the tree holds, which always names the same directory), else
 * a new descriptor. Returns it, or -errno; the caller gives it back with put_dir. A directory
 * that is no longer there, or is something else now (another directory, or a symlink: ELOOP,
 * ENOTDIR), is ENOENT.
 */
static int open_dir(int root, const char *path, uint64_t dev, uint64_t ino) {
  if (path[0] == '\0') return root;
  if (!path_is_valid(path)) return -EINVAL;
  int fd = open_beneath(root, path);
  if (fd == -ELOOP || fd == -ENOTDIR) return -ENOENT;
  if (fd < 0) return fd;
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    return -err;
  }
  if (!S_ISDIR(st.st_mode) || (uint64_t)st.st_dev != dev || (uint64_t)st.st_ino != ino) {
    close(fd);
    return -ENOENT;
  }
  return fd;
}

/* Gives back a directory from open_dir: closed unless it is the tree's own descriptor. */
static void put_dir(int dir, int root) {
  if (dir != root) close(dir);
}

/*
 * The arguments (root, dir, dev, ino) at argv[first..first+3]: the checked directory, or -errno;
 * `root` is set to the tree's descriptor, for put_dir. (A new descriptor cannot equal `root`,
 * which stays open meanwhile.)
 */
static int dir_arg(napi_env env, napi_value *argv, int first, int *root) {
  char dir[PATH_BYTES];
  uint64_t dev, ino;
  *root = -1;
  if (arg_int(env, argv[first], root) || arg_string(env, argv[first + 1], dir, sizeof dir) ||
      arg_u64(env, argv[first + 2], &dev) || arg_u64(env, argv[first + 3], &ino))
    return -EINVAL;
  if (*root < 0) return -EBADF;
  return open_dir(*root, dir, dev, ino);
}

/* The entry name at argv[i]: a valid component, or "" where `empty_ok`. */
static int name_arg(napi_env env, napi_value value, char *name, int empty_ok) {
  if (arg_string(env, value, name, NAME_BYTES)) return -EINVAL;
  if (name[0] == '\0') return empty_ok ? 0 : -EINVAL;
  return valid_name(name) ? 0 : -EINVAL;
}

#define ARGS(n)                                                                    \
  size_t argc = n;                                                                 \
  napi_value argv[n];                                                              \
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < n) \
    return errno_result(env, EINVAL);

/* ---- operations ------------------------------------------------------------------------------- */

static napi_value open_root(napi_env env, napi_callback_info info) {
  ARGS(1)
  char path[PATH_BYTES];
  if (arg_string(env, argv[0], path, sizeof path)) return errno_result(env, EINVAL);
  /* The tree's own path is the operator's choice: symlinks in it are followed, once, here. */
  int fd = open(path, O_PATH | O_CLOEXEC);
  return fd < 0 ? errno_result(env, errno) : number(env, fd);
}

static napi_value close_fd(napi_env env, napi_callback_info info) {
  ARGS(1)
  int fd;
  if (arg_int(env, argv[0], &fd)) return errno_result(env, EINVAL);
  return number(env, close(fd) == 0 ? 0 : -errno);
}

static napi_value stat_at(napi_env env, napi_callback_info info) {
  ARGS(6)
  char name[NAME_BYTES];
  int64_t *out;
  int err = name_arg(env, argv[4], name, 1);
  if (err != 0 || arg_out(env, argv[5], &out)) return errno_result(env, EINVAL);
  int root;
  int dir = dir_arg(env, argv, 0, &root);
  if (dir < 0) return number(env, dir);
  struct stat st;
  int rc = fstatat(dir, name, &st, name[0] == '\0' ? AT_EMPTY_PATH : AT_SYMLINK_NOFOLLOW);
  err = errno;
  put_dir(dir, root);
  if (rc != 0) return errno_result(env, err);
  fill_stat(&st, out);
  return number(env, 0);
}

static napi_value fstat_fd(napi_env env, napi_callback_info info) {
  ARGS(2)
  int fd;
  int64_t *out;
  if (arg_int(env, argv[0], &fd) || arg_out(env, argv[1], &out)) return errno_result(env, EINVAL);
  struct stat st;
  if (fstat(fd, &st) != 0) return errno_result(env, errno);
  fill_stat(&st, out);
  return number(env, 0);
}

/*
 * pread or pwrite of `length` bytes of the Uint8Array `bytes` from index `at`, at file offset
 * `position`: Node's readSync and writeSync do the same with ~1 µs more of argument handling,
 * which a guest's worker pays on every page of a database. The range is checked against the
 * array here, whatever the caller checked.
 */
static napi_value positional(napi_env env, napi_callback_info info, int writing) {
  ARGS(5)
  int fd;
  int64_t at, length, position;
  napi_typedarray_type type;
  size_t size;
  void *data;
  if (arg_int(env, argv[0], &fd) || napi_get_typedarray_info(env, argv[1], &type, &size, &data, NULL, NULL) != napi_ok ||
      type != napi_uint8_array || napi_get_value_int64(env, argv[2], &at) != napi_ok ||
      napi_get_value_int64(env, argv[3], &length) != napi_ok || napi_get_value_int64(env, argv[4], &position) != napi_ok)
    return errno_result(env, EINVAL);
  if (at < 0 || length < 0 || (uint64_t)at > size || (uint64_t)length > size - (uint64_t)at) return errno_result(env, EFAULT);
  if (position < 0) return errno_result(env, EINVAL);
  ssize_t n = writing ? pwrite(fd, (char *)data + at, (size_t)length, (off_t)position)
                      : pread(fd, (char *)data + at, (size_t)length, (off_t)position);
  return n < 0 ? errno_result(env, errno) : number(env, n);
}

static napi_value pread_fd(napi_env env, napi_callback_info info) { return positional(env, info, 0); }
static napi_value pwrite_fd(napi_env env, napi_callback_info info) { return positional(env, info, 1); }

/*
 * What an open may give the sentry: a regular file, or a directory when O_DIRECTORY asked for
 * one. Always opened O_NONBLOCK, so that a FIFO swapped in for a file cannot block the sentry
 * before it is refused; cleared again on what is kept (callers never pass O_NONBLOCK in `flags`:
 * their masks drop it).
 */
static int finish_open(int fd, int flags, int64_t *out) {
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    return -err;
  }
  int wanted = (flags & O_DIRECTORY) ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode);
  if (!wanted) {
    close(fd);
    return (flags & O_DIRECTORY) ? -ENOTDIR : S_ISDIR(st.st_mode) ? -EISDIR : -EACCES;
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  fill_stat(&st, out);
  return fd;
}

/* Flags a caller may ask for; the rest (O_NOFOLLOW, O_CLOEXEC, O_NOCTTY, O_NONBLOCK) are always set. */
#define OPEN_FLAGS (O_ACCMODE | O_APPEND | O_CREAT | O_EXCL | O_TRUNC | O_DIRECTORY)

static napi_value open_at(napi_env env, napi_callback_info info) {
  ARGS(8)
  char name[NAME_BYTES];
  int flags, mode;
  int64_t *out;
  int err = name_arg(env, argv[4], name, 1);
  if (err != 0 || arg_int(env, argv[5], &flags) || arg_int(env, argv[6], &mode) || arg_out(env, argv[7], &out))
    return errno_result(env, EINVAL);
  flags &= OPEN_FLAGS;
  int root;
  int dir = dir_arg(env, argv, 0, &root);
  if (dir < 0) return number(env, dir);
  /* "" is the directory itself, which an O_PATH descriptor cannot read: reopen it through ".". */
  const char *entry = name[0] == '\0' ? "." : name;
  if (name[0] == '\0' && (flags & O_CREAT)) {
    put_dir(dir, root);
    return errno_result(env, EINVAL);
  }
  int fd = openat(dir, entry, flags | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, (mode_t)mode);
  err = errno;
  put_dir(dir, root);
  if (fd < 0) return errno_result(env, err);
  return number(env, finish_open(fd, flags, out));
}

static napi_value reopen_fd(napi_env env, napi_callback_info info) {
  ARGS(3)
  int fd, flags;
  int64_t *out;
  if (arg_int(env, argv[0], &fd) || arg_int(env, argv[1], &flags) || arg_out(env, argv[2], &out)) return errno_result(env, EINVAL);
  flags &= O_ACCMODE | O_APPEND;
  /* An O_PATH descriptor is reopened through its /proc/self/fd link, the one way Linux offers. */
  char link[64];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  int opened = open(link, flags | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (opened < 0) return errno_result(env, errno);
  struct stat before, after;
  if (fstat(fd, &before) != 0 || fstat(opened, &after) != 0 || before.st_dev != after.st_dev || before.st_ino != after.st_ino) {
    close(opened);
    return errno_result(env, ENOENT);
  }
  return number(env, finish_open(opened, flags, out));
}

static napi_value readdir_at(napi_env env, napi_callback_info info) {
  ARGS(4)
  int root;
  int dir = dir_arg(env, argv, 0, &root);
  if (dir < 0) return number(env, dir);
  int fd = openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int err = errno;
  put_dir(dir, root);
  if (fd < 0) return errno_result(env, err);
  DIR *d = fdopendir(fd);
  if (d == NULL) {
    err = errno;
    close(fd);
    return errno_result(env, err);
  }
  napi_value names, inos, types, result;
  napi_create_array(env, &names);
  napi_create_array(env, &inos);
  napi_create_array(env, &types);
  uint32_t count = 0;
  for (;;) {
    errno = 0;
    struct dirent *entry = readdir(d);
    if (entry == NULL) break;
    if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
    /* The inode number and type lstat gives (a directory's d_ino can differ on overlayfs). */
    struct stat st;
    if (fstatat(dirfd(d), entry->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue; /* removed since: not listed */
    napi_value name, ino, mode;
    napi_create_string_utf8(env, entry->d_name, NAPI_AUTO_LENGTH, &name);
    napi_create_bigint_uint64(env, (uint64_t)st.st_ino, &ino);
    napi_create_uint32(env, st.st_mode, &mode);
    napi_set_element(env, names, count, name);
    napi_set_element(env, inos, count, ino);
    napi_set_element(env, types, count, mode);
    count++;
  }
  err = errno;
  closedir(d);
  if (err != 0) return errno_result(env, err);
  napi_create_array_with_length(env, 3, &result);
  napi_set_element(env, result, 0, names);
  napi_set_element(env, result, 1, inos);
  napi_set_element(env, result, 2, types);
  return result;
}

static napi_value readlink_at(napi_env env, napi_callback_info info) {
  ARGS(5)
  char name[NAME_BYTES];
  if (name_arg(env, argv[4], name, 0)) return errno_result(env, EINVAL);
  int root;
  int dir = dir_arg(env, argv, 0, &root);
  if (dir < 0) return number(env, dir);
  char target[PATH_BYTES];
  ssize_t n = readlinkat(dir, name, target, sizeof target);
  int err = errno;
  put_dir(dir, root);
  if (n < 0) return errno_result(env, err);
  if ((size_t)n >= sizeof target) return errno_result(env, ENAMETOOLONG);
  napi_value result;
  napi_create_string_utf8(env, target, (size_t)n, &result);
  return result;
}

static napi_value mkdir_at(napi_env env, napi_callback_info info) {
  ARGS(6)
  char name[NAME_BYTES];
  int mode;
  if (name_arg(env, argv[4], name, 0) || arg_int(env, argv[5], &mode)) return errno_result(env, EINVAL);
  int root;
  int dir = dir_arg(env, argv, 0, &root);
  if (dir < 0) return number(env, dir);
  int rc = mkdirat(dir, name, (mode_t)mode);
  int err = errno;
  put_dir(dir, root);
  return number(env, rc == 0 ? 0 : -err);
}

/* A Unix socket's file: a socket inode and nothing else (never a device or a fifo). */
static napi_value mksock_at(napi_env env, napi_callback_info info) {
  ARGS(7)
  char name[NAME_BYTES];
  int mode;
  int64_t *out;
  if (name_arg(env, argv[4], name, 0) || arg_int(env, argv[5], &mode) || arg_out(env, argv[6], &out)) return errno_result(env, EINVAL);
  int root;
  int dir = dir_arg(env, argv, 0, &root);
  if (dir < 0) return number(env, dir);
  struct stat st;
  int rc = mknodat(dir, name, S_IFSOCK | ((mode_t)mode & 07777), 0);
  if (rc == 0) rc = fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW);
  int err = errno;
  put_dir(dir, root);
  if (rc != 0) return errno_result(env, err);
  fill_stat(&st, out);
  return number(env, 0);
}

static napi_value unlink_at(napi_env env, napi_callback_info info) {
  ARGS(6)
  char name[NAME_BYTES];
  bool is_dir;
  if (name_arg(env, argv[4], name, 0) || napi_get_value_bool(env, argv[5], &is_dir) != napi_ok) return errno_result(env, EINVAL);
  int root;
  int dir = dir_arg(env, argv, 0, &root);
  if (dir < 0) return number(env, dir);
  int rc = unlinkat(dir, name, is_dir ? AT_REMOVEDIR : 0);
  int err = errno;
  put_dir(dir, root);
  return number(env, rc == 0 ? 0 : -err);
}

static napi_value symlink_at(napi_env env, napi_callback_info info) {
  ARGS(6)
  char target[PATH_BYTES], name[NAME_BYTES];
  if (arg_string(env, argv[0], target, sizeof target) || name_arg(env, argv[5], name, 0)) return errno_result(env, EINVAL);
  int root;
  int dir = dir_arg(env, argv, 1, &root);
  if (dir < 0) return number(env, dir);
  /* The target is stored verbatim: the gofer never follows it, the sentry resolves it inside the container. */
  int rc = symlinkat(target, dir, name);
  int err = errno;
  put_dir(dir, root);
  return number(env, rc == 0 ? 0 : -err);
}

static napi_value rename_at(napi_env env, napi_callback_info info) {
  ARGS(10)
  char from[NAME_BYTES], to[NAME_BYTES];
  if (name_arg(env, argv[4], from, 0) || name_arg(env, argv[9], to, 0)) return errno_result(env, EINVAL);
  int root;
  int dir = dir_arg(env, argv, 0, &root);
  if (dir < 0) return number(env, dir);
  int root2;
  int dir2 = dir_arg(env, argv, 5, &root2);
  if (dir2 < 0) {
    put_dir(dir, root);
    return number(env, dir2);
  }
  int rc = renameat(dir, from, dir2, to);
  int err = errno;
  put_dir(dir, root);
  put_dir(dir2, root2);
  return number(env, rc == 0 ? 0 : -err);
}

static napi_value link_at(napi_env env, napi_callback_info info) {
  ARGS(11)
  char from[NAME_BYTES], to[NAME_BYTES];
  uint64_t file_ino;
  if (name_arg(env, argv[4], from, 0) || arg_u64(env, argv[5], &file_ino) || name_arg(env, argv[10], to, 0))
    return errno_result(env, EINVAL);
  int root;
  int dir = dir_arg(env, argv, 0, &root);
  if (dir < 0) return number(env, dir);
  int root2;
  int dir2 = dir_arg(env, argv, 6, &root2);
  if (dir2 < 0) {
    put_dir(dir, root);
    return number(env, dir2);
  }
  /* Only the file the sentry looked up gets the new name (linkat never follows a symlink it links). */
  struct stat st;
  int rc = fstatat(dir, from, &st, AT_SYMLINK_NOFOLLOW);
  if (rc == 0 && (uint64_t)st.st_ino != file_ino) rc = -1, errno = ENOENT;
  if (rc == 0) rc = linkat(dir, from, dir2, to, 0);
  int err = errno;
  put_dir(dir, root);
  put_dir(dir2, root2);
  return number(env, rc == 0 ? 0 : -err);
}

static void to_timespec(int64_t ns, struct timespec *ts) {
  if (ns < 0) {
    ts->tv_sec = 0;
    ts->tv_nsec = UTIME_OMIT;
  } else {
    ts->tv_sec = ns / 1000000000;
    ts->tv_nsec = ns % 1000000000;
  }
}

static napi_value utimens_at(napi_env env, napi_callback_info info) {
  ARGS(7)
  char name[NAME_BYTES];
  int64_t atime, mtime;
  if (name_arg(env, argv[4], name, 1) || arg_i64(env, argv[5], &atime) || arg_i64(env, argv[6], &mtime))
    return errno_result(env, EINVAL);
  int root;
  int dir = dir_arg(env, argv, 0, &root);
  if (dir < 0) return number(env, dir);
  struct timespec times[2];
  to_timespec(atime, &times[0]);
  to_timespec(mtime, &times[1]);
  /* A symlink's own times, never its target's; "" is the directory itself. */
  int rc = name[0] == '\0' ? futimens(dir, times) : utimensat(dir, name, times, AT_SYMLINK_NOFOLLOW);
  int err = errno;
  if (rc != 0 && name[0] == '\0' && err == EBADF) {
    /* An O_PATH descriptor takes no futimens: the directory, reopened. */
    int fd = openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    rc = fd < 0 ? -1 : futimens(fd, times);
    err = errno;
    if (fd >= 0) close(fd);
  }
  put_dir(dir, root);
  return number(env, rc == 0 ? 0 : -err);
}

static napi_value futimens_fd(napi_env env, napi_callback_info info) {
  ARGS(3)
  int fd;
  int64_t atime, mtime;
  if (arg_int(env, argv[0], &fd) || arg_i64(env, argv[1], &atime) || arg_i64(env, argv[2], &mtime)) return errno_result(env, EINVAL);
  struct timespec times[2];
  to_timespec(atime, &times[0]);
  to_timespec(mtime, &times[1]);
  return number(env, futimens(fd, times) == 0 ? 0 : -errno);
}

static napi_value fsync_fd(napi_env env, napi_callback_info info) {
  ARGS(2)
  int fd;
  bool data_only;
  if (arg_int(env, argv[0], &fd) || napi_get_value_bool(env, argv[1], &data_only) != napi_ok) return errno_result(env, EINVAL);
  return number(env, (data_only ? fdatasync(fd) : fsync(fd)) == 0 ? 0 : -errno);
}

/*
 * A write at the end of the file, atomic against every other writer as O_APPEND makes it (the
 * host's processes may append to the same file): pwritev2 with RWF_APPEND, or where the kernel
 * lacks it (before 4.16), the descriptor's own O_APPEND set around the write. Descriptors the
 * gofer opens are its own, so their flags are no one else's.
 */
static napi_value append_write(napi_env env, napi_callback_info info) {
  ARGS(3)
  int fd;
  napi_typedarray_type type;
  size_t length;
  void *data;
  int64_t *out;
  if (arg_int(env, argv[0], &fd) || napi_get_typedarray_info(env, argv[1], &type, &length, &data, NULL, NULL) != napi_ok || type != napi_uint8_array ||
      arg_out(env, argv[2], &out))
    return errno_result(env, EINVAL);
  struct iovec iov = {data, length};
  /* Offset -1: the descriptor's own, which the write moves to its end, as write(2) on O_APPEND. */
  ssize_t n = pwritev2(fd, &iov, 1, -1, RWF_APPEND);
  if (n < 0 && (errno == EOPNOTSUPP || errno == ENOSYS || errno == EINVAL)) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_APPEND) != 0) return errno_result(env, errno);
    n = write(fd, data, length);
    int err = errno;
    fcntl(fd, F_SETFL, flags);
    errno = err;
  }
  if (n < 0) return errno_result(env, errno);
  off_t offset = lseek(fd, 0, SEEK_CUR);
  if (offset < 0) return errno_result(env, errno);
  out[0] = offset;
  return number(env, n);
}

/*
 * A description of the sandbox's own of the pipe or terminal `fd` refers to (its stdio, shared
 * with other host processes), opened through /proc/self/fd with `fd`'s access mode — a pipe must
 * get no end it did not have, or an extra write end would keep its readers from ever seeing end
 * of file — non-blocking (so the sentry and the guest's worker never wait in a host call, and a
 * kill always lands), and O_NOCTTY (a terminal must not become the sandbox's controlling one).
 * Only FIFOs and character devices; checked to be the same file.
 */
static napi_value reopen_stream(napi_env env, napi_callback_info info) {
  ARGS(1)
  int fd;
  if (arg_int(env, argv[0], &fd)) return errno_result(env, EINVAL);
  struct stat before;
  if (fstat(fd, &before) != 0) return errno_result(env, errno);
  if (!S_ISFIFO(before.st_mode) && !S_ISCHR(before.st_mode)) return errno_result(env, EINVAL);
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0) return errno_result(env, errno);
  char link[64];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  int opened = open(link, (flags & O_ACCMODE) | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (opened < 0) return errno_result(env, errno);
  struct stat after;
  if (fstat(opened, &after) != 0 || after.st_dev != before.st_dev || after.st_ino != before.st_ino || after.st_rdev != before.st_rdev) {
    close(opened);
    return errno_result(env, ENOENT);
  }
  napi_value result;
  napi_create_array_with_length(env, 2, &result);
  napi_set_element(env, result, 0, number(env, opened));
  napi_set_element(env, result, 1, number(env, flags & O_ACCMODE));
  return result;
}

static int arg_bytes(napi_env env, napi_value value, void **data, size_t *length) {
  napi_typedarray_type type;
  return napi_get_typedarray_info(env, value, &type, length, data, NULL, NULL) == napi_ok && type == napi_uint8_array ? 0 : -1;
}

static napi_value send_now(napi_env env, napi_callback_info info) {
  ARGS(2)
  int fd;
  void *data;
  size_t length;
  if (arg_int(env, argv[0], &fd) || arg_bytes(env, argv[1], &data, &length)) return errno_result(env, EINVAL);
  /* MSG_NOSIGNAL: a peer that has gone is EPIPE here; the guest gets its SIGPIPE from the sentry. */
  ssize_t n = send(fd, data, length, MSG_DONTWAIT | MSG_NOSIGNAL);
  return n < 0 ? errno_result(env, errno) : number(env, n);
}

static napi_value receive_now(napi_env env, napi_callback_info info) {
  ARGS(2)
  int fd;
  void *data;
  size_t length;
  if (arg_int(env, argv[0], &fd) || arg_bytes(env, argv[1], &data, &length)) return errno_result(env, EINVAL);
  ssize_t n = recv(fd, data, length, MSG_DONTWAIT);
  return n < 0 ? errno_result(env, errno) : number(env, n);
}

static napi_value readable(napi_env env, napi_callback_info info) {
  ARGS(1)
  int fd;
  if (arg_int(env, argv[0], &fd)) return errno_result(env, EINVAL);
  struct pollfd one = {fd, POLLIN, 0};
  int ready = poll(&one, 1, 0);
  if (ready < 0) return errno_result(env, errno);
  return number(env, ready > 0 && (one.revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL)) != 0);
}

static napi_value raise_fd_limit(napi_env env, napi_callback_info info) {
  (void)info;
  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return errno_result(env, errno);
  /* As runsc (and Go programs) do: the soft limit is a default for programs that select(2). */
  if (limit.rlim_cur < limit.rlim_max) {
    struct rlimit raised = {limit.rlim_max, limit.rlim_max};
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  return number(env, limit.rlim_cur > INT32_MAX ? INT32_MAX : (int64_t)limit.rlim_cur);
}

/*
 * CPU time (user + system, in ns) of the thread `tid` of this process, from its thread CPU
 * clock: what the kernel reports for a guest's worker thread. Linux names a thread's clock
 * (~tid << 3) | CPUCLOCK_PERTHREAD_MASK | CPUCLOCK_SCHED, as glibc's pthread_getcpuclockid does,
 * and refuses a thread of another process (EINVAL). Unlike /proc, it needs no file access, so it
 * works under the permission model, and it counts in ns rather than 10 ms ticks.
 */
static napi_value thread_cpu_time(napi_env env, napi_callback_info info) {
  ARGS(1)
  int tid;
  if (arg_int(env, argv[0], &tid) != 0 || tid <= 0) return errno_result(env, EINVAL);
  struct timespec ts;
  clockid_t clock = (clockid_t)((~(unsigned)tid) << 3) | 4 | 2;
  if (clock_gettime(clock, &ts) != 0) return errno_result(env, errno);
  napi_value v;
  napi_create_bigint_int64(env, (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec, &v);
  return v;
}

/* The calling thread's Linux tid (a guest worker's, which a confined sandbox cannot read in /proc). */
static napi_value thread_id(napi_env env, napi_callback_info info) {
  (void)info;
  return number(env, (int64_t)syscall(SYS_gettid));
}

static napi_value use_openat2(napi_env env, napi_callback_info info) {
  ARGS(1)
  bool enabled;
  if (napi_get_value_bool(env, argv[0], &enabled) != napi_ok) return errno_result(env, EINVAL);
  napi_value was;
  napi_get_boolean(env, !no_openat2, &was);
  no_openat2 = !enabled;
  return was;
}

/* ---- donations ---------------------------------------------------------------------------------- */

static int unix_address(napi_env env, napi_value value, struct sockaddr_un *addr) {
  memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  return arg_string(env, value, addr->sun_path, sizeof addr->sun_path);
}

static napi_value listen_donations(napi_env env, napi_callback_info info) {
  ARGS(1)
  struct sockaddr_un addr;
  if (unix_address(env, argv[0], &addr)) return errno_result(env, ENAMETOOLONG);
  int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (sock < 0) return errno_result(env, errno);
  /* Its owner's alone; the state root it is made in is 0700, so nobody else can reach it meanwhile. */
  if (bind(sock, (struct sockaddr *)&addr, sizeof addr) != 0 || chmod(addr.sun_path, 0600) != 0 || listen(sock, DONATION_QUEUE) != 0) {
    int err = errno;
    close(sock);
    return errno_result(env, err);
  }
  return number(env, sock);
}

static void close_all(const int *fds, size_t count) {
  for (size_t i = 0; i < count; i++) close(fds[i]);
}

/* The descriptors a message carried (every SCM_RIGHTS header of it), into fds; their count. */
static size_t received_fds(struct msghdr *msg, int *fds) {
  size_t count = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c != NULL; c = CMSG_NXTHDR(msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < n && count < DONATION_FDS; i++) memcpy(&fds[count++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
  }
  return count;
}

static napi_value take_donation(napi_env env, napi_callback_info info) {
  ARGS(1)
  int listener;
  if (arg_int(env, argv[0], &listener)) return errno_result(env, EINVAL);
  for (;;) {
    int conn = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (conn < 0) return errno_result(env, errno == EINTR ? EAGAIN : errno);
    struct ucred peer;
    socklen_t length = sizeof peer;
    if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &peer, &length) != 0 || (peer.uid != 0 && peer.uid != geteuid())) {
      close(conn);
      continue;
    }
    char payload[DONATION_PAYLOAD];
    struct iovec iov = {payload, sizeof payload - 1};
    union {
      char buf[CMSG_SPACE(sizeof(int) * DONATION_FDS)];
      struct cmsghdr align;
    } control;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf};
    ssize_t got;
    do got = recvmsg(conn, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    while (got < 0 && errno == EINTR);
    close(conn);
    if (got <= 0) continue; /* nothing was sent on it: not a donation */
    int fds[DONATION_FDS];
    size_t count = received_fds(&msg, fds);
    if ((msg.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) != 0) {
      close_all(fds, count);
      continue;
    }
    payload[got] = '\0';
    napi_value result, text, list;
    napi_create_array_with_length(env, 2, &result);
    napi_create_string_utf8(env, payload, (size_t)got, &text);
    napi_create_array_with_length(env, count, &list);
    for (size_t i = 0; i < count; i++) napi_set_element(env, list, (uint32_t)i, number(env, fds[i]));
    napi_set_element(env, result, 0, text);
    napi_set_element(env, result, 1, list);
    return result;
  }
}

static napi_value donate(napi_env env, napi_callback_info info) {
  ARGS(3)
  struct sockaddr_un addr;
  char payload[DONATION_PAYLOAD];
  uint32_t count;
  if (unix_address(env, argv[0], &addr)) return errno_result(env, ENAMETOOLONG);
  if (arg_string(env, argv[1], payload, sizeof payload) || payload[0] == '\0') return errno_result(env, EINVAL);
  if (napi_get_array_length(env, argv[2], &count) != napi_ok || count == 0 || count > DONATION_FDS) return errno_result(env, EINVAL);
  int fds[DONATION_FDS];
  for (uint32_t i = 0; i < count; i++) {
    napi_value element;
    if (napi_get_element(env, argv[2], i, &element) != napi_ok || arg_int(env, element, &fds[i])) return errno_result(env, EINVAL);
  }
  /* Non-blocking: a sandbox whose queue is full is EAGAIN here, never a wait. */
  int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (sock < 0) return errno_result(env, errno);
  if (connect(sock, (struct sockaddr *)&addr, sizeof addr) != 0) {
    int err = errno;
    close(sock);
    return errno_result(env, err);
  }
  struct iovec iov = {payload, strlen(payload)};
  union {
    char buf[CMSG_SPACE(sizeof(int) * DONATION_FDS)];
    struct cmsghdr align;
  } control;
  memset(&control, 0, sizeof control);
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = CMSG_SPACE(sizeof(int) * count)};
  struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(sizeof(int) * count);
  memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * count);
  ssize_t sent;
  do sent = sendmsg(sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
  while (sent < 0 && errno == EINTR);
  int err = errno;
  close(sock);
  if (sent < 0) return errno_result(env, err);
  /* One message: all of it or none (its bytes are far below a socket's buffer). */
  return number(env, (size_t)sent == iov.iov_len ? 0 : -EMSGSIZE);
}

/* ---- module ------------------------------------------------------------------------------------ */

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor functions[] = {
    {"openRoot", NULL, open_root, NULL, NULL, NULL, napi_enumerable, NULL},
    {"close", NULL, close_fd, NULL, NULL, NULL, napi_enumerable, NULL},
    {"stat", NULL, stat_at, NULL, NULL, NULL, napi_enumerable, NULL},
    {"fstat", NULL, fstat_fd, NULL, NULL, NULL, napi_enumerable, NULL},
    {"open", NULL, open_at, NULL, NULL, NULL, napi_enumerable, NULL},
    {"reopen", NULL, reopen_fd, NULL, NULL, NULL, napi_enumerable, NULL},
    {"readdir", NULL, readdir_at, NULL, NULL, NULL, napi_enumerable, NULL},
    {"readlink", NULL, readlink_at, NULL, NULL, NULL, napi_enumerable, NULL},
    {"mkdir", NULL, mkdir_at, NULL, NULL, NULL, napi_enumerable, NULL},
    {"mksock", NULL, mksock_at, NULL, NULL, NULL, napi_enumerable, NULL},
    {"unlink", NULL, unlink_at, NULL, NULL, NULL, napi_enumerable, NULL},
    {"symlink", NULL, symlink_at, NULL, NULL, NULL, napi_enumerable, NULL},
    {"rename", NULL, rename_at, NULL, NULL, NULL, napi_enumerable, NULL},
    {"link", NULL, link_at, NULL, NULL, NULL, napi_enumerable, NULL},
    {"utimens", NULL, utimens_at, NULL, NULL, NULL, napi_enumerable, NULL},
    {"futimens", NULL, futimens_fd, NULL, NULL, NULL, napi_enumerable, NULL},
    {"fsync", NULL, fsync_fd, NULL, NULL, NULL, napi_enumerable, NULL},
    {"pread", NULL, pread_fd, NULL, NULL, NULL, napi_enumerable, NULL},
    {"pwrite", NULL, pwrite_fd, NULL, NULL, NULL, napi_enumerable, NULL},
    {"appendWrite", NULL, append_write, NULL, NULL, NULL, napi_enumerable, NULL},
    {"reopenStream", NULL, reopen_stream, NULL, NULL, NULL, napi_enumerable, NULL},
    {"sendNow", NULL, send_now, NULL, NULL, NULL, napi_enumerable, NULL},
    {"receiveNow", NULL, receive_now, NULL, NULL, NULL, napi_enumerable, NULL},
    {"readable", NULL, readable, NULL, NULL, NULL, napi_enumerable, NULL},
    {"raiseFdLimit", NULL, raise_fd_limit, NULL, NULL, NULL, napi_enumerable, NULL},
    {"useOpenat2", NULL, use_openat2, NULL, NULL, NULL, napi_enumerable, NULL},
    {"threadCpuTime", NULL, thread_cpu_time, NULL, NULL, NULL, napi_enumerable, NULL},
    {"threadId", NULL, thread_id, NULL, NULL, NULL, napi_enumerable, NULL},
    {"listenDonations", NULL, listen_donations, NULL, NULL, NULL, napi_enumerable, NULL},
    {"takeDonation", NULL, take_donation, NULL, NULL, NULL, napi_enumerable, NULL},
    {"donate", NULL, donate, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof functions / sizeof functions[0], functions);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
