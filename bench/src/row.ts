/** What every benchmark gives the table: one row (runsc beside its baseline), and how it reports progress. */
export interface BenchRow {
  readonly name: string
  readonly runsc: string
  readonly baseline: string
  readonly ratio: string
  readonly aim: string
}

export interface BenchOptions {
  readonly progress: (text: string) => void
  readonly verbose: (label: string, samples: Record<string, ReadonlyArray<number>>) => void
}

/** `mib` MiB moved in `ms`: "1234 MiB/s (52 ms)". */
export const mibPerSecond = (mib: number, ms: number): string => `${((mib * 1000) / ms).toFixed(0)} MiB/s (${ms.toFixed(0)} ms)`
