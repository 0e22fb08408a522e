/** How long and how hard each measurement runs: the full run and the `--quick` smoke run. */
export interface Config {
  rounds: number;
  warmupMs: number;
  sliceMs: number;
  connections: number;
  churnTotal: number;
  churnConcurrency: number;
  downloadReps: number;
  latencyCount: number;
  idleTunnels: number;
  memoryPeers: boolean;
  /** Warm-up per path per subject before the timed measurements. */
  warmupPassMs: number;
  selectionBatches: number;
  /** Simulated node tunnels held by one hub (measurements/hub.ts). */
  hubTunnels: number;
  /** Seconds of idle heart-beats whose CPU is measured. */
  hubIdleSeconds: number;
  /** `--soak DURATION`: seconds of steady mixed load (measurements/soak.ts); 0 without it. */
  soakSeconds: number;
}

export const FULL: Config = {
  rounds: 3,
  warmupMs: 500,
  sliceMs: 2_000,
  connections: 50,
  churnTotal: 1_000,
  churnConcurrency: 50,
  downloadReps: 20,
  latencyCount: 1_000,
  idleTunnels: 5_000,
  memoryPeers: true,
  warmupPassMs: 3_000,
  selectionBatches: 9,
  hubTunnels: 10_000,
  hubIdleSeconds: 20,
  soakSeconds: 0,
};

export const QUICK: Config = {
  rounds: 1,
  warmupMs: 300,
  sliceMs: 1_000,
  connections: 50,
  churnTotal: 300,
  churnConcurrency: 50,
  downloadReps: 3,
  latencyCount: 200,
  idleTunnels: 2_000,
  memoryPeers: false,
  warmupPassMs: 1_500,
  selectionBatches: 5,
  hubTunnels: 2_000,
  hubIdleSeconds: 10,
  soakSeconds: 0,
};
