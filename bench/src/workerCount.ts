/**
 * Counts worker threads constructed and terminated in this process (the kernel's pool included),
 * so that the warm-start benchmark can say how many workers its process starts cost. Installed
 * by replacing node:worker_threads' Worker with a counting subclass (live ESM bindings follow
 * through syncBuiltinESMExports); the subclass adds nothing else.
 */
import { createRequire, syncBuiltinESMExports } from "node:module"

const workerThreads = createRequire(import.meta.url)("node:worker_threads") as typeof import("node:worker_threads")
const Original = workerThreads.Worker

export const workerCounts = { constructed: 0, terminated: 0 }

class CountedWorker extends Original {
  constructor(...args: ConstructorParameters<typeof Original>) {
    super(...args)
    workerCounts.constructed++
  }
  override terminate(): Promise<number> {
    workerCounts.terminated++
    return super.terminate()
  }
}

workerThreads.Worker = CountedWorker as typeof Original
syncBuiltinESMExports()
