#!/bin/sh
# Rebuilds rootfs/bin/hello from src/hello.c.
# Needs clang (>= 14) with the wasm32-wasi target, wasm-ld and wasi-libc
# (Debian: clang lld wasi-libc libclang-rt-14-dev-wasm32).
set -eu
cd "$(dirname "$0")"
CC=${CC:-clang}
"$CC" --target=wasm32-wasi -O2 -Wall -Wextra -Wl,--strip-all \
  -o rootfs/bin/hello src/hello.c
chmod 0755 rootfs/bin/hello
