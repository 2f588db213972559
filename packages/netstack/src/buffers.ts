/** Socket buffer sizes: what SO_RCVBUF/SO_SNDBUF set, as Linux sizes them. */

/** A socket's receive (and send) buffer unless SO_RCVBUF (SO_SNDBUF) says otherwise. */
export const DEFAULT_BUFFER = 128 * 1024
/** Linux's bounds of what SO_RCVBUF/SO_SNDBUF set. */
const MIN_BUFFER = 4608
const MAX_BUFFER = 4 * 1024 * 1024

/** The buffer SO_RCVBUF/SO_SNDBUF `value` makes: Linux doubles what is asked, within its bounds. */
export const bufferSizeOf = (value: number): number => Math.min(Math.max(value * 2, MIN_BUFFER), MAX_BUFFER)
