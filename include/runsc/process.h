/*
 * runsc/process.h — processes, pipes, process groups, sessions and terminals
 * for WebAssembly guests of the runsc sandbox (see docs/process-api.md).
 *
 * Header-only. Build with clang and wasi-libc:
 *
 *   clang --target=wasm32-wasi -I include prog.c -o prog.wasm
 *
 * Two kinds of declarations:
 *   - the raw imports, __runsc_<name>, one per function of the import modules
 *     "wasix_32v1" and "runsc_proc_v1". Each returns a WASI errno (0 = success)
 *     and uses the ABI's types and signal numbers as they are.
 *   - POSIX-like wrappers, runsc_<name>, that return -1 and set errno on
 *     failure, take Linux (= wasi-libc <signal.h>) signal numbers and report
 *     wait statuses encoded the Linux way.
 *
 * A wasm module only imports the functions it actually calls, so a guest that
 * includes this header but uses none of it imports nothing extra.
 */
#ifndef RUNSC_PROCESS_H
#define RUNSC_PROCESS_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#ifdef __cplusplus
extern "C" {
#endif

/* wasi-libc's <unistd.h> only declares it with _GNU_SOURCE. */
extern char **environ;

/* ------------------------------------------------------------------------ */
/* Constants                                                                 */
/* ------------------------------------------------------------------------ */

/* runsc_spawn's fds[i] values besides a caller's fd (>= 0). */
#define RUNSC_FD_CLOSED (-1) /* the child has no fd i */
#define RUNSC_FD_PIPE (-2)   /* a new pipe; the caller's end is written back */

/* runsc_spawn's pgid argument. */
#define RUNSC_PGID_CALLER (-1) /* the caller's process group */
#define RUNSC_PGID_NEW 0       /* a new group led by the child */

/* proc_spawn flags (runsc_spawn_ex's flags). */
#define RUNSC_SPAWN_SEARCH_PATH 1u   /* search PATH for a path without '/' */
#define RUNSC_SPAWN_RESET_SIGNALS 2u /* the child starts with every signal's
                                        default action (no inherited ignores) */

/* proc_join flags (join_flags) and runsc_waitpid options. */
#define RUNSC_JOIN_NON_BLOCKING 1u
#define RUNSC_JOIN_WAKE_STOPPED 2u
#define RUNSC_WNOHANG 1
#define RUNSC_WUNTRACED 2

/* join_status tags. */
#define RUNSC_JOIN_NOTHING 0
#define RUNSC_JOIN_EXIT_NORMAL 1
#define RUNSC_JOIN_EXIT_SIGNAL 2
#define RUNSC_JOIN_STOPPED 3

/* option_pid tags. */
#define RUNSC_OPTION_NONE 0
#define RUNSC_OPTION_SOME 1

/* Signals, Linux numbering (the numbers of wasi-libc's <signal.h>). The
 * wrappers convert to and from the ABI's WASI numbering. Linux 16
 * (SIGSTKFLT) has no WASI equivalent and is rejected with EINVAL. */
#define RUNSC_SIGHUP 1
#define RUNSC_SIGINT 2
#define RUNSC_SIGQUIT 3
#define RUNSC_SIGILL 4
#define RUNSC_SIGTRAP 5
#define RUNSC_SIGABRT 6
#define RUNSC_SIGBUS 7
#define RUNSC_SIGFPE 8
#define RUNSC_SIGKILL 9
#define RUNSC_SIGUSR1 10
#define RUNSC_SIGSEGV 11
#define RUNSC_SIGUSR2 12
#define RUNSC_SIGPIPE 13
#define RUNSC_SIGALRM 14
#define RUNSC_SIGTERM 15
#define RUNSC_SIGCHLD 17
#define RUNSC_SIGCONT 18
#define RUNSC_SIGSTOP 19
#define RUNSC_SIGTSTP 20
#define RUNSC_SIGTTIN 21
#define RUNSC_SIGTTOU 22
#define RUNSC_SIGURG 23
#define RUNSC_SIGXCPU 24
#define RUNSC_SIGXFSZ 25
#define RUNSC_SIGVTALRM 26
#define RUNSC_SIGPROF 27
#define RUNSC_SIGWINCH 28
#define RUNSC_SIGPOLL 29
#define RUNSC_SIGIO RUNSC_SIGPOLL
#define RUNSC_SIGPWR 30
#define RUNSC_SIGSYS 31

/* Wait status macros (Linux encoding: exit code << 8; killed: signo;
 * stopped: (signo << 8) | 0x7f). */
#define RUNSC_WIFEXITED(s) (((s) & 0x7f) == 0)
#define RUNSC_WEXITSTATUS(s) (((s) >> 8) & 0xff)
#define RUNSC_WIFSIGNALED(s) (((s) & 0x7f) != 0 && ((s) & 0x7f) != 0x7f)
#define RUNSC_WTERMSIG(s) ((s) & 0x7f)
#define RUNSC_WIFSTOPPED(s) (((s) & 0xff) == 0x7f)
#define RUNSC_WSTOPSIG(s) (((s) >> 8) & 0xff)

/* ------------------------------------------------------------------------ */
/* ABI structures                                                            */
/* ------------------------------------------------------------------------ */

/* option_pid: 8 bytes, align 4. */
typedef struct __runsc_option_pid {
  uint8_t tag; /* RUNSC_OPTION_NONE / RUNSC_OPTION_SOME */
  uint8_t __pad[3];
  uint32_t pid;
} __runsc_option_pid_t;

/* join_status: 6 bytes, align 2. */
typedef struct __runsc_join_status {
  uint8_t tag; /* RUNSC_JOIN_* */
  uint8_t __pad;
  union {
    struct {
      uint16_t exit_code;
    } exit_normal;
    struct {
      uint16_t exit_code; /* always 0 */
      uint8_t signal;     /* WASI numbering */
    } exit_signal;
    struct {
      uint8_t signal; /* WASI numbering */
    } stopped;
  } u;
} __runsc_join_status_t;

_Static_assert(sizeof(__runsc_option_pid_t) == 8, "option_pid size");
_Static_assert(_Alignof(__runsc_option_pid_t) == 4, "option_pid align");
_Static_assert(__builtin_offsetof(__runsc_option_pid_t, pid) == 4,
               "option_pid.pid offset");
_Static_assert(sizeof(__runsc_join_status_t) == 6, "join_status size");
_Static_assert(_Alignof(__runsc_join_status_t) == 2, "join_status align");
_Static_assert(__builtin_offsetof(__runsc_join_status_t,
                                  u.exit_normal.exit_code) == 2,
               "join_status exit_code offset");
_Static_assert(__builtin_offsetof(__runsc_join_status_t,
                                  u.exit_signal.signal) == 4,
               "join_status exit signal offset");
_Static_assert(__builtin_offsetof(__runsc_join_status_t, u.stopped.signal) ==
                   2,
               "join_status stop signal offset");

/* ------------------------------------------------------------------------ */
/* Raw imports: module "wasix_32v1"                                          */
/* ------------------------------------------------------------------------ */

/* (i32) -> i32 */
int32_t __runsc_proc_id(uint32_t *ret_pid)
    __attribute__((__import_module__("wasix_32v1"),
                   __import_name__("proc_id")));

/* (i32, i32) -> i32 */
int32_t __runsc_proc_parent(uint32_t pid, uint32_t *ret_ppid)
    __attribute__((__import_module__("wasix_32v1"),
                   __import_name__("proc_parent")));

/* (i32, i32) -> i32; sig is a u8 in WASI numbering */
int32_t __runsc_proc_signal(int32_t pid, uint32_t sig)
    __attribute__((__import_module__("wasix_32v1"),
                   __import_name__("proc_signal")));

/* (i32, i32, i32) -> i32 */
int32_t __runsc_proc_join(__runsc_option_pid_t *pid, uint32_t flags,
                          __runsc_join_status_t *ret_status)
    __attribute__((__import_module__("wasix_32v1"),
                   __import_name__("proc_join")));

/* (i32, i32) -> i32 */
int32_t __runsc_fd_pipe(uint32_t *ret_read, uint32_t *ret_write)
    __attribute__((__import_module__("wasix_32v1"),
                   __import_name__("fd_pipe")));

/* (i32, i32) -> i32 */
int32_t __runsc_fd_dup(uint32_t fd, uint32_t *ret_fd)
    __attribute__((__import_module__("wasix_32v1"),
                   __import_name__("fd_dup")));

/* ------------------------------------------------------------------------ */
/* Raw imports: module "runsc_proc_v1"                                       */
/* ------------------------------------------------------------------------ */

/* (i32 x 11) -> i32 */
int32_t __runsc_proc_spawn(const char *path, uint32_t path_len,
                           const char *argv, uint32_t argv_len,
                           const char *envp, uint32_t envp_len, int32_t *fds,
                           uint32_t nfds, int32_t pgid, uint32_t flags,
                           uint32_t *ret_pid)
    __attribute__((__import_module__("runsc_proc_v1"),
                   __import_name__("proc_spawn")));

/* (i32, i32) -> i32 */
int32_t __runsc_proc_setpgid(int32_t pid, int32_t pgid)
    __attribute__((__import_module__("runsc_proc_v1"),
                   __import_name__("proc_setpgid")));

/* (i32, i32) -> i32 */
int32_t __runsc_proc_getpgid(int32_t pid, uint32_t *ret_pgid)
    __attribute__((__import_module__("runsc_proc_v1"),
                   __import_name__("proc_getpgid")));

/* (i32) -> i32 */
int32_t __runsc_proc_setsid(uint32_t *ret_sid)
    __attribute__((__import_module__("runsc_proc_v1"),
                   __import_name__("proc_setsid")));

/* (i32, i32) -> i32 */
int32_t __runsc_proc_getsid(int32_t pid, uint32_t *ret_sid)
    __attribute__((__import_module__("runsc_proc_v1"),
                   __import_name__("proc_getsid")));

/* (i32, i32) -> i32 */
int32_t __runsc_tty_getpgrp(uint32_t fd, uint32_t *ret_pgid)
    __attribute__((__import_module__("runsc_proc_v1"),
                   __import_name__("tty_getpgrp")));

/* (i32, i32) -> i32 */
int32_t __runsc_tty_setpgrp(uint32_t fd, int32_t pgid)
    __attribute__((__import_module__("runsc_proc_v1"),
                   __import_name__("tty_setpgrp")));

/* (i32, i32) -> i32; sig is a u8 in WASI numbering, ignore != 0: SIG_IGN,
 * 0: SIG_DFL */
int32_t __runsc_proc_sigignore(uint32_t sig, uint32_t ignore)
    __attribute__((__import_module__("runsc_proc_v1"),
                   __import_name__("proc_sigignore")));

/* ------------------------------------------------------------------------ */
/* Wrappers                                                                  */
/* ------------------------------------------------------------------------ */

static inline int __runsc_fail(int32_t err) {
  errno = (int)err;
  return -1;
}

/* Linux signal number -> WASI signal number; -1 if WASI has none (16 and
 * anything outside 0..31). 0 maps to 0 (existence check). */
static inline int runsc_signal_to_wasi(int sig) {
  if (sig < 0 || sig == 16 || sig > 31)
    return -1;
  return sig < 16 ? sig : sig - 1;
}

/* WASI signal number -> Linux signal number. */
static inline int runsc_signal_from_wasi(int wasi_sig) {
  return wasi_sig < 16 ? wasi_sig : wasi_sig + 1;
}

/*
 * Starts a child process running the program at `path` (absolute, or relative
 * to the caller's initial working directory: wasi-libc's chdir is not seen).
 *   argv   NULL-terminated; must hold at least argv[0] (else EINVAL).
 *   envp   NULL-terminated; NULL means the caller's environ.
 *   fds    NULL: the child inherits the caller's fds 0, 1 and 2 (if open).
 *          Otherwise fds[i] for child fd i (i = 0..2): a caller's fd,
 *          RUNSC_FD_CLOSED or RUNSC_FD_PIPE; for RUNSC_FD_PIPE the caller's
 *          end of the new pipe is written back into fds[i].
 *   pgid   RUNSC_PGID_CALLER (-1), RUNSC_PGID_NEW (0), or a group to join.
 *   flags  0 or an OR of RUNSC_SPAWN_SEARCH_PATH (search PATH) and
 *          RUNSC_SPAWN_RESET_SIGNALS (the child starts with every signal's
 *          default action instead of inheriting the caller's ignores).
 * On failure nothing is written back into fds and no pipe is left open.
 * Returns the child's pid, or -1 with errno set.
 */
static inline pid_t runsc_spawn_ex(const char *path, char *const argv[],
                                   char *const envp[], int fds[3], pid_t pgid,
                                   uint32_t flags) {
  if (path == NULL)
    return __runsc_fail(EFAULT);
  if (envp == NULL)
    envp = environ;
  size_t argv_len = 0, envp_len = 0;
  for (size_t i = 0; argv != NULL && argv[i] != NULL; i++)
    argv_len += strlen(argv[i]) + 1;
  for (size_t i = 0; envp != NULL && envp[i] != NULL; i++)
    envp_len += strlen(envp[i]) + 1;
  char *buf = (char *)malloc(argv_len + envp_len + 1);
  if (buf == NULL)
    return __runsc_fail(ENOMEM);
  char *p = buf;
  for (size_t i = 0; argv != NULL && argv[i] != NULL; i++) {
    size_t n = strlen(argv[i]) + 1;
    memcpy(p, argv[i], n);
    p += n;
  }
  for (size_t i = 0; envp != NULL && envp[i] != NULL; i++) {
    size_t n = strlen(envp[i]) + 1;
    memcpy(p, envp[i], n);
    p += n;
  }
  uint32_t pid = 0;
  int32_t err = __runsc_proc_spawn(
      path, (uint32_t)strlen(path), buf, (uint32_t)argv_len, buf + argv_len,
      (uint32_t)envp_len, (int32_t *)fds, fds != NULL ? 3u : 0u,
      (int32_t)pgid, flags, &pid);
  free(buf);
  if (err != 0)
    return __runsc_fail(err);
  return (pid_t)pid;
}

/* posix_spawn-like: see runsc_spawn_ex. */
static inline pid_t runsc_spawn(const char *path, char *const argv[],
                                char *const envp[], int fds[3], pid_t pgid) {
  return runsc_spawn_ex(path, argv, envp, fds, pgid, 0);
}

/* posix_spawnp-like: a path without '/' is searched on PATH (from envp, else
 * the caller's environment). */
static inline pid_t runsc_spawnp(const char *file, char *const argv[],
                                 char *const envp[], int fds[3], pid_t pgid) {
  return runsc_spawn_ex(file, argv, envp, fds, pgid, RUNSC_SPAWN_SEARCH_PATH);
}

/*
 * waitpid(2): pid -1 any child, > 0 that child (other values: EINVAL).
 * options: RUNSC_WNOHANG | RUNSC_WUNTRACED (other bits: EINVAL).
 * Returns the child's pid and stores its Linux-encoded status in *status (if
 * not NULL); 0 with RUNSC_WNOHANG when no child has changed state; -1 with
 * errno (ECHILD: no such child).
 */
static inline pid_t runsc_waitpid(pid_t pid, int *status, int options) {
  __runsc_option_pid_t opt;
  __runsc_join_status_t st;
  memset(&opt, 0, sizeof opt);
  memset(&st, 0, sizeof st);
  if (pid == -1) {
    opt.tag = RUNSC_OPTION_NONE;
  } else if (pid > 0) {
    opt.tag = RUNSC_OPTION_SOME;
    opt.pid = (uint32_t)pid;
  } else {
    return __runsc_fail(EINVAL);
  }
  if (options & ~(RUNSC_WNOHANG | RUNSC_WUNTRACED))
    return __runsc_fail(EINVAL);
  uint32_t flags = 0;
  if (options & RUNSC_WNOHANG)
    flags |= RUNSC_JOIN_NON_BLOCKING;
  if (options & RUNSC_WUNTRACED)
    flags |= RUNSC_JOIN_WAKE_STOPPED;
  int32_t err = __runsc_proc_join(&opt, flags, &st);
  if (err != 0)
    return __runsc_fail(err);
  int s;
  switch (st.tag) {
  case RUNSC_JOIN_NOTHING:
    return 0;
  case RUNSC_JOIN_EXIT_NORMAL:
    s = (st.u.exit_normal.exit_code & 0xff) << 8;
    break;
  case RUNSC_JOIN_EXIT_SIGNAL:
    s = runsc_signal_from_wasi(st.u.exit_signal.signal) & 0x7f;
    break;
  case RUNSC_JOIN_STOPPED:
    s = ((runsc_signal_from_wasi(st.u.stopped.signal) & 0xff) << 8) | 0x7f;
    break;
  default:
    return __runsc_fail(EIO);
  }
  if (status != NULL)
    *status = s;
  return (pid_t)opt.pid;
}

/* kill(2) with a Linux signal number (0 checks only). pid > 0 that process,
 * 0 the caller's group, -1 every process the caller may signal but itself,
 * < -1 the group -pid. */
static inline int runsc_kill(pid_t pid, int sig) {
  int wasi_sig = runsc_signal_to_wasi(sig);
  if (wasi_sig < 0)
    return __runsc_fail(EINVAL);
  int32_t err = __runsc_proc_signal((int32_t)pid, (uint32_t)wasi_sig);
  return err != 0 ? __runsc_fail(err) : 0;
}

/* signal(sig, ignore ? SIG_IGN : SIG_DFL) with a Linux signal number: an
 * ignored signal is discarded when sent to the caller (SIGCONT still
 * continues it). Ignores are inherited by spawned children unless they are
 * spawned with RUNSC_SPAWN_RESET_SIGNALS. EINVAL for 0, 16, an unknown
 * number, SIGKILL or SIGSTOP. Handlers cannot be installed. */
static inline int runsc_sigignore(int sig, int ignore) {
  int wasi_sig = runsc_signal_to_wasi(sig);
  if (wasi_sig < 0)
    return __runsc_fail(EINVAL);
  int32_t err =
      __runsc_proc_sigignore((uint32_t)wasi_sig, ignore != 0 ? 1u : 0u);
  return err != 0 ? __runsc_fail(err) : 0;
}

static inline pid_t runsc_getpid(void) {
  uint32_t pid = 0;
  int32_t err = __runsc_proc_id(&pid);
  return err != 0 ? __runsc_fail(err) : (pid_t)pid;
}

/* 0 when the parent is outside the caller's PID namespace or there is none
 * (e.g. the container's init). */
static inline pid_t runsc_getppid(void) {
  uint32_t pid = 0, ppid = 0;
  int32_t err = __runsc_proc_id(&pid);
  if (err == 0)
    err = __runsc_proc_parent(pid, &ppid);
  return err != 0 ? __runsc_fail(err) : (pid_t)ppid;
}

/* setpgid(2): pid 0 = the caller, pgid 0 = pid. */
static inline int runsc_setpgid(pid_t pid, pid_t pgid) {
  int32_t err = __runsc_proc_setpgid((int32_t)pid, (int32_t)pgid);
  return err != 0 ? __runsc_fail(err) : 0;
}

/* getpgid(2): pid 0 = the caller. */
static inline pid_t runsc_getpgid(pid_t pid) {
  uint32_t pgid = 0;
  int32_t err = __runsc_proc_getpgid((int32_t)pid, &pgid);
  return err != 0 ? __runsc_fail(err) : (pid_t)pgid;
}

static inline pid_t runsc_getpgrp(void) { return runsc_getpgid(0); }

/* setsid(2): returns the new session id (= the caller's pid). */
static inline pid_t runsc_setsid(void) {
  uint32_t sid = 0;
  int32_t err = __runsc_proc_setsid(&sid);
  return err != 0 ? __runsc_fail(err) : (pid_t)sid;
}

/* getsid(2): pid 0 = the caller. */
static inline pid_t runsc_getsid(pid_t pid) {
  uint32_t sid = 0;
  int32_t err = __runsc_proc_getsid((int32_t)pid, &sid);
  return err != 0 ? __runsc_fail(err) : (pid_t)sid;
}

/* pipe(2): fds[0] reads, fds[1] writes. */
static inline int runsc_pipe(int fds[2]) {
  uint32_t r = 0, w = 0;
  int32_t err = __runsc_fd_pipe(&r, &w);
  if (err != 0)
    return __runsc_fail(err);
  fds[0] = (int)r;
  fds[1] = (int)w;
  return 0;
}

/* dup(2). */
static inline int runsc_dup(int fd) {
  if (fd < 0)
    return __runsc_fail(EBADF);
  uint32_t nfd = 0;
  int32_t err = __runsc_fd_dup((uint32_t)fd, &nfd);
  return err != 0 ? __runsc_fail(err) : (int)nfd;
}

/* tcgetpgrp(3): ENOTTY if fd is not the caller's controlling terminal (so
 * it fails for a terminal of another session too). */
static inline pid_t runsc_tcgetpgrp(int fd) {
  if (fd < 0)
    return __runsc_fail(EBADF);
  uint32_t pgid = 0;
  int32_t err = __runsc_tty_getpgrp((uint32_t)fd, &pgid);
  return err != 0 ? __runsc_fail(err) : (pid_t)pgid;
}

/* tcsetpgrp(3): fd must be the caller's controlling terminal (ENOTTY), pgid
 * a group of the caller's session (EPERM). */
static inline int runsc_tcsetpgrp(int fd, pid_t pgid) {
  if (fd < 0)
    return __runsc_fail(EBADF);
  int32_t err = __runsc_tty_setpgrp((uint32_t)fd, (int32_t)pgid);
  return err != 0 ? __runsc_fail(err) : 0;
}

#ifdef __cplusplus
}
#endif

#endif /* RUNSC_PROCESS_H */
