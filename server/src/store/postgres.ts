import pg from 'pg';
import type { Logger } from '../log/index.ts';
import { type Database, INT8_OID, parseInt8, type Queryable } from './database.ts';

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

  const clientQueryable = (client: pg.PoolClient): Queryable => ({
    query: async <Row>(sql: string, params?: readonly unknown[]) =>
      (await client.query(sql, params as unknown[])).rows as Row[],
    exec: async (sql: string) => {
      await client.query(sql);
    },
  });

  const database: Database = {
    engine: 'postgres',
    query: async <Row>(sql: string, params?: readonly unknown[]) =>
      (await pool.query(sql, params as unknown[])).rows as Row[],
    exec: async (sql) => {
      await pool.query(sql);
    },
    async transaction(fn) {
      const client = await pool.connect();
      let broken: Error | undefined;
      try {
        await client.query('BEGIN');
        const result = await fn(clientQueryable(client));
        await client.query('COMMIT');
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
