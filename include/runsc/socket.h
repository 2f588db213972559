/*
 * runsc/socket.h — BSD sockets for WebAssembly guests of the runsc sandbox
 * (see docs/socket-api.md), over WASIX's socket calls.
 *
 * Header-only. Include it after the system headers and build with clang and
 * wasi-libc:
 *
 *   clang --target=wasm32-wasi -I include prog.c -o prog.wasm
 *
 * wasi-libc (preview1) declares send, recv, shutdown, accept and getsockopt
 * but has no socket, bind, connect, listen, getsockname, getpeername or
 * setsockopt, sendto or recvfrom. This header defines them (and accept, accept4 and getsockopt
 * again, since preview1's accept cannot tell the peer's address), as
 * runsc_<name> functions that the plain names are macros for, so that a
 * BSD-sockets program compiles unchanged. They return -1 and set errno on
 * failure; wasi-libc's errno values are WASI's, so errno is the call's own.
 *
 * The raw imports, __runsc_sock_<name>, take WASIX's numbering and its
 * addr_port struct (a tag, a port in host order stored little-endian, the
 * address in network order).
 *
 * getaddrinfo, freeaddrinfo, gai_strerror, getnameinfo (numeric) and
 * gethostbyname (IPv4) are here too (wasi-libc has no
 * netdb.h; include/netdb.h includes this header, so `#include <netdb.h>`
 * works with -I include). Names are resolved by the sandbox (WASIX resolve:
 * the container's /etc/hosts, localhost, then the host's DNS only where the
 * egress policy allows); services are port numbers only (no /etc/services).
 *
 * Built: IPv4 and IPv6 stream and datagram sockets over the sandbox's
 * loopback, egress by policy, and Unix stream and datagram sockets (paths,
 * abstract names, socketpair). wasi-libc's struct sockaddr_un has no path;
 * this header gives it one (sun_path[108], as Linux's), so include it after
 * <sys/un.h> or instead of it. A relative socket path is made absolute with
 * getcwd(), as the program's own file calls resolve it. An abstract name
 * ends at its first NUL (the call carries no length).
 */
#ifndef RUNSC_SOCKET_H
#define RUNSC_SOCKET_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>
#include <wasi/api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Linux's sockaddr_un; wasi-libc's has only sun_family. */
struct runsc_sockaddr_un {
  sa_family_t sun_family;
  char sun_path[108];
};
#define sockaddr_un runsc_sockaddr_un

/* Socket options wasi-libc does not define (Linux's values, as musl has them). */
#ifndef SO_REUSEADDR
#define SO_REUSEADDR 2
#endif
#ifndef SO_ERROR
#define SO_ERROR 4
#endif
#ifndef SO_BROADCAST
#define SO_BROADCAST 6
#endif
#ifndef SO_SNDBUF
#define SO_SNDBUF 7
#endif
#ifndef SO_RCVBUF
#define SO_RCVBUF 8
#endif
#ifndef SO_RCVTIMEO
#define SO_RCVTIMEO 66 /* musl's, with a 64-bit time_t on a 32-bit target */
#define SO_SNDTIMEO 67
#endif
#ifndef SO_KEEPALIVE
#define SO_KEEPALIVE 9
#endif
#ifndef SO_REUSEPORT
#define SO_REUSEPORT 15
#endif
#ifndef SO_ACCEPTCONN
#define SO_ACCEPTCONN 30
#endif
#ifndef SO_PROTOCOL
#define SO_PROTOCOL 38
#endif
#ifndef MSG_DONTWAIT
#define MSG_DONTWAIT 0x0040
#endif
#ifndef TCP_NODELAY
#define TCP_NODELAY 1
#endif
#ifndef IPV6_V6ONLY
#define IPV6_V6ONLY 26
#endif

/* ------------------------------------------------------------------------ */
/* WASIX numbering                                                           */
/* ------------------------------------------------------------------------ */

#define RUNSC_AF_INET4 1
#define RUNSC_AF_INET6 2
#define RUNSC_AF_UNIX 3
#define RUNSC_SOCK_STREAM 1
#define RUNSC_SOCK_DGRAM 2

/* sock_option */
#define RUNSC_SO_REUSE_PORT 1
#define RUNSC_SO_REUSE_ADDR 2
#define RUNSC_SO_NO_DELAY 3
#define RUNSC_SO_ONLY_V6 5
#define RUNSC_SO_BROADCAST 6
#define RUNSC_SO_LISTENING 10
#define RUNSC_SO_LAST_ERROR 11
#define RUNSC_SO_KEEP_ALIVE 12
#define RUNSC_SO_RECV_BUF_SIZE 15
#define RUNSC_SO_SEND_BUF_SIZE 16
#define RUNSC_SO_PROTO 26
#define RUNSC_SO_RECV_TIMEOUT 19
#define RUNSC_SO_SEND_TIMEOUT 20

/* addr_port, as the calls read and write it (the first 20 of its 110 bytes). */
typedef struct {
  uint8_t tag;
  uint8_t pad;
  uint16_t port;
  uint8_t address[16];
  uint8_t rest[90];
} runsc_addr_port_t;

/* option_timestamp: a tag (0 none, 1 some), then nanoseconds. */
typedef struct {
  uint8_t tag;
  uint8_t pad[7];
  uint64_t nanoseconds;
} runsc_option_timestamp_t;

/* addr, as resolve writes an array of them: a tag, then the address in network order. */
typedef struct {
  uint8_t tag;
  uint8_t pad;
  uint8_t address[16];
} runsc_addr_t;

/* ------------------------------------------------------------------------ */
/* Raw imports (module "wasix_32v1"); each returns a WASI errno              */
/* ------------------------------------------------------------------------ */

#define RUNSC_WASIX(name) __attribute__((__import_module__("wasix_32v1"), __import_name__(#name)))

int32_t __runsc_sock_open(int32_t af, int32_t type, int32_t proto, int32_t *fd) RUNSC_WASIX(sock_open);
int32_t __runsc_sock_bind(int32_t fd, const runsc_addr_port_t *addr) RUNSC_WASIX(sock_bind);
int32_t __runsc_sock_listen(int32_t fd, int32_t backlog) RUNSC_WASIX(sock_listen);
int32_t __runsc_sock_connect(int32_t fd, const runsc_addr_port_t *addr) RUNSC_WASIX(sock_connect);
int32_t __runsc_sock_accept_v2(int32_t fd, int32_t flags, int32_t *accepted, runsc_addr_port_t *addr) RUNSC_WASIX(sock_accept_v2);
int32_t __runsc_sock_addr_local(int32_t fd, runsc_addr_port_t *addr) RUNSC_WASIX(sock_addr_local);
int32_t __runsc_sock_addr_peer(int32_t fd, runsc_addr_port_t *addr) RUNSC_WASIX(sock_addr_peer);
int32_t __runsc_sock_recv_from(int32_t fd, const __wasi_iovec_t *iovs, int32_t iovs_len, int32_t flags, uint32_t *nread, uint16_t *ro_flags, runsc_addr_port_t *addr) RUNSC_WASIX(sock_recv_from);
int32_t __runsc_sock_send_to(int32_t fd, const __wasi_ciovec_t *iovs, int32_t iovs_len, int32_t flags, const runsc_addr_port_t *addr, uint32_t *nsent) RUNSC_WASIX(sock_send_to);
int32_t __runsc_sock_set_opt_flag(int32_t fd, int32_t option, int32_t flag) RUNSC_WASIX(sock_set_opt_flag);
int32_t __runsc_sock_get_opt_flag(int32_t fd, int32_t option, uint8_t *flag) RUNSC_WASIX(sock_get_opt_flag);
int32_t __runsc_sock_set_opt_size(int32_t fd, int32_t option, int64_t size) RUNSC_WASIX(sock_set_opt_size);
int32_t __runsc_sock_get_opt_size(int32_t fd, int32_t option, uint64_t *size) RUNSC_WASIX(sock_get_opt_size);
int32_t __runsc_resolve(const char *host, size_t host_len, int32_t port, runsc_addr_t *addrs, size_t naddrs, uint32_t *found) RUNSC_WASIX(resolve);
int32_t __runsc_sock_pair(int32_t af, int32_t type, int32_t proto, int32_t *fd1, int32_t *fd2) RUNSC_WASIX(sock_pair);
int32_t __runsc_sock_set_opt_time(int32_t fd, int32_t option, const runsc_option_timestamp_t *time) RUNSC_WASIX(sock_set_opt_time);
int32_t __runsc_sock_get_opt_time(int32_t fd, int32_t option, runsc_option_timestamp_t *time) RUNSC_WASIX(sock_get_opt_time);

#undef RUNSC_WASIX

/* ------------------------------------------------------------------------ */
/* BSD wrappers                                                              */
/* ------------------------------------------------------------------------ */

static inline int runsc__result(int32_t error) {
  if (error == 0) return 0;
  errno = error;
  return -1;
}

/* A sockaddr as an addr_port; EAFNOSUPPORT / EINVAL as Linux's bind and connect. */
static inline int runsc__to_addr_port(const struct sockaddr *sa, socklen_t len, runsc_addr_port_t *out) {
  memset(out, 0, sizeof *out);
  if (sa == NULL) return EFAULT;
  if (sa->sa_family == AF_INET) {
    if (len < sizeof(struct sockaddr_in)) return EINVAL;
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    out->tag = RUNSC_AF_INET4;
    out->port = ntohs(in->sin_port);
    memcpy(out->address, &in->sin_addr, 4);
    return 0;
  }
  if (sa->sa_family == AF_INET6) {
    if (len < sizeof(struct sockaddr_in6)) return EINVAL;
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    out->tag = RUNSC_AF_INET6;
    out->port = ntohs(in6->sin6_port);
    memcpy(out->address, &in6->sin6_addr, 16);
    return 0;
  }
  if (sa->sa_family == AF_UNIX) {
    const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
    size_t offset = offsetof(struct sockaddr_un, sun_path);
    if (len < offset) return EINVAL;
    size_t given = len - offset > sizeof un->sun_path ? sizeof un->sun_path : len - offset;
    /* The path goes at 2, NUL-terminated within 108 bytes (so at most 107 long). */
    char *path = (char *)out + 2;
    out->tag = RUNSC_AF_UNIX;
    if (given == 0) return 0; /* unnamed: bind picks an abstract name */
    if (un->sun_path[0] == 0) {
      /* Abstract: a NUL, then the name (to its first NUL). */
      if (given > 107) given = 107;
      memcpy(path, un->sun_path, given);
      return 0;
    }
    size_t n = strnlen(un->sun_path, given);
    if (n >= 108) return ENAMETOOLONG;
    if (un->sun_path[0] != '/') {
      /* Relative to wasi-libc's working directory, which the sandbox does not know: made
         absolute here, or refused when that does not fit (never resolved elsewhere). */
      char cwd[108];
      if (getcwd(cwd, sizeof cwd) == NULL) return ENAMETOOLONG;
      size_t c = strlen(cwd);
      int slash = c > 0 && cwd[c - 1] != '/';
      if (c + slash + n >= 108) return ENAMETOOLONG;
      memcpy(path, cwd, c);
      if (slash) path[c++] = '/';
      memcpy(path + c, un->sun_path, n);
      return 0;
    }
    memcpy(path, un->sun_path, n);
    return 0;
  }
  return EAFNOSUPPORT;
}

/* An addr_port as a sockaddr, truncated to *len as getsockname(2) does; *len is set to the full size. */
static inline void runsc__from_addr_port(const runsc_addr_port_t *ap, struct sockaddr *sa, socklen_t *len) {
  if (sa == NULL || len == NULL) return;
  union {
    struct sockaddr_storage storage;
    struct sockaddr_un un;
  } full;
  socklen_t size;
  memset(&full, 0, sizeof full);
  if (ap->tag == RUNSC_AF_UNIX) {
    /* As Linux: the family alone when unnamed; else the name and (a path's) NUL. */
    const char *path = (const char *)ap + 2;
    full.un.sun_family = AF_UNIX;
    size_t n = path[0] == 0 ? (path[1] == 0 ? 0 : 1 + strnlen(path + 1, 106)) : strnlen(path, 107) + 1;
    memcpy(full.un.sun_path, path, n);
    size = offsetof(struct sockaddr_un, sun_path) + n;
  } else if (ap->tag == RUNSC_AF_INET6) {
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&full.storage;
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(ap->port);
    memcpy(&in6->sin6_addr, ap->address, 16);
    size = sizeof(struct sockaddr_in6);
  } else {
    struct sockaddr_in *in = (struct sockaddr_in *)&full.storage;
    in->sin_family = AF_INET;
    in->sin_port = htons(ap->port);
    memcpy(&in->sin_addr, ap->address, 4);
    size = sizeof(struct sockaddr_in);
  }
  memcpy(sa, &full, *len < size ? *len : size);
  *len = size;
}

static inline int runsc_socket(int domain, int type, int protocol) {
  int nonblock = (type & SOCK_NONBLOCK) != 0;
  int kind = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
  int32_t wasix_type = kind == SOCK_STREAM ? RUNSC_SOCK_STREAM : kind == SOCK_DGRAM ? RUNSC_SOCK_DGRAM : -1;
  if (wasix_type < 0) {
    errno = EINVAL;
    return -1;
  }
  int32_t fd;
  /* AF_INET and AF_INET6 are WASIX's INET4 and INET6 in wasi-libc. */
  if (runsc__result(__runsc_sock_open(domain, wasix_type, protocol, &fd)) < 0) return -1;
  if (nonblock && fcntl(fd, F_SETFL, O_NONBLOCK) < 0) {
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
  }
  return fd;
}

/* socketpair(2): two connected Unix sockets (EOPNOTSUPP for other families, as Linux). */
static inline int runsc_socketpair(int domain, int type, int protocol, int sv[2]) {
  int nonblock = (type & SOCK_NONBLOCK) != 0;
  int kind = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
  int32_t wasix_type = kind == SOCK_STREAM ? RUNSC_SOCK_STREAM : kind == SOCK_DGRAM ? RUNSC_SOCK_DGRAM : -1;
  if (wasix_type < 0) return runsc__result(EINVAL);
  int32_t fd1, fd2;
  if (runsc__result(__runsc_sock_pair(domain, wasix_type, protocol, &fd1, &fd2)) < 0) return -1;
  if (nonblock && (fcntl(fd1, F_SETFL, O_NONBLOCK) < 0 || fcntl(fd2, F_SETFL, O_NONBLOCK) < 0)) {
    int saved = errno;
    close(fd1);
    close(fd2);
    errno = saved;
    return -1;
  }
  sv[0] = fd1;
  sv[1] = fd2;
  return 0;
}

static inline int runsc_bind(int fd, const struct sockaddr *sa, socklen_t len) {
  runsc_addr_port_t ap;
  int error = runsc__to_addr_port(sa, len, &ap);
  return error != 0 ? runsc__result(error) : runsc__result(__runsc_sock_bind(fd, &ap));
}

static inline int runsc_connect(int fd, const struct sockaddr *sa, socklen_t len) {
  runsc_addr_port_t ap;
  int error = runsc__to_addr_port(sa, len, &ap);
  return error != 0 ? runsc__result(error) : runsc__result(__runsc_sock_connect(fd, &ap));
}

static inline int runsc_listen(int fd, int backlog) {
  return runsc__result(__runsc_sock_listen(fd, backlog < 0 ? 0 : backlog));
}

static inline int runsc_accept4(int fd, struct sockaddr *sa, socklen_t *len, int flags) {
  int32_t accepted;
  runsc_addr_port_t ap;
  if (runsc__result(__runsc_sock_accept_v2(fd, (flags & SOCK_NONBLOCK) ? __WASI_FDFLAGS_NONBLOCK : 0, &accepted, &ap)) < 0) return -1;
  runsc__from_addr_port(&ap, sa, len);
  return accepted;
}

static inline int runsc_accept(int fd, struct sockaddr *sa, socklen_t *len) {
  return runsc_accept4(fd, sa, len, 0);
}

static inline int runsc_getsockname(int fd, struct sockaddr *sa, socklen_t *len) {
  runsc_addr_port_t ap;
  if (runsc__result(__runsc_sock_addr_local(fd, &ap)) < 0) return -1;
  runsc__from_addr_port(&ap, sa, len);
  return 0;
}

static inline int runsc_getpeername(int fd, struct sockaddr *sa, socklen_t *len) {
  runsc_addr_port_t ap;
  if (runsc__result(__runsc_sock_addr_peer(fd, &ap)) < 0) return -1;
  runsc__from_addr_port(&ap, sa, len);
  return 0;
}

/* sendto(2): one datagram to `sa` (a stream socket ignores the address, as on Linux). */
static inline ssize_t runsc_sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *sa, socklen_t sa_len) {
  if (sa == NULL) return send(fd, buf, len, flags);
  runsc_addr_port_t ap;
  int error = runsc__to_addr_port(sa, sa_len, &ap);
  if (error != 0) return runsc__result(error);
  __wasi_ciovec_t iov = {(const uint8_t *)buf, len};
  uint32_t sent;
  if (runsc__result(__runsc_sock_send_to(fd, &iov, 1, (flags & MSG_DONTWAIT) ? 1 : 0, &ap, &sent)) < 0) return -1;
  return sent;
}

/* recvfrom(2): one datagram (cut to `len`) and who sent it. */
static inline ssize_t runsc_recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *sa, socklen_t *sa_len) {
  __wasi_iovec_t iov = {(uint8_t *)buf, len};
  uint32_t got;
  uint16_t ro_flags;
  runsc_addr_port_t ap;
  int32_t ri_flags = (flags & MSG_PEEK ? 1 : 0) | (flags & MSG_WAITALL ? 2 : 0) | (flags & MSG_DONTWAIT ? 8 : 0);
  if (runsc__result(__runsc_sock_recv_from(fd, &iov, 1, ri_flags, &got, &ro_flags, &ap)) < 0) return -1;
  runsc__from_addr_port(&ap, sa, sa_len);
  return got;
}

/* A (level, name) as a WASIX option; *is_size tells a size option from a flag. -1: not one we know. */
static inline int runsc__option(int level, int name, int *is_size) {
  *is_size = 0;
  if (level == SOL_SOCKET) {
    switch (name) {
      case SO_REUSEADDR: return RUNSC_SO_REUSE_ADDR;
      case SO_REUSEPORT: return RUNSC_SO_REUSE_PORT;
      case SO_KEEPALIVE: return RUNSC_SO_KEEP_ALIVE;
      case SO_BROADCAST: return RUNSC_SO_BROADCAST;
      case SO_ACCEPTCONN: return RUNSC_SO_LISTENING;
      case SO_RCVBUF: *is_size = 1; return RUNSC_SO_RECV_BUF_SIZE;
      case SO_SNDBUF: *is_size = 1; return RUNSC_SO_SEND_BUF_SIZE;
      case SO_ERROR: *is_size = 1; return RUNSC_SO_LAST_ERROR;
      case SO_PROTOCOL: *is_size = 1; return RUNSC_SO_PROTO;
    }
  }
  if (level == IPPROTO_TCP && name == TCP_NODELAY) return RUNSC_SO_NO_DELAY;
  if (level == IPPROTO_IPV6 && name == IPV6_V6ONLY) return RUNSC_SO_ONLY_V6;
  return -1;
}

static inline int runsc_setsockopt(int fd, int level, int name, const void *value, socklen_t len) {
  if (level == SOL_SOCKET && (name == SO_RCVTIMEO || name == SO_SNDTIMEO)) {
    /* A struct timeval; zero is no limit. A negative one is the shortest, as Linux's is none at all. */
    if (value == NULL || len < sizeof(struct timeval)) return runsc__result(EINVAL);
    const struct timeval *tv = (const struct timeval *)value;
    if (tv->tv_usec < 0 || tv->tv_usec >= 1000000) return runsc__result(EDOM);
    runsc_option_timestamp_t t = {1, {0}, tv->tv_sec < 0 ? 1 : (uint64_t)tv->tv_sec * 1000000000u + (uint64_t)tv->tv_usec * 1000u};
    return runsc__result(__runsc_sock_set_opt_time(fd, name == SO_RCVTIMEO ? RUNSC_SO_RECV_TIMEOUT : RUNSC_SO_SEND_TIMEOUT, &t));
  }
  int is_size;
  int option = runsc__option(level, name, &is_size);
  if (option < 0 || option == RUNSC_SO_LISTENING || option == RUNSC_SO_LAST_ERROR || option == RUNSC_SO_PROTO) return runsc__result(ENOPROTOOPT);
  if (value == NULL || len < sizeof(int)) return runsc__result(EINVAL);
  int v = *(const int *)value;
  return is_size ? runsc__result(__runsc_sock_set_opt_size(fd, option, v)) : runsc__result(__runsc_sock_set_opt_flag(fd, option, v != 0));
}

static inline int runsc_getsockopt(int fd, int level, int name, void *value, socklen_t *len) {
  if (level == SOL_SOCKET && (name == SO_RCVTIMEO || name == SO_SNDTIMEO)) {
    if (value == NULL || len == NULL || *len < sizeof(struct timeval)) return runsc__result(EINVAL);
    runsc_option_timestamp_t t;
    if (runsc__result(__runsc_sock_get_opt_time(fd, name == SO_RCVTIMEO ? RUNSC_SO_RECV_TIMEOUT : RUNSC_SO_SEND_TIMEOUT, &t)) < 0) return -1;
    struct timeval *tv = (struct timeval *)value;
    uint64_t ns = t.tag == 1 ? t.nanoseconds : 0;
    tv->tv_sec = (time_t)(ns / 1000000000u);
    tv->tv_usec = (suseconds_t)((ns % 1000000000u) / 1000u);
    *len = sizeof(struct timeval);
    return 0;
  }
  if (value == NULL || len == NULL || *len < sizeof(int)) return runsc__result(EINVAL);
  if (level == SOL_SOCKET && name == SO_TYPE) {
    __wasi_fdstat_t stat;
    if (runsc__result(__wasi_fd_fdstat_get(fd, &stat)) < 0) return -1;
    if (stat.fs_filetype != __WASI_FILETYPE_SOCKET_STREAM && stat.fs_filetype != __WASI_FILETYPE_SOCKET_DGRAM) return runsc__result(ENOTSOCK);
    *(int *)value = stat.fs_filetype == __WASI_FILETYPE_SOCKET_STREAM ? SOCK_STREAM : SOCK_DGRAM;
    *len = sizeof(int);
    return 0;
  }
  int is_size;
  int option = runsc__option(level, name, &is_size);
  if (option < 0) return runsc__result(ENOPROTOOPT);
  if (is_size) {
    uint64_t size;
    if (runsc__result(__runsc_sock_get_opt_size(fd, option, &size)) < 0) return -1;
    *(int *)value = (int)size;
  } else {
    uint8_t flag;
    if (runsc__result(__runsc_sock_get_opt_flag(fd, option, &flag)) < 0) return -1;
    *(int *)value = flag;
  }
  *len = sizeof(int);
  return 0;
}

/* ------------------------------------------------------------------------ */
/* getaddrinfo                                                               */
/* ------------------------------------------------------------------------ */

struct addrinfo {
  int ai_flags;
  int ai_family;
  int ai_socktype;
  int ai_protocol;
  socklen_t ai_addrlen;
  struct sockaddr *ai_addr;
  char *ai_canonname;
  struct addrinfo *ai_next;
};

/* Linux's values, as musl has them. */
#define AI_PASSIVE 0x01
#define AI_CANONNAME 0x02
#define AI_NUMERICHOST 0x04
#define AI_V4MAPPED 0x08
#define AI_ALL 0x10
#define AI_ADDRCONFIG 0x20
#define AI_NUMERICSERV 0x400
#define EAI_BADFLAGS -1
#define EAI_NONAME -2
#define EAI_AGAIN -3
#define EAI_FAIL -4
#define EAI_FAMILY -6
#define EAI_SOCKTYPE -7
#define EAI_SERVICE -8
#define EAI_MEMORY -10
#define EAI_SYSTEM -11

#define RUNSC_MAX_ADDRS 16

static inline const char *runsc_gai_strerror(int code) {
  switch (code) {
    case 0: return "Success";
    case EAI_BADFLAGS: return "Invalid flags";
    case EAI_NONAME: return "Name does not resolve";
    case EAI_AGAIN: return "Temporary failure in name resolution";
    case EAI_FAIL: return "Non-recoverable failure in name resolution";
    case EAI_FAMILY: return "Address family not supported";
    case EAI_SOCKTYPE: return "Invalid socket type";
    case EAI_SERVICE: return "Unrecognized service";
    case EAI_MEMORY: return "Out of memory";
    default: return "System error";
  }
}

/*
 * getnameinfo(3), numeric only: the sandbox keeps no reverse names, so a host is its address
 * (EAI_NONAME with NI_NAMEREQD, as for an address with no name) and a service its port.
 */
#define NI_NUMERICHOST 0x01
#define NI_NUMERICSERV 0x02
#define NI_NOFQDN 0x04
#define NI_NAMEREQD 0x08
#define NI_DGRAM 0x10
#define NI_MAXHOST 255
#define NI_MAXSERV 32
#define EAI_OVERFLOW -12

static inline int runsc_getnameinfo(const struct sockaddr *sa, socklen_t len, char *host, socklen_t hostlen, char *serv, socklen_t servlen, int flags) {
  const void *address;
  int family, port;
  if (sa == NULL) return EAI_FAMILY;
  if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
    family = AF_INET;
    address = &((const struct sockaddr_in *)sa)->sin_addr;
    port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
  } else if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
    family = AF_INET6;
    address = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
  } else {
    return EAI_FAMILY;
  }
  if (host != NULL && hostlen > 0) {
    if (flags & NI_NAMEREQD) return EAI_NONAME;
    if (inet_ntop(family, address, host, hostlen) == NULL) return EAI_OVERFLOW;
  }
  if (serv != NULL && servlen > 0) {
    int n = snprintf(serv, servlen, "%d", port);
    if (n < 0 || (socklen_t)n >= servlen) return EAI_OVERFLOW;
  }
  return 0;
}

/*
 * gethostbyname(3), IPv4, through getaddrinfo: the entry is static, overwritten by the next
 * call, as glibc's is. NULL with h_errno HOST_NOT_FOUND (or TRY_AGAIN) when there is none.
 */
struct hostent {
  char *h_name;
  char **h_aliases;
  int h_addrtype;
  int h_length;
  char **h_addr_list;
};
#define h_addr h_addr_list[0]
#define HOST_NOT_FOUND 1
#define TRY_AGAIN 2
static int h_errno;

static inline struct hostent *runsc_gethostbyname(const char *name);

static inline void runsc_freeaddrinfo(struct addrinfo *list) {
  while (list != NULL) {
    struct addrinfo *next = list->ai_next;
    free(list); /* one allocation holds the entry and its address */
    list = next;
  }
}

/* One entry (and its sockaddr) for an address, appended at *tail. */
static inline int runsc__gai_add(struct addrinfo ***tail, int family, const uint8_t *address, int port, int socktype, int protocol) {
  size_t len = family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
  struct addrinfo *ai = (struct addrinfo *)calloc(1, sizeof(struct addrinfo) + len);
  if (ai == NULL) return EAI_MEMORY;
  ai->ai_family = family;
  ai->ai_socktype = socktype;
  ai->ai_protocol = protocol != 0 ? protocol : socktype == SOCK_DGRAM ? IPPROTO_UDP : IPPROTO_TCP;
  ai->ai_addrlen = len;
  ai->ai_addr = (struct sockaddr *)(ai + 1);
  if (family == AF_INET) {
    struct sockaddr_in *in = (struct sockaddr_in *)ai->ai_addr;
    in->sin_family = AF_INET;
    in->sin_port = htons(port);
    memcpy(&in->sin_addr, address, 4);
  } else {
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ai->ai_addr;
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    memcpy(&in6->sin6_addr, address, 16);
  }
  **tail = ai;
  *tail = &ai->ai_next;
  return 0;
}

static inline int runsc_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res) {
  int flags = hints ? hints->ai_flags : 0;
  int family = hints ? hints->ai_family : AF_UNSPEC;
  int socktype = hints ? hints->ai_socktype : 0;
  int protocol = hints ? hints->ai_protocol : 0;
  *res = NULL;
  if (node == NULL && service == NULL) return EAI_NONAME;
  if (family != AF_UNSPEC && family != AF_INET && family != AF_INET6) return EAI_FAMILY;
  if (socktype != 0 && socktype != SOCK_STREAM && socktype != SOCK_DGRAM) return EAI_SOCKTYPE;
  if ((socktype == SOCK_STREAM && protocol == IPPROTO_UDP) || (socktype == SOCK_DGRAM && protocol == IPPROTO_TCP)) return EAI_SOCKTYPE;
  int port = 0;
  if (service != NULL && *service != 0) {
    char *end;
    long n = strtol(service, &end, 10);
    if (*end != 0 || n < 0 || n > 65535) return flags & AI_NUMERICSERV ? EAI_NONAME : EAI_SERVICE;
    port = (int)n;
  }
  runsc_addr_t addrs[RUNSC_MAX_ADDRS];
  uint32_t found = 0;
  if (node == NULL) {
    /* The wildcard to bind, or the loopback to connect to. */
    static const uint8_t any6[16] = {0}, loop6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    static const uint8_t any4[4] = {0, 0, 0, 0}, loop4[4] = {127, 0, 0, 1};
    addrs[0].tag = RUNSC_AF_INET6;
    memcpy(addrs[0].address, flags & AI_PASSIVE ? any6 : loop6, 16);
    addrs[1].tag = RUNSC_AF_INET4;
    memcpy(addrs[1].address, flags & AI_PASSIVE ? any4 : loop4, 4);
    found = 2;
  } else {
    if (flags & AI_NUMERICHOST) {
      uint8_t probe[16];
      if (inet_pton(AF_INET, node, probe) != 1 && inet_pton(AF_INET6, node, probe) != 1) return EAI_NONAME;
    }
    int32_t error = __runsc_resolve(node, strlen(node), port, addrs, RUNSC_MAX_ADDRS, &found);
    if (error == ENOENT || error == EINVAL) return EAI_NONAME;
    if (error == EAGAIN) return EAI_AGAIN;
    if (error != 0) {
      errno = error;
      return EAI_SYSTEM;
    }
  }
  struct addrinfo *list = NULL, **tail = &list;
  for (uint32_t i = 0; i < found; i++) {
    int f = addrs[i].tag == RUNSC_AF_INET4 ? AF_INET : AF_INET6;
    if (family != AF_UNSPEC && f != family) continue;
    static const int types[2] = {SOCK_STREAM, SOCK_DGRAM};
    for (int t = 0; t < 2; t++) {
      int type = types[t];
      if (socktype != 0 && type != socktype) continue;
      int error = runsc__gai_add(&tail, f, addrs[i].address, port, type, protocol);
      if (error != 0) {
        runsc_freeaddrinfo(list);
        return error;
      }
    }
  }
  if (list == NULL) return family != AF_UNSPEC ? EAI_FAMILY : EAI_NONAME;
  *res = list;
  return 0;
}

static inline struct hostent *runsc_gethostbyname(const char *name) {
  static char host_name[256];
  static struct in_addr addresses[RUNSC_MAX_ADDRS];
  static char *address_list[RUNSC_MAX_ADDRS + 1];
  static char *no_aliases[1];
  static struct hostent entry;
  struct addrinfo hints, *list;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  int code = runsc_getaddrinfo(name, NULL, &hints, &list);
  if (code != 0) {
    h_errno = code == EAI_AGAIN ? TRY_AGAIN : HOST_NOT_FOUND;
    return NULL;
  }
  int n = 0;
  for (struct addrinfo *ai = list; ai != NULL && n < RUNSC_MAX_ADDRS; ai = ai->ai_next) {
    addresses[n] = ((struct sockaddr_in *)ai->ai_addr)->sin_addr;
    address_list[n] = (char *)&addresses[n];
    n++;
  }
  address_list[n] = NULL;
  runsc_freeaddrinfo(list);
  snprintf(host_name, sizeof host_name, "%s", name);
  entry.h_name = host_name;
  entry.h_aliases = no_aliases;
  entry.h_addrtype = AF_INET;
  entry.h_length = 4;
  entry.h_addr_list = address_list;
  return &entry;
}

#define socket runsc_socket
#define bind runsc_bind
#define connect runsc_connect
#define listen runsc_listen
#define accept runsc_accept
#define accept4 runsc_accept4
#define getsockname runsc_getsockname
#define getpeername runsc_getpeername
#define setsockopt runsc_setsockopt
#define getsockopt runsc_getsockopt
#define sendto runsc_sendto
#define recvfrom runsc_recvfrom
#define socketpair runsc_socketpair
#define getaddrinfo runsc_getaddrinfo
#define freeaddrinfo runsc_freeaddrinfo
#define gai_strerror runsc_gai_strerror
#define getnameinfo runsc_getnameinfo
#define gethostbyname runsc_gethostbyname

#ifdef __cplusplus
}
#endif

#endif
