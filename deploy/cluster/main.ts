/**
 * `npm run cluster`: the production topology on this machine (deploy/topology.ts), until
 * Ctrl-C or SIGTERM, which stop every process it started and drop its fresh database.
 * DATABASE_URL, when set, is used as given; REDIS_URL defaults to this machine's Redis.
 */
import { startCluster } from './index.ts';

process.stdout.write('Starting the cluster (PostgreSQL, Redis, 2 servers, HAProxy, 3 agents)...\n');
let stopping = false;
let stop: (() => Promise<void>) | undefined;
const onSignal = () => {
  // A second Ctrl-C leaves at once (the children had it too: they are in this terminal's group).
  if (stopping) process.exit(130);
  stopping = true;
  process.stdout.write('Stopping the cluster...\n');
  if (!stop) return; // still starting: stopped as soon as it is up
  stop().then(
    () => process.exit(0),
    (error: Error) => {
      process.stderr.write(`cluster: stopping failed: ${error.message}\n`);
      process.exit(1);
    },
  );
};
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);

try {
  const cluster = await startCluster({
    ports: 'topology',
    databaseUrl: process.env.DATABASE_URL || undefined,
    redisUrl: process.env.REDIS_URL || undefined,
    // The servers take the rest of the configuration from this environment (LOG_LEVEL, ...).
    env: process.env,
  });
  stop = cluster.stop;
  if (stopping) {
    await cluster.stop();
    process.exit(0);
  }
  process.stdout.write(cluster.banner());
} catch (error) {
  process.stderr.write(`cluster: cannot start: ${(error as Error).message}\n`);
  process.exit(1);
}
