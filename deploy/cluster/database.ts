/** A fresh PostgreSQL database for one cluster, beside the one in a base URL. */
import { randomBytes } from 'node:crypto';
import pg from 'pg';

export interface FreshDatabase {
  readonly url: string;
  drop(): Promise<void>;
}

/** The machine's PostgreSQL, as `.ci/run` and the tests reach it (trust, user postgres). */
export const LOCAL_POSTGRES = 'postgres://postgres@127.0.0.1:5432/postgres';

export async function createFreshDatabase(baseUrl = LOCAL_POSTGRES): Promise<FreshDatabase> {
  const name = `ipcola_cluster_${randomBytes(6).toString('hex')}`;
  await asAdmin(baseUrl, `CREATE DATABASE ${name}`);
  const url = new URL(baseUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: () => asAdmin(baseUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`),
  };
}

async function asAdmin(baseUrl: string, statement: string): Promise<void> {
  const client = new pg.Client({ connectionString: baseUrl });
  await client.connect();
  try {
    await client.query(statement);
  } finally {
    await client.end();
  }
}
