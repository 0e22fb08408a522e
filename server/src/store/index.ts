export { claimDataDir } from './data-dir.ts';
export type { Database, Queryable } from './database.ts';
export type {
  AllowanceBucket,
  AllowanceLedger,
  Broadcast,
  CounterBatch,
  CounterStore,
  HotState,
  LiveRegistry,
  RateLimiterOptions,
  SessionTable,
} from './hot-state.ts';
export { createMemoryHotState } from './memory-hot-state.ts';
export { MigrationError, migrate } from './migrate.ts';
export { openDatabase, openHotState, openStores, type StoreSettings } from './open.ts';
export { openPglite } from './pglite.ts';
export { openPostgres } from './postgres.ts';
export { openRedisHotState } from './redis-hot-state.ts';
export { isStoreUnavailable, StoreUnavailableError } from './unavailable.ts';
