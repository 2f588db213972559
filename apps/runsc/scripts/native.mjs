// Builds runsc's console addon (native/console.c → dist/console.node): a pseudo-terminal and
// SCM_RIGHTS, what --console-socket needs and Node lacks. One C file against Node-API with no
// dependencies, so the system C compiler builds it directly (no node-gyp, no Python).
//
// Without a compiler or Node's headers the build is skipped with a warning: runsc works, and
// --console-socket reports that the addon is missing.
import { spawnSync } from "node:child_process"
import { existsSync, mkdirSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

const here = (path) => fileURLToPath(new URL(path, import.meta.url))
// Node's headers live beside its binary's prefix (<prefix>/bin/node, <prefix>/include/node).
const headers = [join(dirname(dirname(process.execPath)), "include", "node"), "/usr/include/node", "/usr/local/include/node"]
  .find((dir) => existsSync(join(dir, "node_api.h")))
const compiler = process.env.CC ?? "cc"

if (headers === undefined) {
  console.warn("runsc: Node's headers (node_api.h) not found; --console-socket will not be available")
} else {
  mkdirSync(here("../dist"), { recursive: true })
  const build = spawnSync(
    compiler,
    ["-O2", "-Wall", "-Wextra", "-shared", "-fPIC", "-DNODE_GYP_MODULE_NAME=runsc_console", `-I${headers}`, here("../native/console.c"), "-o", here("../dist/console.node")],
    { stdio: "inherit" }
  )
  if (build.status !== 0) console.warn(`runsc: building the console addon with ${compiler} failed; --console-socket will not be available`)
}
