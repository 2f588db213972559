/**
 * memory_grow: what the worker of an instrumented guest asks before its memory.grow (see
 * platform/instrument.ts). The sentry charges the pages to the sandbox's memory account; a grow
 * past the guest's declared maximum or the sandbox's memory fails ENOMEM, which the worker
 * turns into memory.grow's -1 (so malloc returns NULL).
 */
import { Errno } from "@runsc/abi"
import { Effect } from "effect"
import { fail } from "../errors.js"
import { args } from "../platform/syscallAbi.js"
import type { Handler } from "./context.js"

// Each call's accessors, looked up once (see platform/syscallAbi.ts).
const MemoryGrowArgs = args.memory_grow

/** memory_grow(current pages, pages wanted). */
export const memory_grow: Handler = (c) => (c.services.growMemory(c.tg, MemoryGrowArgs.current(c), MemoryGrowArgs.pages(c)) ? Effect.void : fail(Errno.NOMEM))
