/**
 * A database file read when first needed and read again whenever it changes on disk, so
 * that an operator's monthly update (or a commercial file dropped in place) takes effect
 * without a restart. A file that fails to load leaves the table it had, and says why.
 */
import { type Stats, unwatchFile, watchFile } from 'node:fs';
import type { Logger } from '../log/index.ts';
import { type Address, type AddressTable, loadAddressTable } from './address-table.ts';

export interface WatchedTableOptions {
  readonly logger: Logger;
  /** Called after every successful load: the answers may differ from now on. */
  readonly onLoad: () => void;
  /** How often the file's size and time are checked (stat polling survives a rename over it). */
  readonly pollIntervalMs: number;
  /** How long the file must stay unchanged before it is read: a copy may still be writing it. */
  readonly settleMs: number;
}

export class WatchedTable {
  readonly file: string;
  readonly #options: WatchedTableOptions;
  #table: AddressTable | null = null;
  #loading = false;
  #again = false;
  #watching = false;
  #settle: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(file: string, options: WatchedTableOptions) {
    this.file = file;
    this.#options = options;
  }

  /** The file's record for the address; null while it is not loaded yet (loading starts). */
  get(address: Address, family: 4 | 6): Readonly<Record<string, unknown>> | null {
    if (!this.#watching) this.#start();
    const table = this.#table;
    return table?.holds(family) ? table.get(address) : null;
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#settle);
    if (this.#watching) unwatchFile(this.file, this.#changed);
  }

  #start(): void {
    this.#watching = true;
    watchFile(
      this.file,
      { interval: this.#options.pollIntervalMs, persistent: false },
      this.#changed,
    );
    this.#load();
  }

  readonly #changed = (current: Stats, previous: Stats): void => {
    if (current.mtimeMs === previous.mtimeMs && current.size === previous.size) return;
    if (current.nlink === 0) return; // removed: keep what we have until a file is back
    clearTimeout(this.#settle);
    this.#settle = setTimeout(() => this.#load(), this.#options.settleMs);
    this.#settle.unref();
  };

  #load(): void {
    if (this.#closed) return;
    if (this.#loading) {
      this.#again = true;
      return;
    }
    this.#loading = true;
    const started = performance.now();
    const { logger } = this.#options;
    loadAddressTable(this.file)
      .then(
        (table) => {
          if (this.#closed) return;
          this.#table = table;
          const ms = Math.round(performance.now() - started);
          logger.info({ file: this.file, ms }, 'geolocation database loaded');
          this.#options.onLoad();
        },
        (error: unknown) => {
          const reason = (error as Error)?.message ?? String(error);
          if (this.#table) {
            logger.error(
              { file: this.file, reason },
              'geolocation database not reloaded: kept the previous one',
            );
          } else {
            logger.error({ file: this.file, reason }, 'geolocation database cannot be read');
          }
        },
      )
      .finally(() => {
        this.#loading = false;
        if (this.#again) {
          this.#again = false;
          this.#load();
        }
      });
  }
}
