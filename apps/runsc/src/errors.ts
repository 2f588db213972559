/** Failures of the CLI itself (bad flags, files it will not overwrite). */
import { Data } from "effect"

export class ConfigExists extends Data.TaggedError("ConfigExists")<{ readonly path: string }> {
  override get message(): string {
    return `${this.path} already exists; remove it first`
  }
}

export class InvalidFlag extends Data.TaggedError("InvalidFlag")<{ readonly flag: string; readonly reason: string }> {
  override get message(): string {
    return `${this.flag}: ${this.reason}`
  }
}

export class CannotWrite extends Data.TaggedError("CannotWrite")<{ readonly path: string; readonly reason: string }> {
  override get message(): string {
    return `${this.path}: ${this.reason}`
  }
}

/** A flag runc has whose meaning runsc does not provide yet (the README lists them). */
export class NotSupported extends Data.TaggedError("NotSupported")<{ readonly flag: string; readonly reason: string }> {
  override get message(): string {
    return `${this.flag}: not supported yet (${this.reason})`
  }
}
