/**
 * Reading a small file that must be a regular file (a bundle's config.json, the CLI's state
 * records) without ever blocking on what was put in its place: the file is opened O_NONBLOCK and
 * read only if fstat says it is regular, so a FIFO (whose open for reading would wait for a
 * writer) or a device (a terminal would wait for input) is refused at once, never waited on.
 */
import { Data, Effect } from "effect"
import { constants } from "node:fs"
import * as fs from "node:fs/promises"

export class RegularFileUnreadable extends Data.TaggedError("RegularFileUnreadable")<{
  readonly path: string
  /** The host's error code (ENOENT, EACCES, ELOOP, ...); undefined when the file is there but not regular. */
  readonly code: string | undefined
  readonly reason: string
}> {
  override get message(): string {
    return this.reason
  }
}

export interface ReadRegularFileOptions {
  /**
   * Whether a symlink at `path` itself is followed (otherwise it fails ELOOP). Follow one where
   * the user owns the name (a bundle's config.json may be a link, as runc allows); never where
   * only this program writes files (a link planted among the state records must not redirect
   * the CLI to another file).
   */
  readonly followSymlinks: boolean
}

class NotRegular extends Error {}

const errnoCode = (e: unknown): string | undefined =>
  typeof e === "object" && e !== null && "code" in e && typeof e.code === "string" ? e.code : undefined

/** The text (UTF-8) of the regular file `path`. */
export const readRegularFile = (path: string, options: ReadRegularFileOptions): Effect.Effect<string, RegularFileUnreadable> =>
  Effect.tryPromise({
    try: async () => {
      const follow = options.followSymlinks ? 0 : constants.O_NOFOLLOW
      const handle = await fs.open(path, constants.O_RDONLY | constants.O_NONBLOCK | follow)
      try {
        if (!(await handle.stat()).isFile()) throw new NotRegular()
        return await handle.readFile("utf8")
      } finally {
        await handle.close()
      }
    },
    catch: (e) =>
      e instanceof NotRegular
        ? new RegularFileUnreadable({ path, code: undefined, reason: `${path} is not a regular file` })
        : new RegularFileUnreadable({ path, code: errnoCode(e), reason: e instanceof Error ? e.message : String(e) })
  })
