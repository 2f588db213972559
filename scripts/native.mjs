// Builds the project's native addons, each one C file against Node-API with no dependencies, so
// the system C compiler builds it directly (no node-gyp, no Python):
//   packages/kernel/native/gofer.c  → packages/kernel/dist/gofer.node   the gofer's openat core
//   apps/runsc/native/console.c     → apps/runsc/dist/console.node      pseudo-terminals, SCM_RIGHTS
//
// Without a compiler or Node's headers an addon is not built and this says so: host mounts then
// fail with GoferUnavailable, and --console-socket with ConsoleUnavailable; nothing falls back
// to a weaker way of doing what the addon does.
import { spawnSync } from "node:child_process"
import { existsSync, mkdirSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

const here = (path) => fileURLToPath(new URL(path, import.meta.url))
// Node's headers live beside its binary's prefix (<prefix>/bin/node, <prefix>/include/node).
const headers = [join(dirname(dirname(process.execPath)), "include", "node"), "/usr/include/node", "/usr/local/include/node"]
  .find((dir) => existsSync(join(dir, "node_api.h")))
const compiler = process.env.CC ?? "cc"

const addons = [
  { name: "runsc_gofer", source: "../packages/kernel/native/gofer.c", output: "../packages/kernel/dist/gofer.node", without: "host mounts (the root filesystem among them) will fail" },
  { name: "runsc_console", source: "../apps/runsc/native/console.c", output: "../apps/runsc/dist/console.node", without: "--console-socket will not be available" }
]

for (const addon of addons) {
  if (headers === undefined) {
    console.warn(`runsc: Node's headers (node_api.h) not found, so ${addon.name} is not built; ${addon.without}`)
    continue
  }
  mkdirSync(dirname(here(addon.output)), { recursive: true })
  const build = spawnSync(
    compiler,
    ["-O2", "-Wall", "-Wextra", "-shared", "-fPIC", `-DNODE_GYP_MODULE_NAME=${addon.name}`, `-I${headers}`, here(addon.source), "-o", here(addon.output)],
    { stdio: "inherit" }
  )
  if (build.status !== 0) console.warn(`runsc: building ${addon.name} with ${compiler} failed; ${addon.without} (a C compiler is needed: apt-get install gcc)`)
}
