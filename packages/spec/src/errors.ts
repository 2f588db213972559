/**
 * The typed failures of spec and bundle handling. They are `Schema.TaggedError`s because they
 * cross the control socket (a bad spec for a sub-container is reported to the CLI), and their
 * `message` is the one line the CLI prints, so it must name the offending field on its own.
 */
import { Schema } from "effect"

export class InvalidSpec extends Schema.TaggedError<InvalidSpec>()("InvalidSpec", {
  /** JSON path of the first problem, e.g. `process.args[0]`; `""` means the whole document. */
  path: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return this.path === ""
      ? `invalid config.json: ${this.reason}`
      : `invalid config.json: ${this.path}: ${this.reason}`
  }
}

export class BundleNotFound extends Schema.TaggedError<BundleNotFound>()("BundleNotFound", {
  bundle: Schema.String
}) {
  override get message(): string {
    return `bundle ${this.bundle}: config.json is missing in that directory`
  }
}

export class InvalidContainerId extends Schema.TaggedError<InvalidContainerId>()("InvalidContainerId", {
  id: Schema.String
}) {
  override get message(): string {
    return `invalid container id ${JSON.stringify(this.id)}: ids must match ^[\\w+\\-.]+$, ` +
      `must not be "." or "..", and must be at most 255 characters long`
  }
}
