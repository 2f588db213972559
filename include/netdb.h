/*
 * netdb.h for WebAssembly guests of the runsc sandbox: wasi-libc has none, so
 * that `#include <netdb.h>` finds getaddrinfo, freeaddrinfo and gai_strerror
 * (with -I include) this includes runsc/socket.h, which defines them.
 */
#ifndef RUNSC_NETDB_H
#define RUNSC_NETDB_H
#include <runsc/socket.h>
#endif
