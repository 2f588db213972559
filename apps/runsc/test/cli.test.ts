/** How the command line is split between runsc's flags and a guest's own arguments. */
import { assert, describe, it } from "@effect/vitest"
import { separateGuestArgs } from "../src/cli.js"

const argv = (...rest: Array<string>) => ["node", "runsc", ...rest]

describe("separateGuestArgs", () => {
  it("do: the guest's flags after PROGRAM stay the guest's", () => {
    assert.deepStrictEqual(separateGuestArgs(argv("do", "--cwd", "/", "prog", "--help", "-x")), argv("do", "--cwd", "/", "--", "prog", "--help", "-x"))
    assert.deepStrictEqual(separateGuestArgs(argv("--debug", "do", "--clean-env", "prog")), argv("--debug", "do", "--clean-env", "--", "prog"))
  })

  it("exec: the container id comes first, then the command with its own flags", () => {
    assert.deepStrictEqual(
      separateGuestArgs(argv("--root", "/r", "exec", "--env", "A=1", "-t", "box", "cat", "-n", "--", "x")),
      argv("--root", "/r", "exec", "--env", "A=1", "-t", "box", "--", "cat", "-n", "--", "x")
    )
    assert.deepStrictEqual(separateGuestArgs(argv("exec", "box", "--cwd", "/tmp", "ls", "-l")), argv("exec", "box", "--cwd", "/tmp", "--", "ls", "-l"))
  })

  it("exec as engines send it: --process FILE and --preserve-fds N take their values, and a lone id needs no separator", () => {
    const engine = argv("--root", "/r", "exec", "--process", "/b/p.json", "--detach", "--pid-file", "/b/pid", "--preserve-fds", "0", "box")
    assert.deepStrictEqual(separateGuestArgs(engine), engine)
    assert.deepStrictEqual(
      separateGuestArgs(argv("exec", "--preserve-fds", "0", "box", "cat", "-n")),
      argv("exec", "--preserve-fds", "0", "box", "--", "cat", "-n")
    )
  })

  it("leaves help requests and already separated lines alone, and other commands untouched", () => {
    assert.deepStrictEqual(separateGuestArgs(argv("exec", "--help")), argv("exec", "--help"))
    assert.deepStrictEqual(separateGuestArgs(argv("do", "--", "prog")), argv("do", "--", "prog"))
    assert.deepStrictEqual(separateGuestArgs(argv("kill", "box", "TERM")), argv("kill", "box", "TERM"))
  })
})
