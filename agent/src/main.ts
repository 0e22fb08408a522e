/**
 * ipcola-agent: the exit-node program. Reads the command line, then keeps one tunnel to
 * the hub (connectToHub does the dialling, serving and reconnecting) whose streams are
 * opened by the egress module under the exit policy.
 *
 * Exit status: 0 after a drain (SIGTERM/SIGINT), 2 for a refused command line, 1 for
 * an unexpected failure, 3 when another agent with the same node token replaced this
 * one (it stops rather than take the node back), 128 + signal number when a second
 * signal cuts the drain short.
 */
import { readFileSync } from 'node:fs';
import { constants } from 'node:os';
import { createExitPolicy } from '@ipcola/shared/exit-policy';
import type { NodeHello, TunnelLogger } from '@ipcola/shared/protocol';
import { type Logger, pino } from 'pino';
import { type AgentOptions, CliUsageError, EXIT_REPLACED, parseCli, USAGE } from './cli-options.ts';
import { createEgress } from './egress.ts';
import { connectToHub, type TunnelClient } from './tunnel/index.ts';

const PROGRAM = 'ipcola-agent';
/** How long open streams may take to finish after SIGTERM/SIGINT. */
const DRAIN_TIMEOUT_MS = 30_000;
/** A stream with no byte either way for this long is cut (the hub has its own limit). */
const STREAM_IDLE_TIMEOUT_MS = 5 * 60_000;

function agentVersion(): string {
  try {
    const manifest = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
    const version: unknown = manifest?.version;
    if (typeof version === 'string' && /^[A-Za-z0-9.+_-]{1,64}$/.test(version)) return version;
  } catch {
    // Packaged without its manifest: still announce something valid.
  }
  return '0.0.0';
}

function createLogger(options: AgentOptions): Logger {
  return pino(
    {
      name: PROGRAM,
      level: options.logLevel,
      // The token never reaches a log call; this is the second lock on that door.
      redact: {
        paths: ['token', '*.token', 'authorization', '*.authorization'],
        censor: '[redacted]',
      },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    // Synchronous: the lines before a process.exit() must not be lost.
    pino.destination({ dest: 1, sync: true }),
  );
}

/** What the tunnel logs through: the current logger, which gains the node id once known. */
function tunnelLoggerOf(current: () => Logger): TunnelLogger {
  return {
    debug: (details, message) => current().debug(details, message),
    info: (details, message) => current().info(details, message),
    warn: (details, message) => current().warn(details, message),
    error: (details, message) => current().error(details, message),
  };
}

function helloOf(options: AgentOptions, version: string): NodeHello {
  return {
    exitIps: options.exitIps,
    ...(options.country === undefined ? {} : { country: options.country }),
    ...(options.region === undefined ? {} : { region: options.region }),
    ...(options.city === undefined ? {} : { city: options.city }),
    ...(options.asn === undefined ? {} : { asn: options.asn }),
    type: options.type,
    maxStreams: options.maxStreams,
    agentVersion: version,
  };
}

function logRefusal(log: Logger, status: number, message: string, hub: string): void {
  const details = { hub, status, reason: message };
  if (status === 401 || status === 403) {
    log.error(
      details,
      'the hub refused the node token; check --token or IPCOLA_NODE_TOKEN (retrying slowly)',
    );
  } else if (status === 426) {
    log.error(
      details,
      "the hub does not speak this agent's tunnel protocol version; upgrade the agent or the hub (retrying slowly)",
    );
  } else if (status < 500) {
    log.error(details, 'the hub refused this node (retrying slowly)');
  } else {
    log.warn(details, 'the hub is unavailable for now');
  }
}

function run(options: AgentOptions): void {
  // Shows as the process name; on Linux it also overwrites the command line that `ps`
  // shows for this process (its npm and shell parents still show theirs).
  process.title = PROGRAM;
  const root = createLogger(options);
  let log = root;
  const version = agentVersion();

  process.on('uncaughtException', (error) => {
    log.fatal({ err: error }, 'unexpected failure; exiting');
    process.exit(1);
  });

  log.info(
    {
      version,
      hubs: options.hubs,
      tls: typeof options.tls === 'object' ? { ca: options.tls.caFile } : options.tls,
      exitIps: options.exitIps,
      type: options.type,
      country: options.country,
      region: options.region,
      city: options.city,
      asn: options.asn,
      maxStreams: options.maxStreams,
      allowTargets: options.allowTargets,
    },
    'starting the exit node',
  );

  const policy = createExitPolicy({ allowTargets: [...options.allowTargets] });
  const client: TunnelClient = connectToHub({
    hub: options.hubs,
    token: options.token,
    hello: helloOf(options, version),
    // The hub's certificate is checked against the name in --hub (servername) either way.
    tls: typeof options.tls === 'object' ? { ca: [...options.tls.ca] } : options.tls,
    openEgress: createEgress({ policy }),
    ...(options.tunnel === 'auto' ? {} : { protocols: [options.tunnel === 'v1' ? 'h2' : 'mux'] }),
    idleTimeoutMs: STREAM_IDLE_TIMEOUT_MS,
    logger: tunnelLoggerOf(() => log),
  });

  // connectToHub logs 'connected to the hub' and each retry with its delay itself.
  let nodeId: string | undefined;
  client.on('connecting', ({ attempt, hub }) => log.debug({ attempt, hub }, 'dialling the hub'));
  client.on('connected', (event) => {
    if (event.nodeId !== undefined && event.nodeId !== nodeId) {
      nodeId = event.nodeId;
      log = root.child({ nodeId });
    }
  });
  let draining = false;
  client.on('disconnected', ({ error }) => {
    if (draining) log.info({ err: error }, 'disconnected from the hub');
    else log.warn({ err: error }, 'disconnected from the hub; reconnecting');
  });
  client.on('rejected', ({ status, message, hub }) => logRefusal(log, status, message, hub));
  client.on('replaced', ({ message }) => {
    draining = true;
    log.error(
      { reason: message, exitStatus: EXIT_REPLACED, activeStreams: client.activeStreams },
      'another agent with this node token replaced this one; stopping. Run one agent per ' +
        'node token (register a node per machine with POST /v1/nodes)',
    );
    // The client drains by itself; this is the same drain, awaited for the exit.
    client.drain(DRAIN_TIMEOUT_MS).then(
      () => process.exit(EXIT_REPLACED),
      () => process.exit(EXIT_REPLACED),
    );
  });
  client.on('closed', () => log.info({}, 'tunnel closed'));

  const onSignal = (signal: NodeJS.Signals) => {
    if (draining) {
      log.warn({ signal, activeStreams: client.activeStreams }, 'second signal: exiting now');
      process.exit(128 + (constants.signals[signal] ?? 0));
    }
    draining = true;
    log.info(
      { signal, activeStreams: client.activeStreams, graceMs: DRAIN_TIMEOUT_MS },
      'draining: taking no new streams, letting open ones finish',
    );
    client.drain(DRAIN_TIMEOUT_MS).then(
      () => {
        log.info({}, 'drained; exiting');
        process.exit(0);
      },
      (error: unknown) => {
        log.error({ err: error }, 'drain failed; exiting');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

function main(argv: readonly string[]): void {
  let command: ReturnType<typeof parseCli>;
  try {
    command = parseCli(argv, process.env);
  } catch (error) {
    if (error instanceof CliUsageError) {
      // exitCode rather than exit(): stderr may be asynchronous (pipes on macOS).
      process.stderr.write(`${PROGRAM}: ${error.option}: ${error.reason}\n`);
      process.exitCode = 2;
      return;
    }
    throw error;
  }
  if (command.command === 'help') {
    process.stdout.write(USAGE);
    return;
  }
  run(command.options);
}

main(process.argv.slice(2));
