/*
 * runsc's console addon: the two things a console socket needs that Node cannot do itself.
 *
 *   openPty()                     -> { master, slave, name }   a new pseudo-terminal pair
 *   sendFd(socketPath, name, fd)                                fd to a console socket (SCM_RIGHTS)
 *   listenConsole(socketPath)     -> fd                         a console socket, for tests
 *   receiveFd(listenFd)           -> { name, fd }               one connection's fd (blocks, 20 s at most)
 *
 * Every fd it makes is close-on-exec: a child gets one only by being handed it as stdio.
 * Failures throw an Error whose code is the errno's name (ENOENT, ...), as Node's own do.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#define NAME_MAX_BYTES 4096

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char message[256];
  const char *code = strerrorname_np(err);
  snprintf(message, sizeof message, "%s: %s", what, strerror(err));
  napi_throw_error(env, code != NULL ? code : "EIO", message);
  return NULL;
}

static int get_string(napi_env env, napi_value value, char *buf, size_t size) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, value, buf, size, &len) != napi_ok || len >= size - 1) return -1;
  return 0;
}

static int unix_address(const char *path, struct sockaddr_un *addr) {
  memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  if (strlen(path) >= sizeof addr->sun_path) return -1;
  strcpy(addr->sun_path, path);
  return 0;
}

static napi_value set_int(napi_env env, napi_value object, const char *key, int value) {
  napi_value v;
  napi_create_int32(env, value, &v);
  napi_set_named_property(env, object, key, v);
  return object;
}

static napi_value set_str(napi_env env, napi_value object, const char *key, const char *value, size_t len) {
  napi_value v;
  napi_create_string_utf8(env, value, len, &v);
  napi_set_named_property(env, object, key, v);
  return object;
}

static napi_value open_pty(napi_env env, napi_callback_info info) {
  (void)info;
  int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0) return throw_errno(env, "posix_openpt", errno);
  char name[256];
  if (grantpt(master) != 0 || unlockpt(master) != 0 || ptsname_r(master, name, sizeof name) != 0) {
    int err = errno;
    close(master);
    return throw_errno(env, "pty setup", err);
  }
  int slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (slave < 0) {
    int err = errno;
    close(master);
    return throw_errno(env, name, err);
  }
  napi_value result;
  napi_create_object(env, &result);
  set_int(env, result, "master", master);
  set_int(env, result, "slave", slave);
  return set_str(env, result, "name", name, strlen(name));
}

static napi_value send_fd(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
  char name[NAME_MAX_BYTES];
  int fd = -1;
  if (argc < 3 || get_string(env, argv[0], path, sizeof path) != 0 || get_string(env, argv[1], name, sizeof name) != 0 ||
      napi_get_value_int32(env, argv[2], &fd) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "sendFd(socketPath, name, fd)");
    return NULL;
  }
  struct sockaddr_un addr;
  if (unix_address(path, &addr) != 0) return throw_errno(env, path, ENAMETOOLONG);
  int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (sock < 0) return throw_errno(env, "socket", errno);
  if (connect(sock, (struct sockaddr *)&addr, sizeof addr) != 0) {
    int err = errno;
    close(sock);
    return throw_errno(env, path, err);
  }
  // The payload is the terminal's name, as runc sends it; the fd rides along as SCM_RIGHTS.
  struct iovec iov = { .iov_base = name, .iov_len = strlen(name) > 0 ? strlen(name) : 1 };
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } control;
  memset(&control, 0, sizeof control);
  struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf };
  struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
  ssize_t sent;
  do sent = sendmsg(sock, &msg, MSG_NOSIGNAL);
  while (sent < 0 && errno == EINTR);
  int err = errno;
  close(sock);
  if (sent < 0) return throw_errno(env, "sendmsg", err);
  return NULL;
}

static napi_value listen_console(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
  if (argc < 1 || get_string(env, argv[0], path, sizeof path) != 0) {
    napi_throw_type_error(env, "EINVAL", "listenConsole(socketPath)");
    return NULL;
  }
  struct sockaddr_un addr;
  if (unix_address(path, &addr) != 0) return throw_errno(env, path, ENAMETOOLONG);
  int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (sock < 0) return throw_errno(env, "socket", errno);
  struct timeval limit = { .tv_sec = 20, .tv_usec = 0 };
  if (bind(sock, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(sock, 1) != 0 ||
      setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit) != 0) {
    int err = errno;
    close(sock);
    return throw_errno(env, path, err);
  }
  napi_value result;
  napi_create_int32(env, sock, &result);
  return result;
}

static napi_value receive_fd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int listener = -1;
  if (argc < 1 || napi_get_value_int32(env, argv[0], &listener) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "receiveFd(listenFd)");
    return NULL;
  }
  int conn = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
  if (conn < 0) return throw_errno(env, "accept", errno);
  struct timeval limit = { .tv_sec = 20, .tv_usec = 0 };
  setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  char name[NAME_MAX_BYTES];
  struct iovec iov = { .iov_base = name, .iov_len = sizeof name - 1 };
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } control;
  struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf };
  ssize_t got;
  do got = recvmsg(conn, &msg, MSG_CMSG_CLOEXEC);
  while (got < 0 && errno == EINTR);
  int err = errno;
  close(conn);
  if (got < 0) return throw_errno(env, "recvmsg", err);
  struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
  if (cmsg == NULL || cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) return throw_errno(env, "no fd received", EPROTO);
  int fd;
  memcpy(&fd, CMSG_DATA(cmsg), sizeof(int));
  napi_value result;
  napi_create_object(env, &result);
  set_int(env, result, "fd", fd);
  return set_str(env, result, "name", name, (size_t)got);
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor methods[] = {
    { "openPty", NULL, open_pty, NULL, NULL, NULL, napi_default, NULL },
    { "sendFd", NULL, send_fd, NULL, NULL, NULL, napi_default, NULL },
    { "listenConsole", NULL, listen_console, NULL, NULL, NULL, napi_default, NULL },
    { "receiveFd", NULL, receive_fd, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, sizeof methods / sizeof methods[0], methods);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
