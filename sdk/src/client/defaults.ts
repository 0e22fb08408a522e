/** Defaults of every client, the Node one and the fetch-only one (`@ipcola/sdk/api`). */
export const DEFAULT_MAX_RETRIES = 2;
export const DEFAULT_TIMEOUT_MS = 60_000;
