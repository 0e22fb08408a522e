import pg from 'pg';
import type { Logger } from '../log/index.ts';
import { type Database, INT8_OID, parseInt8, type Queryable } from './database.ts';
import { isPostgresConnectionFailure, StoreUnavailableError } from './unavailable.ts';

const types = new pg.TypeOverrides();
types.setTypeParser(INT8_OID, parseInt8);

/** PostgreSQL through a pg pool; survives server restarts (idle errors are logged, not thrown). */
export async function openPostgres(url: string, logger: Logger): Promise<Database> {
  const pool = new pg.Pool({
    connectionString: url,
    types,
    max: 10,
    connectionTimeoutMillis: 5_000,
    idleTimeoutMillis: 30_000,
    application_name: 'ipcola',
  });
  // An idle client that loses its server emits 'error' on the pool; unhandled, it would kill the process.
  pool.on('error', (error) => logger.warn({ err: error }, 'postgres idle connection lost'));

  // A server that is down or unreachable surfaces as StoreUnavailableError (503 at the
  // edges, not 500); a query's own failure stays what pg threw.
  const unavailable = (error: unknown): never => {
    throw isPostgresConnectionFailure(error) ? new StoreUnavailableError('postgres', error) : error;
  };
  const clientQueryable = (client: pg.PoolClient): Queryable => ({
    query: async <Row>(sql: string, params?: readonly unknown[]) =>
      (await client.query(sql, params as unknown[]).catch(unavailable)).rows as Row[],
    exec: async (sql: string) => {
      await client.query(sql).catch(unavailable);
    },
  });

  const database: Database = {
    engine: 'postgres',
    query: async <Row>(sql: string, params?: readonly unknown[]) =>
      (await pool.query(sql, params as unknown[]).catch(unavailable)).rows as Row[],
    exec: async (sql) => {
      await pool.query(sql).catch(unavailable);
    },
    async transaction(fn) {
      const client = await pool.connect().catch(unavailable);
      let broken: Error | undefined;
      try {
        await client.query('BEGIN').catch(unavailable);
        const result = await fn(clientQueryable(client));
        await client.query('COMMIT').catch(unavailable);
        return result;
      } catch (error) {
        try {
          await client.query('ROLLBACK');
        } catch (rollbackError) {
          broken = rollbackError as Error; // the connection is unusable: drop it from the pool
        }
        throw error;
      } finally {
        client.release(broken);
      }
    },
    async ping() {
      await pool.query('SELECT 1');
    },
    async close() {
      if (!pool.ended) await pool.end();
    },
  };

  try {
    await database.ping();
  } catch (error) {
    await pool.end().catch(() => {});
    throw error;
  }
  return database;
}
