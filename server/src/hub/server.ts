/**
 * The listener nodes dial: an HTTP/1.1 server (TLS when given a certificate) that hands
 * Upgrade requests to the hub and answers anything else with 426.
 */
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { SecureContextOptions, TlsOptions } from 'node:tls';
import { EXIT_PROOF_PATH, TUNNEL_UPGRADE_TOKEN } from '@ipcola/shared/protocol';
import { closeServer } from '../listeners/index.ts';
import type { Hub } from './hub.ts';

export interface HubServerOptions {
  /** Serve TLS with this certificate and key (production); plain TCP when absent. */
  readonly tls?: SecureContextOptions & TlsOptions;
}

export function createHubServer(hub: Hub, options: HubServerOptions = {}): Server {
  const serverOptions = { headersTimeout: 10_000, requestTimeout: 15_000 };
  const server = options.tls
    ? createHttpsServer({ ...options.tls, ...serverOptions })
    : createHttpServer(serverOptions);
  server.on('upgrade', hub.handleUpgrade);
  server.on('request', (req, res) => {
    if ((req.url ?? '').split('?', 1)[0] === EXIT_PROOF_PATH) {
      hub.handleExitProof(req, res);
      return;
    }
    const body = 'This port carries exit-node tunnels only.\n';
    res.writeHead(426, {
      Upgrade: TUNNEL_UPGRADE_TOKEN,
      Connection: 'close',
      'Content-Type': 'text/plain; charset=utf-8',
      'Content-Length': Buffer.byteLength(body),
    });
    res.end(body);
  });
  return server;
}

/** Closes the tunnels first: the HTTP server would otherwise wait for the upgraded sockets. */
export async function closeHubServer(hub: Hub, server: Server, graceMs: number): Promise<void> {
  await hub.close(graceMs);
  await closeServer(server, 0);
}
