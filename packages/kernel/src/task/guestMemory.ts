/**
 * A process's guest memory against its container's memory account (else the sandbox's):
 * memory_grow is charged before it happens, and refused (the guest sees -1) past the module's
 * maximum or the account.
 */
import { type MemoryAccount, WASM_PAGE } from "../memoryAccount.js"
import type { ThreadGroup } from "./threadGroup.js"

/** memory_grow: the guest's memory grows from `current` pages by `pages` if the sandbox's memory holds them. */
export const growMemory = (sandbox: MemoryAccount) => (tg: ThreadGroup, current: number, pages: number): boolean => {
  const memory = tg.tasks.memory ?? sandbox
  const wanted = current + pages
  if (wanted > tg.maximumMemoryPages) return false
  // Relative to what is charged, not to `current`: a grow granted earlier that V8 then
  // could not make is charged until the next one.
  const change = (wanted - tg.memoryPages) * WASM_PAGE
  if (change > 0 && !memory.charge(change)) return false
  if (change < 0) memory.release(-change)
  tg.memoryGrewTo(wanted)
  return true
}
