/**
 * `npm run admin -- <command>`: the operator's commands against the database the
 * server's configuration names (stop an embedded server first: its data directory is
 * locked while it runs).
 */
import { ConfigError, loadConfig } from '../config/index.ts';
import { isIPColaError } from '../errors/index.ts';
import { createLogger } from '../log/index.ts';
import { MigrationError, openStores } from '../store/index.ts';
import { AdminError, runCommand, USAGE, UsageError } from './commands.ts';

const closes: Array<() => Promise<void>> = [];
let code: number;
try {
  const config = loadConfig();
  const logger = createLogger('warn');
  const { database } = await openStores(config, logger, (close) => closes.push(close));
  code = await runCommand(process.argv.slice(2), {
    database,
    currency: config.billingCurrency,
    print: (line) => process.stdout.write(`${line}\n`),
  });
} catch (error) {
  if (error instanceof UsageError) {
    process.stderr.write(`ipcola admin: ${error.message}\n${USAGE}`);
    code = 2;
  } else {
    const known =
      error instanceof ConfigError ||
      error instanceof MigrationError ||
      error instanceof AdminError ||
      isIPColaError(error);
    process.stderr.write(`ipcola admin: ${known ? '' : 'failed: '}${(error as Error).message}\n`);
    code = 1;
  }
}
for (const close of closes.reverse()) await close().catch(() => {});
process.exit(code);
